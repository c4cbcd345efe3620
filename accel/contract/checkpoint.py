"""Loading trained checkpoints safely (``weights_only=True``: a checkpoint can never run code).

Every number a checkpoint brings is checked where it enters: parameters finite and of the dtype the network
declares, variances non-negative, and the ``config`` the network is rebuilt from plain data with finite
numbers and bounded integers (the network is first built without memory, on PyTorch's ``meta`` device, so a
configuration that describes a huge network is refused by its parameter shapes before anything is allocated).
"""
from __future__ import annotations

import pickle
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from spikecore.models import DigitsNet
from spikecore.models.graphnet import GRAPH_MODEL, GraphNet
from spikecore.models.train import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, GENERIC_MODEL

from spikecore.errors import UserError, short_repr

#: Deepest nesting and most values of a checkpoint's ``config`` (configurations are a few hundred values).
MAX_CONFIG_DEPTH = 32
MAX_CONFIG_ITEMS = 100_000
#: Largest magnitude of an integer of a ``config`` (channels, shape sizes): larger ones describe no network
#: that fits a core.
MAX_CONFIG_INT = 1 << 24
#: Integer hyper-parameters with their own range wherever they appear in a ``config``: ``timesteps`` up to the
#: largest ``max_timesteps`` of a core, ``levels`` up to the largest ``max_levels``, ``depth`` up to a
#: ResNet-1202 (the depth bounds how long rebuilding the network takes; no parameter shape shows it).
CONFIG_INT_RANGES = {"timesteps": (1, 1024), "levels": (1, 8), "depth": (1, 1202)}
#: Hyper-parameters that are real numbers wherever they appear in a ``config``.
CONFIG_REAL_KEYS = ("v_th", "decay")


def shipped_checkpoint_path() -> Path:
    """The digits checkpoint shipped with the package (regenerate: ``python scripts/make_shipped_checkpoint.py``)."""
    return Path(str(resources.files("spikecore.accel") / "data" / "digits_checkpoint.pt"))


def all_finite(value) -> bool:
    """Whether every number of ``value`` is finite (neither NaN nor infinite).

    Parameters
    ----------
    value : torch.Tensor, numpy.ndarray or number
        Real or complex (a complex number is finite when both its parts are); integers and booleans are
        always finite.

    Returns
    -------
    bool
    """
    if isinstance(value, torch.Tensor):
        return not (value.is_floating_point() or value.is_complex()) or bool(torch.isfinite(value).all())
    array = np.asarray(value)
    return array.dtype.kind not in "fc" or bool(np.isfinite(array).all())


def _dtype_kind(tensor: torch.Tensor) -> str:
    """The kind of a tensor's numbers, in words: a parameter may differ from the network's in precision
    (float64 for float32), never in kind (integers, complex numbers or booleans for floats)."""
    if tensor.dtype == torch.bool:
        return "a boolean"
    if tensor.is_complex():
        return "a complex"
    return "a floating-point" if tensor.is_floating_point() else "an integer"


def _check_state(state: dict, path: Path) -> None:
    """Every entry of a ``state_dict`` a dense tensor of finite numbers, every variance non-negative."""
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue  # named by the shape check once the network's parameters are known
        if value.layout != torch.strided or value.is_quantized:
            raise UserError(f"{path}: parameter '{key}' is not a dense tensor (layout {value.layout})")
        if not all_finite(value):
            raise UserError(f"{path}: parameter '{key}' contains NaN or Inf")
        if str(key).endswith("running_var") and value.numel() and not value.is_complex() \
                and bool((value < 0).any()):
            raise UserError(f"{path}: parameter '{key}' has a negative value {float(value.min()):g} "
                            f"(a variance is never negative)")


