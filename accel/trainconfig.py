"""Training configuration YAML for ``accel train`` (validated: unknown keys and bad values are named)."""
from __future__ import annotations

from pathlib import Path

import yaml

from .config import _check_keys, _suggest
from .errors import UserError

MODEL_DEFAULTS = {"channels": [16, 32], "levels": 3, "timesteps": 4, "v_th": 0.6, "width": 1.0, "decay": 0.25}
TRAIN_DEFAULTS = {"epochs": 20, "batch_size": 32, "lr": 3e-3, "weight_decay": 1e-4, "seed": 0}
_RANGES = {
    "levels": (int, 1, 8), "timesteps": (int, 1, 64), "v_th": (float, 1e-6, 1e6), "width": (float, 1e-6, 1e6),
    "decay": (float, 1e-6, 1.0), "epochs": (int, 1, 100000), "batch_size": (int, 1, 65536),
    "lr": (float, 1e-9, 10.0), "weight_decay": (float, 0.0, 1.0), "seed": (int, 0, 2**31 - 1),
}


def _value(section: str, key: str, value, source: str):
    if key == "channels":
        if (not isinstance(value, list) or len(value) != 2
                or not all(isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= 1024 for c in value)):
            raise UserError(f"{source}: key 'model.channels' must be a list of two integers in [1, 1024], got {value!r}")
        return value
    kind, lo, hi = _RANGES[key]
    ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int and not isinstance(value, int):
        ok_type = False
    if not ok_type:
        raise UserError(f"{source}: key '{section}.{key}' must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    if not lo <= value <= hi:
        raise UserError(f"{source}: key '{section}.{key}' = {value} is out of range [{lo}, {hi}]")
    return kind(value)


def load_train_config(path=None) -> dict:
    """Returns ``{"model": {...}, "train": {...}}`` with defaults filled in for a digits configuration, or
    ``{"generic": True, "dataset": {...}, "model": {...}, "train": {...}}`` for a generic one (docs/training.md)."""
    config = {"model": dict(MODEL_DEFAULTS), "train": dict(TRAIN_DEFAULTS)}
    if path is None:
        return config
    source = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise UserError(f"{source}: cannot read training configuration ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise UserError(f"{source}: malformed YAML{f' at line {mark.line + 1}' if mark else ''}") from None
    data = data or {}
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping with keys 'dataset', 'model', 'train'")
    _check_keys(data, ["dataset", "model", "train"], "", source)
    if is_generic(data):
        return generic_config_from_dict(data, source)
    if data.get("dataset", "digits") != "digits":
        raise UserError(f"{source}: key 'dataset' = {data['dataset']!r} is not supported (supported: digits)")
    for section in ("model", "train"):
        part = data.get(section) or {}
        if not isinstance(part, dict):
            raise UserError(f"{source}: key '{section}' must be a mapping")
        _check_keys(part, list(config[section]), f"{section}.", source)
        for key, value in part.items():
            config[section][key] = _value(section, key, value, source)
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
_GENERIC_RANGES = {
    "epochs": (int, 1, 100000), "batch_size": (int, 1, 65536), "lr": (float, 1e-9, 10.0),
    "momentum": (float, 0.0, 0.999999), "weight_decay": (float, 0.0, 1.0), "gamma": (float, 1e-9, 1.0),
    "seed": (int, 0, 2**31 - 1), "eval_batch": (int, 1, 4096),
    "train_samples": (int, 1, 10**7), "test_samples": (int, 1, 10**7), "classes": (int, 2, 1000),
    "timesteps": (int, 1, 1000), "size": (int, 1, 1024), "dt_ms": (float, 1e-6, 1e6),
    "downsample": (float, 1e-6, 128.0), "train_per_class": (int, 1, 100000),
}


def _number(section: str, key: str, value, source: str):
    kind, lo, hi = _GENERIC_RANGES[key]
    if kind is float and isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or isinstance(value, int))
    if not ok:
        raise UserError(f"{source}: key '{section}.{key}' must be {'an integer' if kind is int else 'a number'}, "
                        f"got {value!r}")
    if not lo <= value <= hi:
        raise UserError(f"{source}: key '{section}.{key}' = {value} is out of range [{lo}, {hi}]")
    return kind(value)


def _one_of(section: str, key: str, value, allowed, source: str):
    if value not in allowed:
        raise UserError(f"{source}: key '{section}.{key}' = {value!r} is not one of {', '.join(allowed)}"
                        f"{_suggest(str(value), allowed, '') if isinstance(value, str) else ''}")
    return value


def _flag(section: str, key: str, value, source: str) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"{source}: key '{section}.{key}' must be true or false, got {value!r}")
    return value


