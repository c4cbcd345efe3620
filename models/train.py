"""Training: the digits network (``train_digits``) and any network of :mod:`spikecore.models.networks` on any dataset
(``train_network``, resumable): progress bar, checkpoint, metrics JSON, curves.

Checkpoints are plain dicts of tensors and numbers, so ``torch.load(path, weights_only=True)`` reads
them; nothing in a checkpoint can execute code.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from spikecore.atomic import atomic_save_figure, atomic_write_bytes
from .digits import DIGITS_MAX_PIXEL, DigitsNet, load_digits_split

CHECKPOINT_FORMAT = "spikecore-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(net: DigitsNet, path: Path, metrics: dict) -> None:
    import io

    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": "digits",
        "config": dict(net.config),
        "state_dict": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "metrics": metrics,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def evaluate(net: DigitsNet, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            correct += int((net(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    return correct / len(x)


def train_digits(out_dir, model_config: dict | None = None, epochs: int = 40, batch_size: int = 32,
                 lr: float = 3e-3, weight_decay: float = 1e-4, seed: int = 0, progress: bool = True) -> dict:
    """Train :class:`DigitsNet` on the fixed digits split; writes ``checkpoint.pt`` and ``metrics.json``.

    Adam with a cosine learning-rate schedule; deterministic for a given seed and thread count.
    Returns the metrics dict (per-epoch loss and accuracies, final test accuracy, wall time).
    """
    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    x_tr, y_tr, x_te, y_te = load_digits_split()
    net = DigitsNet(**(model_config or {}))
    optimiser = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(x_tr) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    history = []
    start = time.perf_counter()
    bar = tqdm(range(epochs), desc="train digits", unit="epoch", disable=not progress)
    for epoch in bar:
        net.train()
        order = torch.randperm(len(x_tr), generator=generator)
        total_loss, correct = 0.0, 0
        for i in range(0, len(x_tr), batch_size):
            idx = order[i:i + batch_size]
            logits = net(x_tr[idx])
            loss = loss_fn(logits, y_tr[idx])
            check_finite_loss(loss, epoch + 1)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total_loss += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y_tr[idx]).sum())
        test_acc = evaluate(net, x_te, y_te)
        history.append({"epoch": epoch + 1, "loss": total_loss / len(x_tr), "train_accuracy": correct / len(x_tr),
                        "test_accuracy": test_acc})
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", test=f"{test_acc:.4f}")
    metrics = {
        "dataset": "digits",
        "train_images": len(x_tr),
        "test_images": len(x_te),
        "test_accuracy": history[-1]["test_accuracy"],
        "train_seconds": time.perf_counter() - start,
        "threads": torch.get_num_threads(),
        "history": history,
    }
    save_checkpoint(net, out_dir / "checkpoint.pt", metrics)
    atomic_write_bytes(out_dir / "metrics.json", json.dumps(metrics, indent=2).encode())
    _plot_curves(history, out_dir / "curves.png")
    return metrics


def _plot_curves(history, path: Path) -> None:
    """Loss and accuracies per epoch, plus firing rate and dormant ratio when the rows carry measurements."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    measured = all("measurements" in h for h in history)
    fig, axes = plt.subplots(1, 3 if measured else 2, figsize=(13 if measured else 9, 3.5))
    ax_loss, ax_acc = axes[0], axes[1]
    ax_loss.plot(epochs, [h["loss"] for h in history], marker=".")
    ax_loss.set_xlabel("epoch"), ax_loss.set_ylabel("training loss")
    ax_acc.plot(epochs, [h["train_accuracy"] for h in history], marker=".", label="train")
    ax_acc.plot(epochs, [h["test_accuracy"] for h in history], marker=".", label="test")
    ax_acc.set_xlabel("epoch"), ax_acc.set_ylabel("accuracy"), ax_acc.legend()
    if measured:
        ax_act = axes[2]
        ax_act.plot(epochs, [h["measurements"]["mean_firing_rate"] for h in history], marker=".",
                    label="firing rate")
        ax_act.plot(epochs, [h["measurements"]["mean_dormant_ratio"] for h in history], marker=".",
                    label="dormant ratio")
        ax_act.set_xlabel("epoch"), ax_act.set_ylabel("mean over neuron layers"), ax_act.legend()
    fig.tight_layout()
    atomic_save_figure(fig, path)


