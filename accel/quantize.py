"""Quantizer: trained float network -> integer layers (``models.IntegerLayer``), per ``docs/numerics.md``."""
from __future__ import annotations

import math

import torch

from models import DigitsNet, IntegerLayer

from .config import ArchConfig
from .errors import UserError


def leak_shift(decay: float, layer: str) -> int:
    """Map a decay to a right shift: ``decay = 2**-shift`` exactly, else reject."""
    if decay <= 0 or decay > 1:
        raise UserError(f"layer {layer}: decay {decay} is not in (0, 1]")
    shift = -math.log2(decay)
    if abs(shift - round(shift)) > 1e-12 or round(shift) > 7:
        raise UserError(f"layer {layer}: decay {decay} is not a power of two 2^-s with s <= 7 (cannot map to a shift)")
    return int(round(shift))


def _pow2_scale(max_abs: torch.Tensor, weight_bits: int, membrane_max: torch.Tensor, membrane_bits: int):
    """Largest ``2**f`` with ``max_abs * 2**f <= 2**(weight_bits-1) - 1`` whose thresholds and biases
    (``membrane_max * 2**f``) still fit the membrane width.

    The second bound matters for channels with tiny weights (a nearly dead channel would otherwise get a
    huge scale and thresholds that overflow); an all-zero channel gets the membrane bound alone.
    """
    w_limit = (1 << (weight_bits - 1)) - 1
    m_limit = (1 << (membrane_bits - 1)) - 1
    f_weight = torch.floor(torch.log2(w_limit / max_abs.clamp_min(1e-300)))
    f_membrane = torch.floor(torch.log2(m_limit / membrane_max.clamp_min(1e-300)))
    f = torch.minimum(f_weight, f_membrane).clamp(-60, 60)
    return torch.pow(2.0, f.to(torch.float64))


def _round(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x).to(torch.int64)  # torch.round is round-half-to-even


def quantize_digits(net: DigitsNet, arch: ArchConfig) -> tuple:
    """Fold tdBN, choose per-channel power-of-two scales, round; returns ``(layers, scales)``.

    ``scales[l]`` is the per-output-channel scale ``S_c`` of layer ``l`` (float64), so that
    ``integer ~ S_c * float`` for weights, biases, thresholds and membranes.
    """
    net = net.eval()
    layers, scales = [], []
    stages, classifier = net.stages()
    cfg = net.config
    if cfg["levels"] > arch.max_levels:
        raise UserError(f"layer conv0: {cfg['levels']} levels exceed the configuration's max_levels = {arch.max_levels}")
    input_divisor = float(net.input_scale)
    with torch.no_grad():
        for i, (conv, bn, act) in enumerate(stages):
            name = f"conv{i}"
            a, b = bn.affine()
            w = conv.weight.to(torch.float64) * a.to(torch.float64).view(-1, 1, 1, 1)
            bias = b.to(torch.float64)
            if conv.bias is not None:
                bias = bias + a.to(torch.float64) * conv.bias.to(torch.float64)
            if i == 0:
                w = w / input_divisor
            level_th = torch.tensor(act.thresholds, dtype=torch.float64)
            membrane_max = torch.maximum(bias.abs(), level_th.abs().max().expand_as(bias))
            s = _pow2_scale(w.abs().flatten(1).max(1).values, arch.weight_bits, membrane_max, arch.membrane_bits)
            thresholds = level_th.view(-1, 1) * s.view(1, -1)
            layers.append(IntegerLayer(
                op="conv", weight=_round(w * s.view(-1, 1, 1, 1)), bias=_round(bias * s),
                thresholds=torch.floor(thresholds).to(torch.int64), shift=leak_shift(act.decay, name),
                stride=conv.stride[0], padding=conv.padding[0], fires=True))
            scales.append(s)
        w = classifier.weight.to(torch.float64)
        b = classifier.bias.to(torch.float64)
        s = _pow2_scale(w.abs().max().view(1), arch.weight_bits, b.abs().max().view(1), arch.membrane_bits)
        s = s.expand(w.shape[0]).clone()
        never = (1 << (arch.membrane_bits - 1)) - 1
        layers.append(IntegerLayer(
            op="linear", weight=_round(w * s.view(-1, 1)), bias=_round(b * s),
            thresholds=torch.full((1, w.shape[0]), never, dtype=torch.int64), shift=0, fires=False))
        scales.append(s)
    return layers, scales
