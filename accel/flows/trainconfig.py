"""Training configuration YAML for ``accel train`` (validated: unknown keys and bad values are named).

Besides every key's type and range, a configuration is refused when the run it describes cannot fit the
machine: :func:`check_memory` estimates the memory of the network it builds (on PyTorch's ``meta`` device, so
nothing is allocated), the optimizer, one batch's activations and the dataset.
"""
from __future__ import annotations

import math
import os

from spikecore.errors import UserError, short_repr
from spikecore.yamlio import check_keys, load_yaml, suggest

MODEL_DEFAULTS = {"channels": [16, 32], "levels": 3, "timesteps": 4, "v_th": 0.6, "width": 1.0, "decay": 0.25}
TRAIN_DEFAULTS = {"epochs": 20, "batch_size": 32, "lr": 3e-3, "weight_decay": 1e-4, "seed": 0}
#: Numbers of a digits configuration: (type, smallest, largest).
DIGITS_RANGES = {
    "levels": (int, 1, 8), "timesteps": (int, 1, 64), "v_th": (float, 1e-6, 1e6), "width": (float, 1e-6, 1e6),
    "decay": (float, 1e-6, 1.0), "epochs": (int, 1, 100000), "batch_size": (int, 1, 65536),
    "lr": (float, 1e-9, 10.0), "weight_decay": (float, 0.0, 1.0), "seed": (int, 0, 2**31 - 1),
}


def _value(section: str, key: str, value, source: str):
    if key == "channels":
        if (not isinstance(value, list) or len(value) != 2
                or not all(isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= 1024 for c in value)):
            raise UserError(f"{source}: key 'model.channels' must be a list of two integers in [1, 1024], "
                            f"got {short_repr(value)}")
        return value
    return _number(section, key, value, source, DIGITS_RANGES)


def load_train_config(path=None) -> dict:
    """Returns ``{"model": {...}, "train": {...}}`` with defaults filled in for a digits configuration, or
    ``{"generic": True, "dataset": {...}, "model": {...}, "train": {...}}`` for a generic one (docs/training.md)."""
    config = {"model": dict(MODEL_DEFAULTS), "train": dict(TRAIN_DEFAULTS)}
    if path is None:
        return config
    source = str(path)
    data = load_yaml(path, "training configuration")
    data = data or {}
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping with keys 'dataset', 'model', 'train'")
    check_keys(data, ["dataset", "model", "train"], "", source)
    if is_generic(data):
        config = generic_config_from_dict(data, source)
    else:
        for section in ("model", "train"):
            part = data.get(section) or {}
            if not isinstance(part, dict):
                raise UserError(f"{source}: key '{section}' must be a mapping")
            check_keys(part, list(config[section]), f"{section}.", source)
            for key, value in part.items():
                config[section][key] = _value(section, key, value, source)
    check_memory(config, source)
    return config


# ---- generic configurations: any network of models.networks on any dataset ------------------------------------
DATASETS = ("digits", "cifar10", "dvs_gesture", "cifar10_dvs", "synthetic")
DATASET_KEYS = {
    "digits": {"name"},
    "cifar10": {"name", "root", "augment", "normalize"},
    "dvs_gesture": {"name", "root", "timesteps", "dt_ms", "size", "cache_dir"},
    "cifar10_dvs": {"name", "root", "timesteps", "dt_ms", "size", "downsample", "train_per_class"},
    "synthetic": {"name", "kind", "train_samples", "test_samples", "classes", "timesteps", "size", "seed"},
}
DATASET_DEFAULTS = {
    "digits": {},
    "cifar10": {"augment": True, "normalize": True},
    "dvs_gesture": {"timesteps": 40, "dt_ms": 30.0, "size": 32, "cache_dir": None},
    "cifar10_dvs": {"timesteps": 10, "dt_ms": 10.0, "size": 42, "downsample": 3.04, "train_per_class": 900},
    "synthetic": {"kind": "cifar", "train_samples": 256, "test_samples": 64, "classes": 10, "timesteps": 8,
                  "size": 32, "seed": 0},
}
# (in_channels, classes, image side) of each dataset's samples, for the network's defaults
GENERIC_TRAIN_DEFAULTS = {"epochs": 200, "batch_size": 128, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9,
                          "weight_decay": 1e-4, "schedule": "cosine", "milestones": None, "gamma": 0.1, "seed": 0,
                          "loss": None, "eval_batch": 32, "nesterov": False}
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step", "constant")
LOSSES = ("ce", "dual")
#: Numbers of a generic configuration's dataset and train sections: (type, smallest, largest).
GENERIC_RANGES = {
    "epochs": (int, 1, 100000), "batch_size": (int, 1, 65536), "lr": (float, 1e-9, 10.0),
    "momentum": (float, 0.0, 0.999999), "weight_decay": (float, 0.0, 1.0), "gamma": (float, 1e-9, 1.0),
    "seed": (int, 0, 2**31 - 1), "eval_batch": (int, 1, 4096),
    "train_samples": (int, 1, 10**7), "test_samples": (int, 1, 10**7), "classes": (int, 2, 1000),
    "timesteps": (int, 1, 1000), "size": (int, 1, 1024), "dt_ms": (float, 1e-6, 1e6),
    "downsample": (float, 1e-6, 128.0), "train_per_class": (int, 1, 100000),
}