def _check_config(config, path: Path) -> None:
    """A checkpoint's ``config``: plain data (numbers, text, lists, mappings) with finite numbers, integers
    within :data:`MAX_CONFIG_INT` and the hyper-parameters of :data:`CONFIG_INT_RANGES` and
    :data:`CONFIG_REAL_KEYS` of their type and range; raises :class:`UserError` naming the key."""
    todo, items = [(config, "config", None, 0)], 0
    while todo:
        value, where, key, depth = todo.pop()
        items += 1
        if depth > MAX_CONFIG_DEPTH or items > MAX_CONFIG_ITEMS:
            raise UserError(f"{path}: key '{where}': the configuration is nested deeper than {MAX_CONFIG_DEPTH} "
                            f"levels or holds more than {MAX_CONFIG_ITEMS} values")
        if isinstance(value, dict):
            for name, item in value.items():
                if not isinstance(name, str):
                    raise UserError(f"{path}: key '{where}' has a key {name!r} that is not text")
                todo.append((item, f"{where}.{name}", name, depth + 1))
            continue
        if isinstance(value, (list, tuple)):
            # the items of a list are the values of its key (levels: [3, 2] is a levels value per layer)
            todo.extend((item, f"{where}[{i}]", key, depth + 1) for i, item in enumerate(value))
            continue
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise UserError(f"{path}: key '{where}' must be a number, text, list or mapping, got "
                            f"{type(value).__name__}")
        if isinstance(value, float) and not all_finite(value):
            raise UserError(f"{path}: key '{where}' = {value} is not a finite number")
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key in CONFIG_REAL_KEYS and not number:
            raise UserError(f"{path}: key '{where}' must be a number, got {value!r}")
        if key in CONFIG_INT_RANGES:
            lo, hi = CONFIG_INT_RANGES[key]
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise UserError(f"{path}: key '{where}' must be an integer in [{lo}, {hi}], got {value!r}")
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_CONFIG_INT:
            raise UserError(f"{path}: key '{where}' = {value} is out of range [-{MAX_CONFIG_INT}, {MAX_CONFIG_INT}]")


def _build(payload: dict) -> torch.nn.Module:
    """The network a checkpoint's ``model`` and ``config`` describe (on the current default device)."""
    model = payload.get("model")
    if model == GENERIC_MODEL:  # any network of models.networks, rebuilt from the config it recorded
        from spikecore.models.networks import build_network

        return build_network(payload.get("config"))
    if model == GRAPH_MODEL:  # an imported network (accel import), its graph recorded
        return GraphNet(payload.get("config"))
    config = payload.get("config", {})
    if not isinstance(config, dict):
        raise TypeError(f"config: expected a mapping, got {type(config).__name__}")
    return DigitsNet(**config)


def load_checkpoint(path) -> tuple:
    """Load a checkpoint; returns ``(net, payload)``. Raises :class:`UserError` naming the file on bad input.

    Digits checkpoints (``model: "digits"``) rebuild :class:`DigitsNet`; generic ones (``model: "network"``,
    written by ``accel train`` for a generic configuration) rebuild ``build_network(payload["config"])``;
    imported ones (``model: "graph"``, written by ``accel import``) rebuild ``GraphNet(payload["config"])``.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" in str(exc).lower():
            raise UserError(f"{path}: refused: the file is not a plain weights checkpoint "
                            f"(it would need to execute code when loaded)") from None
        raise UserError(f"{path}: truncated or not a PyTorch checkpoint") from None
    except Exception:  # the weights-only unpickler raises many types on garbage input
        raise UserError(f"{path}: truncated or not a PyTorch checkpoint") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path}: not a {CHECKPOINT_FORMAT} file")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise UserError(f"{path}: checkpoint version {payload.get('version')} is not supported")
    if payload.get("model") not in ("digits", GENERIC_MODEL, GRAPH_MODEL):
        raise UserError(f"{path}: unsupported model {payload.get('model')!r} "
                        f"(supported: digits, {GENERIC_MODEL}, {GRAPH_MODEL})")
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise UserError(f"{path}: checkpoint has no state_dict")
    _check_state(state, path)
    _check_config(payload.get("config"), path)
    try:
        # shapes and dtypes only: nothing is allocated for what the config claims; PyTorch's warnings about
        # empty layers are left out (the shape check below names what is wrong, in one line)
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = _build(payload).state_dict()
    # the constructors check their arguments with ValueError; combinations they do not check fail deeper
    except (TypeError, ValueError, ArithmeticError, IndexError, KeyError, RuntimeError) as exc:
        raise UserError(f"{path}: bad model configuration ({exc})") from None
    what = {"digits": "the digits network", GRAPH_MODEL: "the imported network"}.get(payload.get("model"),
                                                                                    "the network")
    unexpected = sorted(set(state) - set(expected))
    missing = sorted(set(expected) - set(state))
    if unexpected:
        raise UserError(f"{path}: unsupported layer or parameter '{unexpected[0]}' "
                        f"({what} has no such parameter)")
    if missing:
        raise UserError(f"{path}: parameter '{missing[0]}' of {what} is missing")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor) or value.shape != expected[key].shape:
            shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise UserError(f"{path}: parameter '{key}' has shape {shape}, expected {list(expected[key].shape)}")
        if _dtype_kind(value) != _dtype_kind(expected[key]):
            raise UserError(f"{path}: parameter '{key}' is {_dtype_kind(value)} tensor ({value.dtype}), expected "
                            f"{_dtype_kind(expected[key])} tensor")
    net = _build(payload)  # the shapes equal the checkpoint's own tensors: this allocates what the file holds
    net.load_state_dict(state)
    if payload.get("model") == GENERIC_MODEL:
        _set_input(net, payload, path)
    return net.eval(), payload


INPUT_ENCODINGS = ("direct", "events", "float")


def _check_input(record, path: Path) -> dict:
    """The checkpoint's ``input`` record (``spikecore.models.train.input_record``), checked field by field."""
    def bad(why):
        return UserError(f"{path}: bad input record ({why})")

    if not isinstance(record, dict) or set(record) != {"dataset", "shape", "timesteps", "encoding", "max", "why"}:
        raise bad("expected the keys dataset, shape, timesteps, encoding, max, why")
    shape = record["shape"]
    if not isinstance(shape, list) or len(shape) not in (1, 3) or \
            any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_CONFIG_INT for v in shape):
        raise bad(f"shape {short_repr(shape)} is not [F] or [C, H, W] of positive sizes")
    if record["encoding"] not in INPUT_ENCODINGS:
        raise bad(f"encoding {short_repr(record['encoding'])} is not one of {', '.join(INPUT_ENCODINGS)}")
    top = record["max"]
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= MAX_CONFIG_INT):
        raise bad(f"max {short_repr(top)} is not a positive integer")
    counts = record["encoding"] == "events" and top is None and record["why"] is None  # no largest value
    if not isinstance(record["dataset"], str) or ((top is None) != isinstance(record["why"], str) and not counts) or \
            (isinstance(record["why"], str) and len(record["why"]) > 300):
        raise bad("dataset must be a name, and why a short text exactly when max is null")
    return record