# ================================================================================================================
# Generic training: any network of models.networks on any dataset, resumable, with the papers' measurements
# ================================================================================================================
GENERIC_MODEL = "network"  # the "model" field of a generic checkpoint; "config" holds build_network's dict


class RunDirError(ValueError):
    """RUN_DIR cannot be used (a different run is there, or nothing to resume)."""


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite: the run stops (its last checkpoint, if any, is the previous epoch's)."""


def check_finite_loss(loss: torch.Tensor, epoch: int) -> None:
    """Stop a run whose loss is no longer finite, rather than train on and record NaN."""
    value = float(loss.detach())
    if not math.isfinite(value):
        raise TrainingDiverged(f"training diverged in epoch {epoch}: the loss is {value} (lower train.lr, or check "
                               f"the data)")


class _TensorData:
    """In-memory samples: ``x`` ``[N, ...]`` (time-major on output when ``time_major``), labels ``[N]``."""

    def __init__(self, x, y, time_major: bool):
        self.x, self.y, self.time_major = x, y, time_major

    def __len__(self):
        return len(self.y)

    def batch(self, index):
        x = self.x[index]
        return (x.transpose(0, 1) if self.time_major else x), self.y[index]

    def set_epoch_seed(self, seed: int) -> None:
        pass


class _DatasetData:
    """A ``torch.utils.data.Dataset`` read item by item (single process, so the order is the only randomness)."""

    def __init__(self, dataset, time_major: bool):
        self.dataset, self.time_major = dataset, time_major

    def __len__(self):
        return len(self.dataset)

    def batch(self, index):
        items = [self.dataset[int(i)] for i in index]
        x = torch.stack([item[0] for item in items])
        y = torch.tensor([item[1] for item in items], dtype=torch.long)
        return (x.transpose(0, 1) if self.time_major else x), y

    def set_epoch_seed(self, seed: int) -> None:
        if getattr(self.dataset, "augment", False):
            self.dataset.generator = torch.Generator().manual_seed(seed)


def synthetic_data(kind: str = "cifar", train_samples: int = 256, test_samples: int = 64, classes: int = 10,
                   timesteps: int = 8, size: int = 32, seed: int = 0):
    """Random CIFAR-size (``[N, 3, size, size]`` floats) or DVS-size (``[N, T, 2, size, size]`` 0/1 frames)
    samples from a fixed seed: one random prototype per class plus noise, so the task is learnable."""
    g = torch.Generator().manual_seed(seed)
    n = train_samples + test_samples
    shape = (3, size, size) if kind == "cifar" else (timesteps, 2, size, size)
    prototypes = torch.randn((classes,) + shape, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    noise = torch.randn((n,) + shape, generator=g)
    x = prototypes[y] + noise
    if kind == "dvs":
        x = (torch.rand((n,) + shape, generator=g) < torch.sigmoid(x - 1.0)).to(torch.float32)
    return x[:train_samples], y[:train_samples], x[train_samples:], y[train_samples:]


def network_footprint(build, sample_shape) -> tuple:
    """``(parameters, activation values per sample)`` of the network ``build()`` returns, measured without
    allocating it: built on PyTorch's meta device and run in train mode on a batch of one, ``sample_shape``.
    The activations are the outputs of every leaf module, what backpropagation keeps at the least.

    Raises
    ------
    RuntimeError
        The network does not take such samples.
    """
    with torch.device("meta"):
        net = build()
    values = []

    def count(module, inputs, output):
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        values.extend(tensor.numel() for tensor in outputs if isinstance(tensor, torch.Tensor))

    for module in net.modules():
        if next(module.children(), None) is None:
            module.register_forward_hook(count)
    net.train()
    net(torch.empty(sample_shape, device="meta"))
    return sum(parameter.numel() for parameter in net.parameters()), sum(values)


def load_data(dataset: dict):
    """``(train, test)`` data sources for a validated dataset section (accel/flows/trainconfig.py)."""
    from . import datasets

    name = dataset["name"]
    if name == "synthetic":
        x_tr, y_tr, x_te, y_te = synthetic_data(dataset["kind"], dataset["train_samples"], dataset["test_samples"],
                                                dataset["classes"], dataset["timesteps"], dataset["size"],
                                                dataset["seed"])
        dvs = dataset["kind"] == "dvs"
        return _TensorData(x_tr, y_tr, dvs), _TensorData(x_te, y_te, dvs)
    if name == "digits":
        x_tr, y_tr, x_te, y_te = load_digits_split()
        scale = float(DIGITS_MAX_PIXEL)
        return (_TensorData(x_tr.float() / scale, y_tr, False), _TensorData(x_te.float() / scale, y_te, False))
    if name == "cifar10":
        make = lambda train: datasets.CIFAR10(dataset["root"], train=train, augment=dataset["augment"] and train,
                                              normalize=dataset["normalize"])
        return _DatasetData(make(True), False), _DatasetData(make(False), False)
    if name == "dvs_gesture":
        make = lambda train: datasets.DVSGesture(dataset["root"], train=train, timesteps=dataset["timesteps"],
                                                 dt_ms=dataset["dt_ms"], size=dataset["size"],
                                                 cache_dir=dataset["cache_dir"])
        return _DatasetData(make(True), True), _DatasetData(make(False), True)
    make = lambda train: datasets.CIFAR10DVS(dataset["root"], train=train, timesteps=dataset["timesteps"],
                                             dt_ms=dataset["dt_ms"], size=dataset["size"],
                                             downsample=dataset["downsample"],
                                             train_per_class=dataset["train_per_class"])
    return _DatasetData(make(True), True), _DatasetData(make(False), True)


def make_optimizer(net: nn.Module, train: dict):
    """SGD with momentum (MLF, MS-ResNet), Adam or AdamW, as the config says."""
    if train["optimizer"] == "sgd":
        return torch.optim.SGD(net.parameters(), lr=train["lr"], momentum=train["momentum"],
                               weight_decay=train["weight_decay"], nesterov=train["nesterov"])
    kind = torch.optim.Adam if train["optimizer"] == "adam" else torch.optim.AdamW
    return kind(net.parameters(), lr=train["lr"], weight_decay=train["weight_decay"])


def make_schedule(optimizer, train: dict):
    """Stepped once per epoch: cosine to 0 over ``epochs``, step (x ``gamma`` at ``milestones``), or constant."""
    if train["schedule"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=train["epochs"])
    if train["schedule"] == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(train["milestones"]),
                                                    gamma=train["gamma"])
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def _is_dual(net) -> bool:
    return getattr(net, "block_kind", None) == "dual"


def _loss(net, logits, y, loss_kind: str):
    from .blocks import dual_stream_loss

    if loss_kind == "dual":
        return dual_stream_loss(logits[0], logits[1], y), logits[0]
    return nn.functional.cross_entropy(logits, y), logits


def _evaluate(net, data, batch_size: int) -> dict:
    """Test accuracy; for dual-stream networks of both streams (``test_accuracy`` is the FSNN's ``O_s``)."""
    net.eval()
    correct, correct_a = 0, 0
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            x, y = data.batch(torch.arange(i, min(i + batch_size, len(data))))
            out = net(x)
            if _is_dual(net):
                correct += int((out[0].argmax(1) == y).sum())
                correct_a += int((out[1].argmax(1) == y).sum())
            else:
                correct += int((out.argmax(1) == y).sum())
    result = {"test_accuracy": correct / len(data)}
    if _is_dual(net):
        result["test_accuracy_dsnn"] = correct_a / len(data)
    return result


def _stages(net) -> dict:
    from .metrics import resnet_stages
    from .neurons import MLF

    if hasattr(net, "blocks"):
        return resnet_stages(net)
    return {name: m for name, m in net.named_modules() if isinstance(m, MLF)}


def measure(net, x, y, loss_kind: str) -> dict:
    """The papers' measurements on one fixed batch.

    Activity and synaptic operations in eval mode (the inference network: FSNN for dual-stream nets);
    the mean |gradient| per stage in train mode on a copy of the network (batch statistics as in training,
    the network's own BN running estimates untouched).
    """
    import copy

    from .metrics import ActivityMonitor, GradientMonitor, SynapticOpsCounter, energy_pj

    n = len(y)
    net.eval()
    if _is_dual(net):
        net.set_stream_mode("fsnn")
    try:
        with torch.no_grad(), ActivityMonitor(net) as activity, SynapticOpsCounter(net) as counter:
            net(x)
    finally:
        if _is_dual(net):
            net.set_stream_mode("dual")
    layers = activity.report()
    probe = copy.deepcopy(net).train()
    with GradientMonitor(_stages(probe)) as gradients:
        loss, _ = _loss(probe, probe(x), y, loss_kind)
        loss.backward()
    return {
        "images": n,
        "firing_rate": {name: v["firing_rate"] for name, v in layers.items()},
        "dormant_ratio": {name: v["dormant_ratio"] for name, v in layers.items()},
        # the MLF paper's two sides: dormant (membrane right of the windows) and dormant* (left of the first)
        "dormant_high_ratio": {name: v["dormant_high_ratio"] for name, v in layers.items()},
        "dormant_low_ratio": {name: v["dormant_low_ratio"] for name, v in layers.items()},
        "mean_firing_rate": sum(v["firing_rate"] for v in layers.values()) / max(1, len(layers)),
        "mean_dormant_ratio": activity.mean_dormant_ratio() if layers else 0.0,
        "synaptic_ops_per_image": {"ac": counter.ops.ac / n, "mac": counter.ops.mac / n},
        "synaptic_ops_per_layer": {name: {"ac": ac / n, "mac": mac / n}
                                   for name, (ac, mac) in counter.ops.per_layer.items()},
        "energy_pj_per_image": energy_pj(counter.ops) / n,
        "gradient_mean_abs": dict(gradients.mean_abs),
    }


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + 7919 * (epoch + 1)) % (2**63 - 1)


