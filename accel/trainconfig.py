"""Training configuration YAML for ``accel train`` (validated: unknown keys and bad values are named)."""
from __future__ import annotations

from pathlib import Path

import yaml

from .config import _check_keys
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
    """Returns ``{"model": {...}, "train": {...}}`` with defaults filled in."""
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