def _number(section: str, key: str, value, source: str, ranges=None):
    """The number at ``section.key``, of the type and in the range ``ranges[key]`` (``(type, lo, hi)``;
    default :data:`GENERIC_RANGES`); NaN and infinities are refused."""
    kind, lo, hi = (GENERIC_RANGES if ranges is None else ranges)[key]
    if kind is float and isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or isinstance(value, int))
    if not ok:
        raise UserError(f"{source}: key '{section}.{key}' must be {'an integer' if kind is int else 'a number'}, "
                        f"got {short_repr(value)}")
    if not math.isfinite(value):
        raise UserError(f"{source}: key '{section}.{key}' = {value} is not a finite number")
    if not lo <= value <= hi:
        raise UserError(f"{source}: key '{section}.{key}' = {value} is out of range [{lo}, {hi}]")
    return kind(value)


def _one_of(section: str, key: str, value, allowed, source: str):
    if value not in allowed:
        raise UserError(f"{source}: key '{section}.{key}' = {short_repr(value)} is not one of {', '.join(allowed)}"
                        f"{suggest(str(value), allowed, '') if isinstance(value, str) else ''}")
    return value


def _flag(section: str, key: str, value, source: str) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"{source}: key '{section}.{key}' must be true or false, got {short_repr(value)}")
    return value


def is_generic(data: dict) -> bool:
    """A configuration is generic when its dataset is a mapping or not digits, or its model names an ``arch``."""
    dataset = data.get("dataset", "digits")
    model = data.get("model") or {}
    return isinstance(dataset, dict) or dataset != "digits" or (isinstance(model, dict) and "arch" in model)


def is_event_dataset(dataset: dict) -> bool:
    """Whether a validated dataset section's samples are DVS frames over time (fed time-major)."""
    return dataset["name"] in ("dvs_gesture", "cifar10_dvs") or (dataset["name"] == "synthetic"
                                                                 and dataset["kind"] == "dvs")


def dataset_shape(dataset: dict) -> tuple:
    """``(in_channels, classes, image side)`` of the samples of a validated dataset section."""
    name = dataset["name"]
    if name == "digits":
        return 1, 10, 8
    if name == "cifar10":
        return 3, 10, 32
    if name == "dvs_gesture":
        return 2, 11, dataset["size"]
    if name == "cifar10_dvs":
        return 2, 10, dataset["size"]
    return (3 if dataset["kind"] == "cifar" else 2), dataset["classes"], dataset["size"]


