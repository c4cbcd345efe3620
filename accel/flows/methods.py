"""The method set on the core: one small digits network per method of the seed papers.

``accel demo --method NAME`` trains the method's network on the digits (``--epochs`` for a quick run),
compiles it for the methods core (``data/methods_arch.yaml``: 8 lanes updated at once, 20-bit accumulators and
membranes, memories for residual networks), simulates the
test set and verifies images on the RTL; ``--pretrained`` uses the method's checkpoint from the model zoo
(``data/methods/``, made by ``scripts/make_method_checkpoints.py``) instead of training. ``docs/constructs.md``
lists what each method maps to.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class Method:
    summary: str
    digits: dict | None = None          # DigitsNet model config (the MLF family)
    network: dict | None = None         # models.networks config (residual families)
    stream_mode: str | None = None      # dual-stream networks: the inference mode compiled
    epochs: int = 6
    train: dict = field(default_factory=dict)


_RESNET = {"arch": "resnet", "depth": 8, "width": 8, "stages": 2, "in_channels": 1, "classes": 10, "timesteps": 4}
# OR join: with IAND (the paper's best on CIFAR) the spike stream of this small digits net stays at chance
# after 6 epochs (FSNN 8%), with OR it learns (FSNN ~73%, DSNN ~64%); IAND runs on the core in sew-iand.
_DUAL = dict(_RESNET, block="dual", depth=14, stages=1, join="OR")
_ADAM = {"optimizer": "adam", "lr": 0.005, "batch_size": 32, "schedule": "cosine"}

METHODS = {
    **{f"mlf-k{k}": Method(f"MLF digits network, K = {k}" + (" (the LIF of STBP)" if k == 1 else ""),
                           digits={"levels": k}) for k in (1, 2, 3, 4)},
    "spiking-resnet": Method("spiking ResNet: addition, then activation (MLF K=3, tdBN)",
                             network=dict(_RESNET, block="spiking")),
    "ds-resnet": Method("spiking DS-ResNet: activation, then addition (multi-valued sums; MLF K=3)",
                        network=dict(_RESNET, block="ds")),
    "ms-resnet": Method("MS-ResNet: membrane shortcut (LIF, V_th 0.5, as in the paper)", network=dict(_RESNET, block="ms")),
    **{f"sew-{g.lower()}": Method(f"SEW ResNet, {g} residual join (IF neurons, BN)",
                                  network=dict(_RESNET, block="sew", connect=g))
       for g in ("ADD", "AND", "IAND", "OR", "XOR")},
    "lsn": Method("logic spiking network: excitatory/inhibitory gate (LIF alpha = 0.5)",
                  network=dict(_RESNET, block="lsn")),
    "dst-fsnn": Method("dual-stream training (arctan surrogate), inference with the AAP removed (FSNN)", network=_DUAL,
                       stream_mode="fsnn"),
    "dst-dsnn": Method("dual-stream training, inference with the AAP kept (DSNN)", network=_DUAL,
                       stream_mode="dsnn"),
}


def methods_arch_path() -> Path:
    return Path(str(resources.files("spikecore.accel") / "data" / "methods_arch.yaml"))


# ---- the model zoo: a trained digits checkpoint per method (scripts/make_method_checkpoints.py) ----------
#: Environment variable naming another zoo folder (tests point it at a copy; default: the shipped one).
ZOO_ENV = "SPIKECORE_MODEL_ZOO"
ZOO_MANIFEST = "manifest.json"
ZOO_FORMAT = "spikecore-model-zoo"


def zoo_dir(folder=None) -> Path:
    """The model zoo's folder: ``folder``, else ``$SPIKECORE_MODEL_ZOO``, else the shipped
    ``accel/data/methods``."""
    import os

    if folder is not None:
        return Path(folder)
    if os.environ.get(ZOO_ENV):
        return Path(os.environ[ZOO_ENV])
    return Path(str(resources.files("spikecore.accel") / "data" / "methods"))


def zoo_manifest(folder=None) -> dict:
    """The zoo's entries by method name (``{}`` when the folder has no manifest); a manifest that cannot be
    read raises :class:`UserError` naming it."""
    import json

    from spikecore.errors import UserError

    path = zoo_dir(folder) / ZOO_MANIFEST
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path}: not a readable model-zoo manifest ({type(exc).__name__})") from None
    entries = data.get("methods") if isinstance(data, dict) and data.get("format") == ZOO_FORMAT else None
    if not isinstance(entries, dict) or not all(
            isinstance(e, dict) and isinstance(e.get("file"), str) and isinstance(e.get("sha256"), str)
            for e in entries.values()):
        raise UserError(f"{path}: not a {ZOO_FORMAT} manifest (regenerate it: python "
                        f"scripts/make_method_checkpoints.py)")
    return entries


def pretrained_checkpoint(name: str, folder=None) -> Path:
    """The zoo checkpoint of method ``name``, its SHA-256 checked against the manifest; raises
    :class:`UserError` naming the file when it is missing or differs (damaged, truncated or replaced)."""
    import hashlib

    from spikecore.errors import UserError

    zoo = zoo_dir(folder)
    entry = zoo_manifest(zoo).get(name)
    if entry is None:
        raise UserError(f"{zoo / ZOO_MANIFEST}: no pretrained checkpoint of method {name!r} (train it: accel "
                        f"demo --method {name} without --pretrained)")
    path = zoo / Path(entry["file"]).name
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        raise UserError(f"{path}: the pretrained checkpoint of method {name!r} is missing") from None
    if digest != entry["sha256"]:
        raise UserError(f"{path}: damaged: its SHA-256 differs from the one in {ZOO_MANIFEST} (regenerate it: "
                        f"python scripts/make_method_checkpoints.py {name})")
    return path


def train_config(name: str) -> dict:
    """The validated training configuration of a residual method (a generic ``accel train`` config)."""
    from spikecore.accel.flows.trainconfig import generic_config_from_dict

    method = METHODS[name]
    train = dict(_ADAM, epochs=method.epochs, **method.train)
    return generic_config_from_dict({"dataset": "digits", "model": dict(method.network), "train": train},
                                    f"method {name}")


def train_method(name: str, out_dir, progress: bool = True, epochs: int | None = None) -> Path:
    """Train the method's network on the digits split (``epochs`` overrides the method's default);
    returns the checkpoint path."""
    from spikecore.models.train import train_digits, train_network

    out_dir = Path(out_dir)
    method = METHODS[name]
    if method.digits is not None:
        from spikecore.accel.flows.trainconfig import load_train_config

        config = load_train_config(None)
        train = dict(config["train"], **({} if epochs is None else {"epochs": epochs}))
        train_digits(out_dir, dict(config["model"], **method.digits), progress=progress, **train)
    else:
        config = train_config(name)
        if epochs is not None:
            config["train"]["epochs"] = epochs
        train_network(out_dir, config, progress=progress, resume=False)
    return out_dir / "checkpoint.pt"


def build_untrained(name: str, seed: int = 0, calibration=None):
    """The method's network with seeded random weights, in eval mode, its normalisation statistics taken
    from ``calibration`` images (digits pixels ``[N, 1, 8, 8]``) so that it is active like a trained one.
    For hardware tests that need every method without training (the core does not care how weights were
    learned)."""
    import torch

    from spikecore.models import DigitsNet
    from spikecore.models.digits import DIGITS_MAX_PIXEL
    from spikecore.models.networks import build_network

    method = METHODS[name]
    torch.manual_seed(seed)
    net = DigitsNet(**method.digits) if method.digits is not None else build_network(dict(method.network))
    if method.network is not None:
        net.input_scale, net.input_shape = DIGITS_MAX_PIXEL, (1, 8, 8)
    if calibration is not None:
        generator = torch.Generator().manual_seed(seed)
        for module in net.modules():
            if hasattr(module, "momentum") and hasattr(module, "running_mean"):
                module.momentum = 1.0            # the running statistics become the calibration batch's
                with torch.no_grad():            # random gains (MS-ResNet zero-initialises some) and shifts
                    module.weight.copy_(0.5 + torch.rand(module.weight.shape, generator=generator))
                    module.bias.copy_(0.2 * torch.rand(module.bias.shape, generator=generator))
        net.train()
        with torch.no_grad():
            if method.stream_mode is not None:
                net.set_stream_mode("dual")
            x = calibration if method.digits is not None else calibration.float() / DIGITS_MAX_PIXEL
            net(x)
    net.eval()
    return prepare(name, net)


def prepare(name: str, net):
    """Put a loaded network into the method's inference mode (dual-stream: FSNN or DSNN)."""
    mode = METHODS[name].stream_mode
    if mode is not None:
        net.set_stream_mode(mode)
    return net