def input_record(dataset: dict, net) -> dict:
    """What a compiler needs to know of the network's input, recorded in every generic checkpoint.

    ``dataset`` (the name), ``shape`` (one sample as the network sees it: ``[C, H, W]``, ``[F]`` for a flat
    MLP, ``[2, H, W]`` per frame for event data), ``encoding`` (``direct``: the same integer image at every
    timestep; ``events``: one frame of event counts per timestep, seen as they are, with ``max`` and ``why``
    ``None``; ``float``: real-valued inputs), ``max`` (the largest integer input; the network sees
    ``input / max``) or ``None`` where the input is not integer pixels, with ``why`` saying so, and
    ``timesteps``.
    """
    name = dataset["name"]
    channels, side = (1, 8) if name == "digits" else (3, 32) if name == "cifar10" else \
        ((3 if dataset.get("kind") == "cifar" else 2), dataset["size"])
    shape = list(getattr(net, "feature_shape", (channels, side, side)))
    record = {"dataset": name, "shape": shape, "timesteps": int(getattr(net, "timesteps", 1))}
    if name == "digits":
        return {**record, "encoding": "direct", "max": DIGITS_MAX_PIXEL, "why": None}
    if name == "cifar10" and not dataset["normalize"]:
        return {**record, "encoding": "direct", "max": 255, "why": None}
    if name == "cifar10":
        return {**record, "encoding": "direct", "max": None,
                "why": "trained on normalised CIFAR-10 images (dataset.normalize: true), which are not integer "
                       "pixels; train with dataset.normalize: false for the core"}
    if name in ("dvs_gesture", "cifar10_dvs"):  # count frames, seen as they are: no largest value
        return {**record, "encoding": "events", "max": None, "why": None}
    if dataset.get("kind") == "dvs":
        return {**record, "encoding": "float", "max": None,
                "why": "trained on synthetic real-valued event frames, which have no integer counts"}
    return {**record, "encoding": "float", "max": None,
            "why": "trained on synthetic real-valued images, which have no integer pixels"}