def _generic_dataset(value, source: str) -> dict:
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise UserError(f"{source}: key 'dataset' must be a dataset name or a mapping with a 'name'")
    if "name" not in value:
        raise UserError(f"{source}: key 'dataset.name' is missing (one of {', '.join(DATASETS)})")
    name = value["name"]
    if name not in DATASETS:
        raise UserError(f"{source}: key 'dataset' = {short_repr(name)} is not supported "
                        f"(supported: {', '.join(DATASETS)}){suggest(str(name), DATASETS, '')}")
    check_keys(value, sorted(DATASET_KEYS[name]), "dataset.", source)
    out = {"name": name, **DATASET_DEFAULTS[name]}
    for key, item in value.items():
        if key == "name":
            continue
        if key in ("root", "cache_dir"):
            if not isinstance(item, str) or not item:
                raise UserError(f"{source}: key 'dataset.{key}' must be a path (a non-empty string), "
                                f"got {short_repr(item)}")
            out[key] = item
        elif key in ("augment", "normalize"):
            out[key] = _flag("dataset", key, item, source)
        elif key == "kind":
            out[key] = _one_of("dataset", key, item, ("cifar", "dvs"), source)
        elif key == "seed":
            out[key] = _int_seed(item, source)
        else:
            out[key] = _number("dataset", key, item, source)
    if name in ("cifar10", "dvs_gesture", "cifar10_dvs") and "root" not in out:
        raise UserError(f"{source}: key 'dataset.root' is missing (the {name} folder)")
    if name == "synthetic" and "size" not in value and out["kind"] == "dvs":
        out["size"] = 32
    return out