def _set_input(net, payload: dict, path: Path) -> None:
    """The integer input a generic network compiles for: its checkpoint's ``input`` record, or for checkpoints
    written before the record existed, digits pixels 0..16 seen as ``pixels / 16``. A network trained on event
    frames gets ``input_encoding = "events"`` (counts seen as they are, ``input_scale`` 1) and
    ``input_dataset`` (how its frames were binned). A network whose input is not integer pixels gets
    ``input_refused``, the reason the compiler gives."""
    from spikecore.models.digits import DIGITS_MAX_PIXEL

    if "input" in payload:
        record = _check_input(payload["input"], path)
        if record["encoding"] == "events":  # count frames, seen as they are; the core clips them at its range
            net.input_scale, net.input_shape, net.input_encoding = 1, tuple(record["shape"]), "events"
            net.input_dataset = _event_dataset(payload)
            return
        if record["max"] is None:
            net.input_refused = record["why"]
            return
        net.input_scale, net.input_shape = record["max"], tuple(record["shape"])
        return
    train_state = payload.get("train_state")
    run = train_state.get("run_config") if isinstance(train_state, dict) else None
    dataset = run.get("dataset") if isinstance(run, dict) else None
    if isinstance(dataset, dict) and dataset.get("name") == "digits":
        net.input_scale = DIGITS_MAX_PIXEL
        # an MLP may take the 64 pixels as a flat vector (in_features: 64)
        net.input_shape = getattr(net, "feature_shape", (1, 8, 8))


#: The keys of a training configuration's event dataset that say how its frames are binned (not where they are).
EVENT_BINNING_KEYS = ("name", "timesteps", "dt_ms", "size", "downsample")


def _event_dataset(payload: dict) -> dict | None:
    """How the training run binned its event frames (its dataset section, without folders), or None when the
    checkpoint does not say (the verify flow then bins with the dataset's defaults)."""
    train_state = payload.get("train_state")
    run = train_state.get("run_config") if isinstance(train_state, dict) else None
    dataset = run.get("dataset") if isinstance(run, dict) else None
    if not isinstance(dataset, dict):
        return None
    return {key: dataset[key] for key in EVENT_BINNING_KEYS if key in dataset}


def set_stream_mode(net, mode, source):
    """Put a dual-stream network in one inference mode (``--stream-mode``); ``None`` leaves ``net`` as it is.

    Raises :class:`UserError` naming ``source`` when ``net`` is not a dual-stream network.
    """
    if mode is None:
        return net
    if getattr(net, "block_kind", None) != "dual":
        raise UserError(f"{source}: --stream-mode is for dual-stream networks only")
    net.set_stream_mode(mode)
    return net