def _save_generic(path: Path, net, config: dict, metrics: dict, optimizer, schedule, epoch: int,
                  finished: bool) -> None:
    import io

    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": GENERIC_MODEL,
        "config": json.loads(json.dumps(config["model"])),
        "input": input_record(config["dataset"], net),
        "state_dict": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "metrics": metrics,
        "train_state": {
            "epoch": epoch,
            "finished": finished,
            "run_config": _plain(config),
            "optimizer": optimizer.state_dict(),
            "scheduler": schedule.state_dict(),
            "rng": torch.get_rng_state(),
        },
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _plain(config: dict) -> dict:
    """The run's configuration as plain JSON types (what a checkpoint records and resume compares)."""
    return json.loads(json.dumps({k: config[k] for k in ("dataset", "model", "train")}))


def _read_run(path: Path):
    """The checkpoint of a run to resume, its training state checked (a damaged one is named, not a traceback)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # the weights-only unpickler raises many types on a truncated or foreign file
        raise RunDirError(f"{path}: cannot resume: truncated or not a PyTorch checkpoint "
                          f"(--restart starts the run afresh)") from None
    state = payload.get("train_state") if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise RunDirError(f"{path}: holds a checkpoint that is not a resumable generic run; choose another --out")
    run_config, metrics = state.get("run_config"), payload.get("metrics")
    intact = (isinstance(state.get("epoch"), int) and isinstance(state.get("finished"), bool)
              and isinstance(run_config, dict)
              and all(isinstance(run_config.get(section), dict) for section in ("dataset", "model", "train"))
              and isinstance(payload.get("state_dict"), dict) and isinstance(metrics, dict)
              and isinstance(metrics.get("history"), list)
              and isinstance(metrics.get("train_seconds"), (int, float)))
    if not intact:
        raise RunDirError(f"{path}: cannot resume: the checkpoint's training state is damaged "
                          f"(--restart starts the run afresh)")
    return payload


def _restore(path: Path, previous: dict, net, optimizer, schedule) -> None:
    """Load a resumed run's weights, optimizer, schedule and RNG state; a checkpoint whose state does not fit
    the configured network is named (the configuration it records was edited, or the file damaged)."""
    state = previous["train_state"]
    try:
        net.load_state_dict(previous["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunDirError(f"{path}: cannot resume: the checkpoint's state does not fit the configured run "
                          f"({reason}; --restart starts the run afresh)") from None


def _finish_results(out_dir: Path, metrics: dict) -> bool:
    """Write ``metrics.json`` and ``curves.png`` of a finished run from its checkpoint's ``metrics`` where a
    kill after the final checkpoint left them missing or out of date; returns whether anything was written."""
    expected = json.dumps(metrics, indent=2)
    try:
        current = (out_dir / "metrics.json").read_text()
    except (OSError, UnicodeDecodeError):
        current = None
    written = False
    if current != expected:
        atomic_write_bytes(out_dir / "metrics.json", expected.encode())
        written = True
    if written or not (out_dir / "curves.png").is_file():
        _plot_curves(metrics["history"], out_dir / "curves.png")
        written = True
    return written


def train_network(out_dir, config: dict, progress: bool = True, resume: bool | None = None, log=None,
                  stop_after: int | None = None) -> dict:
    """Train ``build_network(config["model"])`` on ``config["dataset"]`` with ``config["train"]``.

    ``config`` is a validated generic configuration (``spikecore.accel.flows.trainconfig.load_train_config``). Writes, after
    every epoch and atomically, ``checkpoint.pt`` (weights, network config, optimizer, schedule and RNG
    state), ``metrics.json`` and ``curves.png``. ``resume=None`` resumes an unfinished run found in
    ``out_dir`` (same configuration required); ``resume=True`` demands one; ``resume=False`` starts afresh.
    The data order and augmentation of epoch ``e`` depend only on ``(seed, e)``, so a resumed run ends with
    the same weights as an uninterrupted one. ``stop_after=n`` returns after ``n`` epochs of this call, as
    an interrupted run would (the run stays unfinished and resumable).
    """
    from .networks import build_network

    out_dir = Path(out_dir)
    path = out_dir / "checkpoint.pt"
    train, dataset = config["train"], config["dataset"]
    previous = None
    if resume is not False and path.is_file():
        previous = _read_run(path)
        stored = previous["train_state"]["run_config"]
        if stored != _plain(config):
            diff = next(f"{section}.{key}" for section in ("dataset", "model", "train")
                        for key in sorted(set(stored.get(section, {})) | set(_plain(config)[section]))
                        if stored.get(section, {}).get(key) != _plain(config)[section].get(key))
            raise RunDirError(f"{out_dir}: holds a run with a different configuration ('{diff}' differs); "
                              f"choose another --out")
        if previous["train_state"]["finished"]:
            epochs_done = previous["train_state"]["epoch"]
            if _finish_results(out_dir, previous["metrics"]):
                message = (f"the run had finished ({epochs_done} epochs) but was stopped before writing its "
                           f"results: wrote metrics.json and curves.png from the checkpoint")
            else:
                message = f"the run is already finished ({epochs_done} epochs)"
            if log:
                log(f"{out_dir}: {message}")
            return previous["metrics"]
    elif resume:
        raise RunDirError(f"{out_dir}: --resume: no checkpoint.pt to resume from")

    torch.manual_seed(train["seed"])
    net = build_network(config["model"])
    optimizer = make_optimizer(net, train)
    schedule = make_schedule(optimizer, train)
    train_data, test_data = load_data(dataset)
    eval_n = min(train["eval_batch"], len(test_data))
    eval_x, eval_y = test_data.batch(torch.arange(eval_n))
    history, start_epoch, seconds_before = [], 0, 0.0
    if previous is not None:
        state = previous["train_state"]
        _restore(path, previous, net, optimizer, schedule)
        start_epoch = state["epoch"]
        history = list(previous["metrics"]["history"])
        seconds_before = previous["metrics"]["train_seconds"]
        if log:
            log(f"{out_dir}: resuming after epoch {start_epoch} of {train['epochs']}")
    batch_size, epochs = train["batch_size"], train["epochs"]
    steps = math.ceil(len(train_data) / batch_size)
    metrics = {}
    start = time.perf_counter()
    bar = tqdm(total=epochs * steps, initial=start_epoch * steps, desc=f"train {config['model']['arch']}",
               unit="batch", disable=not progress)
    try:
        last = epochs if stop_after is None else min(epochs, start_epoch + stop_after)
        for epoch in range(start_epoch, last):
            epoch_start = time.perf_counter()
            seed = _epoch_seed(train["seed"], epoch)
            torch.manual_seed(seed)
            train_data.set_epoch_seed(seed + 1)
            order = torch.randperm(len(train_data), generator=torch.Generator().manual_seed(seed))
            net.train()
            total_loss, correct, seen = 0.0, 0, 0
            lr = optimizer.param_groups[0]["lr"]
            for i in range(0, len(train_data), batch_size):
                x, y = train_data.batch(order[i:i + batch_size])
                loss, logits = _loss(net, net(x), y, train["loss"])
                check_finite_loss(loss, epoch + 1)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total_loss += loss.item() * len(y)
                correct += int((logits.argmax(1) == y).sum())
                seen += len(y)
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
            schedule.step()
            row = {"epoch": epoch + 1, "lr": lr, "loss": total_loss / seen, "train_accuracy": correct / seen}
            row.update(_evaluate(net, test_data, max(batch_size, 64)))
            row["measurements"] = measure(net, eval_x, eval_y, train["loss"])
            row["seconds"] = time.perf_counter() - epoch_start
            history.append(row)
            finished = epoch + 1 == epochs
            metrics = {
                "dataset": dataset["name"],
                "model": config["model"],
                "train": train,
                "train_images": len(train_data),
                "test_images": len(test_data),
                "epochs_done": epoch + 1,
                "finished": finished,
                "test_accuracy": row["test_accuracy"],
                "train_seconds": seconds_before + time.perf_counter() - start,
                "threads": torch.get_num_threads(),
                "history": history,
            }
            _save_generic(path, net, config, metrics, optimizer, schedule, epoch + 1, finished)
            atomic_write_bytes(out_dir / "metrics.json", json.dumps(metrics, indent=2).encode())
            _plot_curves(history, out_dir / "curves.png")
            bar.set_postfix(epoch=epoch + 1, loss=f"{row['loss']:.3f}", test=f"{row['test_accuracy']:.4f}")
    finally:
        bar.close()
    return metrics


