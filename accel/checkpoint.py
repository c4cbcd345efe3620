"""Loading trained checkpoints safely (``weights_only=True``: a checkpoint can never run code)."""
from __future__ import annotations

import pickle
from importlib import resources
from pathlib import Path

import torch

from models import DigitsNet
from models.graphnet import GRAPH_MODEL, GraphNet
from models.train import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, GENERIC_MODEL

from .errors import UserError


def shipped_checkpoint_path() -> Path:
    """The digits checkpoint shipped with the package (regenerate: ``python scripts/make_shipped_checkpoint.py``)."""
    return Path(str(resources.files("accel") / "data" / "digits_checkpoint.pt"))


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
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
            raise UserError(f"{path}: parameter '{key}' contains NaN or Inf")
    generic = payload.get("model") == GENERIC_MODEL
    try:
        if generic:  # any network of models.networks, rebuilt from the config it recorded
            from models.networks import build_network

            net = build_network(payload.get("config"))
        elif payload.get("model") == GRAPH_MODEL:  # an imported network (accel import), its graph recorded
            net = GraphNet(payload.get("config"))
        else:
            net = DigitsNet(**payload.get("config", {}))
    except (TypeError, ValueError) as exc:
        raise UserError(f"{path}: bad model configuration ({exc})") from None
    what = {"digits": "the digits network", GRAPH_MODEL: "the imported network"}.get(payload.get("model"),
                                                                                    "the network")
    expected = net.state_dict()
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
    net.load_state_dict(state)
    if generic:
        _set_input(net, payload)
    return net.eval(), payload


def _set_input(net, payload: dict) -> None:
    """The integer input a generic network compiles for: digits pixels 0..16 seen as ``pixels / 16``."""
    from models.digits import DIGITS_MAX_PIXEL

    run = (payload.get("train_state") or {}).get("run_config") or {}
    dataset = run.get("dataset") or {}
    if isinstance(dataset, dict) and dataset.get("name") == "digits":
        net.input_scale = DIGITS_MAX_PIXEL
        net.input_shape = (1, 8, 8)