def _int_seed(value, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{source}: key 'dataset.seed' must be an integer, got {short_repr(value)}")
    if not 0 <= value <= 2**31 - 1:
        raise UserError(f"{source}: key 'dataset.seed' = {value} is out of range [0, {2**31 - 1}]")
    return value


#: Most items of a list of the ``model`` section (``layers``, ``levels``, ...): a ResNet-1202's depth.
MAX_MODEL_LIST = 1202


def _check_model_values(value, where: str, source: str, key: str | None = None) -> None:
    """Every number of the ``model`` section finite and every integer within what a checkpoint may hold
    (:data:`spikecore.accel.contract.checkpoint.CONFIG_INT_RANGES`, else magnitude :data:`spikecore.accel.contract.checkpoint.MAX_CONFIG_INT`), lists
    of at most :data:`MAX_MODEL_LIST` items: a trained network must load again, and these bounds keep even
    building it for validation quick."""
    from spikecore.accel.contract.checkpoint import CONFIG_INT_RANGES, MAX_CONFIG_INT

    if isinstance(value, dict):
        for name, item in value.items():
            _check_model_values(item, f"{where}.{name}", source, name)
    elif isinstance(value, list):
        if len(value) > MAX_MODEL_LIST:
            raise UserError(f"{source}: key '{where}' has {len(value)} items, more than {MAX_MODEL_LIST}")
        for index, item in enumerate(value):
            _check_model_values(item, f"{where}[{index}]", source, key)
    elif isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{source}: key '{where}' = {value} is not a finite number")
    elif isinstance(value, int) and not isinstance(value, bool):
        lo, hi = CONFIG_INT_RANGES.get(key, (-MAX_CONFIG_INT, MAX_CONFIG_INT))
        if not lo <= value <= hi:
            raise UserError(f"{source}: key '{where}' = {value} is out of range [{lo}, {hi}]")


def _generic_model(value, dataset: dict, source: str) -> dict:
    import torch

    from spikecore.models.networks import ARCH_KEYS, build_network

    if not isinstance(value, dict):
        raise UserError(f"{source}: key 'model' must be a mapping")
    if "arch" not in value:
        raise UserError(f"{source}: key 'model.arch' is missing (one of {', '.join(ARCH_KEYS)})")
    arch = _one_of("model", "arch", value["arch"], list(ARCH_KEYS), source)
    check_keys(value, sorted(ARCH_KEYS[arch]), "model.", source)
    model = dict(value)
    channels, classes, side = dataset_shape(dataset)
    flat = arch == "mlp" and "in_features" in model  # the dataset's images flattened into a vector
    if flat and model["in_features"] != channels * side * side:
        raise UserError(f"{source}: key 'model.in_features' = {short_repr(model['in_features'])}: the dataset's "
                        f"samples have {channels} x {side} x {side} = {channels * side * side} values")
    if not flat:
        model.setdefault("in_channels", channels)
    model.setdefault("classes", classes)
    if arch in ("vgg", "mlp") and not flat:
        model.setdefault("image_size", side)
    _check_model_values(model, "model", source)
    try:
        with torch.device("meta"):  # validated without allocating: the size is judged by check_memory
            build_network(model)
    except ValueError as exc:
        key, _, why = str(exc).partition(": ")
        raise UserError(f"{source}: key 'model.{key}': {why}") from None
    except TypeError as exc:  # a neuron argument of the wrong type
        raise UserError(f"{source}: key 'model': {exc}") from None
    if is_event_dataset(dataset):
        if arch == "sew7b" and side != 128:
            raise UserError(f"{source}: key 'dataset.size' = {side}: arch 'sew7b' needs 128x128 frames")
    return model


def _generic_train(value, model: dict, source: str) -> dict:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise UserError(f"{source}: key 'train' must be a mapping")
    check_keys(value, sorted(GENERIC_TRAIN_DEFAULTS), "train.", source)
    train = dict(GENERIC_TRAIN_DEFAULTS)
    for key, item in value.items():
        if key == "optimizer":
            train[key] = _one_of("train", key, item, OPTIMIZERS, source)
        elif key == "schedule":
            train[key] = _one_of("train", key, item, SCHEDULES, source)
        elif key == "loss":
            train[key] = _one_of("train", key, item, LOSSES, source)
        elif key == "nesterov":
            train[key] = _flag("train", key, item, source)
        elif key == "milestones":
            if (not isinstance(item, list) or not item
                    or not all(isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in item)
                    or item != sorted(set(item))):
                raise UserError(f"{source}: key 'train.milestones' must be an increasing list of epochs >= 1, "
                                f"got {short_repr(item)}")
            train[key] = item
        else:
            train[key] = _number("train", key, item, source)
    if "lr" not in value and train["optimizer"] != "sgd":
        train["lr"] = 1e-3
    if train["milestones"] is None:
        train["milestones"] = sorted({max(1, train["epochs"] // 2), max(1, 3 * train["epochs"] // 4)})
    elif train["schedule"] != "step":
        raise UserError(f"{source}: key 'train.milestones' is only used with schedule 'step' "
                        f"(schedule is {train['schedule']!r})")
    if train["momentum"] and train["optimizer"] != "sgd" and "momentum" in value:
        raise UserError(f"{source}: key 'train.momentum' is only used with optimizer 'sgd' "
                        f"(optimizer is {train['optimizer']!r})")
    if train["nesterov"] and (train["optimizer"] != "sgd" or train["momentum"] == 0):
        raise UserError(f"{source}: key 'train.nesterov' needs optimizer 'sgd' with momentum > 0")
    blocks = model.get("block") if isinstance(model.get("block"), list) else [model.get("block")]
    dual = model.get("arch") == "resnet" and "dual" in blocks  # a list names 'dual' only when all are dual
    if train["loss"] is None:
        train["loss"] = "dual" if dual else "ce"
    elif train["loss"] == "dual" and not dual:
        raise UserError(f"{source}: key 'train.loss' = 'dual' needs a dual-stream network (model.block: dual)")
    elif train["loss"] == "ce" and dual:
        raise UserError(f"{source}: key 'train.loss' = 'ce': a dual-stream network trains with loss 'dual' "
                        f"(L(O_s) + L(O_a))")
    return train


def generic_config_from_dict(data: dict, source: str = "<config>") -> dict:
    """Validate a generic configuration; returns ``{"generic": True, "dataset", "model", "train"}``."""
    check_keys(data, ["dataset", "model", "train"], "", source)
    dataset = _generic_dataset(data.get("dataset", "digits"), source)
    model = _generic_model(data.get("model"), dataset, source)
    train = _generic_train(data.get("train"), model, source)
    return {"generic": True, "dataset": dataset, "model": model, "train": train}


# ---- will the run fit the machine? ----------------------------------------------------------------------------
#: Values of optimizer state kept per parameter: Adam's two moments; SGD's momentum buffer (none without it).
OPTIMIZER_STATES = {"adam": 2, "adamw": 2, "sgd": 1}
#: Bytes of a float32 value (parameters, gradients, optimizer state, activations, synthetic samples).
FLOAT_BYTES = 4
#: Bytes the file-backed datasets hold in memory: CIFAR-10's 60,000 uint8 images, the digits' 1,797 8x8
#: images as integers and as floats; the DVS datasets are read sample by sample.
DATASET_BYTES = {"cifar10": 60000 * 3 * 32 * 32, "digits": 1797 * 64 * 16}
#: The keys that set the size of each kind of network.
NETWORK_SIZE_KEYS = {"digits": ("model.channels",), "resnet": ("model.width", "model.depth"),
                     "vgg": ("model.layers", "model.fc_hidden"), "sew7b": ("model.width",),
                     "mlp": ("model.hidden",)}


def physical_memory():
    """This machine's physical memory in bytes, or None where the system does not tell."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _in_units(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{size:.0f} B"
        size /= 1024


def memory_estimate(config: dict, source: str) -> dict:
    """A lower bound of the memory a training run needs: ``{part: (bytes, keys that drive it)}`` for
    ``parameters`` (weights, gradients and optimizer state), ``activations`` (the outputs of every layer for
    one training batch over all timesteps, which backpropagation keeps) and ``dataset`` (samples held in
    memory). The network is measured on PyTorch's meta device at one timestep
    (:func:`spikecore.models.train.network_footprint`) and its activations scaled by the timesteps.

    Raises
    ------
    UserError
        The network does not take the dataset's samples.
    """
    from spikecore.models.digits import DigitsNet
    from spikecore.models.networks import build_network
    from spikecore.models.train import network_footprint

    model, train = config["model"], config["train"]
    if config.get("generic"):
        dataset = config["dataset"]
        channels, _, side = dataset_shape(dataset)
        if is_event_dataset(dataset):  # DVS frames: the network is fed the dataset's timesteps, time-major
            sample, timesteps, time_key = (1, 1, channels, side, side), dataset["timesteps"], "dataset.timesteps"
            sample_shape = (timesteps, channels, side, side)
        else:  # static images repeated over the network's timesteps
            sample, timesteps, time_key = (1, channels, side, side), model.get("timesteps", 4), "model.timesteps"
            sample_shape = sample[1:]

        def build():
            return build_network({**model, "timesteps": 1})

        size_keys = NETWORK_SIZE_KEYS[model["arch"]]
        input_keys = ("dataset.size",) if "size" in dataset else ()
        states = OPTIMIZER_STATES[train["optimizer"]] if train["optimizer"] != "sgd" or train["momentum"] else 0
        if dataset["name"] == "synthetic":  # the samples and the noise they are made of
            data_bytes = 2 * FLOAT_BYTES * (dataset["train_samples"] + dataset["test_samples"]) * math.prod(
                sample_shape)
            data_keys = ("dataset.train_samples", "dataset.test_samples", "dataset.size")
        else:
            data_bytes, data_keys = DATASET_BYTES.get(dataset["name"], 0), ("dataset",)
    else:
        sample, timesteps, time_key = (1, 1, 8, 8), model["timesteps"], "model.timesteps"

        def build():
            return DigitsNet(**{**model, "timesteps": 1})

        size_keys, input_keys, states = NETWORK_SIZE_KEYS["digits"], (), OPTIMIZER_STATES["adam"]
        data_bytes, data_keys = DATASET_BYTES["digits"], ("dataset",)
    try:
        parameters, activations = network_footprint(build, sample)
    except RuntimeError as exc:
        raise UserError(f"{source}: key 'model': the network does not take the dataset's samples "
                        f"{list(sample[1:])} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") \
            from None
    batch = train["batch_size"]
    batch_keys = (f"train.batch_size = {batch}", f"{time_key} = {timesteps}")
    return {
        "activations of a batch": (FLOAT_BYTES * activations * timesteps * batch, batch_keys + size_keys + input_keys),
        "parameters, gradients and optimizer state": (FLOAT_BYTES * parameters * (2 + states), size_keys),
        "dataset": (data_bytes, data_keys),
    }


def check_memory(config: dict, source: str) -> None:
    """Refuse a run whose :func:`memory_estimate` exceeds this machine's physical memory, with the estimate
    by part (largest first) and the keys that drive each.

    Raises
    ------
    UserError
        One line naming the file, the estimate, the machine's memory and the keys.
    """
    parts = memory_estimate(config, source)
    available = physical_memory()
    total = sum(size for size, _ in parts.values())
    if available is None or total <= available:
        return
    described = "; ".join(f"{name} {_in_units(size)} ({', '.join(keys)})"
                          for name, (size, keys) in sorted(parts.items(), key=lambda item: -item[1][0]) if size)
    raise UserError(f"{source}: training needs at least {_in_units(total)} of memory, more than this machine's "
                    f"{_in_units(available)}: {described}; lower the keys of the largest part")