def is_generic(data: dict) -> bool:
    """A configuration is generic when its dataset is a mapping or not digits, or its model names an ``arch``."""
    dataset = data.get("dataset", "digits")
    model = data.get("model") or {}
    return isinstance(dataset, dict) or dataset != "digits" or (isinstance(model, dict) and "arch" in model)


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
        raise UserError(f"{source}: key 'dataset' = {name!r} is not supported (supported: {', '.join(DATASETS)})"
                        f"{_suggest(str(name), DATASETS, '')}")
    _check_keys(value, sorted(DATASET_KEYS[name]), "dataset.", source)
    out = {"name": name, **DATASET_DEFAULTS[name]}
    for key, item in value.items():
        if key == "name":
            continue
        if key in ("root", "cache_dir"):
            if not isinstance(item, str) or not item:
                raise UserError(f"{source}: key 'dataset.{key}' must be a path (a non-empty string), got {item!r}")
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
        raise UserError(f"{source}: key 'dataset.seed' must be an integer, got {value!r}")
    if not 0 <= value <= 2**31 - 1:
        raise UserError(f"{source}: key 'dataset.seed' = {value} is out of range [0, {2**31 - 1}]")
    return value


def _generic_model(value, dataset: dict, source: str) -> dict:
    from models.networks import ARCH_KEYS, build_network

    if not isinstance(value, dict):
        raise UserError(f"{source}: key 'model' must be a mapping")
    if "arch" not in value:
        raise UserError(f"{source}: key 'model.arch' is missing (one of {', '.join(ARCH_KEYS)})")
    arch = _one_of("model", "arch", value["arch"], list(ARCH_KEYS), source)
    _check_keys(value, sorted(ARCH_KEYS[arch]), "model.", source)
    model = dict(value)
    channels, classes, side = dataset_shape(dataset)
    model.setdefault("in_channels", channels)
    model.setdefault("classes", classes)
    if arch == "vgg":
        model.setdefault("image_size", side)
    try:
        build_network(model)
    except ValueError as exc:
        key, _, why = str(exc).partition(": ")
        raise UserError(f"{source}: key 'model.{key}': {why}") from None
    if dataset["name"] in ("dvs_gesture", "cifar10_dvs") or (dataset["name"] == "synthetic"
                                                             and dataset["kind"] == "dvs"):
        if arch == "sew7b" and side != 128:
            raise UserError(f"{source}: key 'dataset.size' = {side}: arch 'sew7b' needs 128x128 frames")
    return model


def _generic_train(value, model: dict, source: str) -> dict:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise UserError(f"{source}: key 'train' must be a mapping")
    _check_keys(value, sorted(GENERIC_TRAIN_DEFAULTS), "train.", source)
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
                                f"got {item!r}")
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
    dual = model.get("arch") == "resnet" and model.get("block") == "dual"
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
    _check_keys(data, ["dataset", "model", "train"], "", source)
    dataset = _generic_dataset(data.get("dataset", "digits"), source)
    model = _generic_model(data.get("model"), dataset, source)
    train = _generic_train(data.get("train"), model, source)
    return {"generic": True, "dataset": dataset, "model": model, "train": train}
