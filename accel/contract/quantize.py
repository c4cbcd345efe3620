"""Quantizer: float stage graph (:mod:`spikecore.accel.contract.lowering`) -> integer stages (``models.IntegerStage``).

Per ``docs/numerics.md``: every neuron stage gets a per-output-channel power-of-two scale ``S_c`` (weights,
bias, thresholds and membranes are ``~ S_c *`` their float values); stages joined by a membrane shortcut
share one scale (they add into the same accumulators); the readout uses one scale for all classes, so its
logits compare; ``sum``, ``gate`` and ``max`` stages are exact integer operations (scale 1) on event values.
"""
from __future__ import annotations

import math

import torch

from spikecore.models import IntegerStage, Source

from spikecore.accel.contract.config import ArchConfig
from spikecore.accel.contract.layouts import MAX_SHIFT
from spikecore.errors import UserError
from spikecore.accel.contract.lowering import FloatGraph

#: Stage kinds computed exactly on event values: their weights and biases are integers as lowered (scale 1).
EXACT_KINDS = ("sum", "gate", "max")


def leak_shift(decay: float, layer: str) -> int:
    """Map a decay to a right shift: ``decay = 2**-shift`` exactly, else reject."""
    if decay <= 0 or decay > 1:
        raise UserError(f"layer {layer}: decay {decay} is not in (0, 1]")
    shift = -math.log2(decay)
    if abs(shift - round(shift)) > 1e-12 or round(shift) > MAX_SHIFT:
        raise UserError(f"layer {layer}: decay {decay} is not a power of two 2^-s with s <= {MAX_SHIFT} (cannot map "
                        f"to a shift)")
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


def _carry_groups(graph: FloatGraph) -> list:
    """Group index of each stage: stages linked by membrane shortcuts share a group (and a scale)."""
    group = list(range(len(graph.stages)))
    for i, stage in enumerate(graph.stages):
        if stage.carry is not None:
            group[i] = group[stage.carry]
    return group


def _weight_max(stage) -> torch.Tensor:
    """Largest |weight| per output channel over all sources of a stage."""
    return torch.stack([s.weight.abs().flatten(1).max(1).values for s in stage.sources]).max(0).values


def _thresholds(stage) -> torch.Tensor:
    return torch.tensor(stage.neuron.thresholds, dtype=torch.float64)


def stage_scales(graph: FloatGraph, arch: ArchConfig) -> list:
    """Per-channel scale of every stage (``None`` for the exact integer stages: sum, gate, max)."""
    group = _carry_groups(graph)
    w_max, m_max = {}, {}
    for i, stage in enumerate(graph.stages):
        if stage.kind in EXACT_KINDS:
            continue
        membrane = stage.bias.abs()
        if stage.kind == "neuron":
            membrane = torch.maximum(membrane, _thresholds(stage).abs().max().expand_as(membrane))
        w, g = _weight_max(stage), group[i]
        w_max[g] = w if g not in w_max else torch.maximum(w_max[g], w)
        m_max[g] = membrane if g not in m_max else torch.maximum(m_max[g], membrane)
    scales = []
    for i, stage in enumerate(graph.stages):
        if stage.kind in EXACT_KINDS:
            scales.append(None)
        elif stage.kind == "readout":  # one scale for all classes
            s = _pow2_scale(w_max[group[i]].max().view(1), arch.weight_bits, m_max[group[i]].max().view(1),
                            arch.membrane_bits)
            scales.append(s.expand(stage.out_shape[0]).clone())
        else:
            scales.append(_pow2_scale(w_max[group[i]], arch.weight_bits, m_max[group[i]], arch.membrane_bits))
    return scales


def _exact(stage, w: torch.Tensor) -> torch.Tensor:
    """The integer weights of a sum, gate or max stage, which must be exact (no scale can be applied)."""
    if not torch.equal(w, torch.round(w)):
        raise UserError(f"layer {stage.name}: a {stage.kind} join of inputs whose values are not integers "
                        f"(an average pool or a scaled input feeds it); the core adds event values exactly")
    return w.to(torch.int64)


def quantize_graph(graph: FloatGraph, arch: ArchConfig) -> tuple:
    """Integer stages and their scales: ``(stages, scales)``; ``scales[i]`` is float64 ``[C]`` (1 for the
    exact stages), so that ``integer ~ scale * float`` for weights, biases, thresholds and membranes."""
    never = (1 << (arch.membrane_bits - 1)) - 1
    out, scales = [], []
    for stage, s in zip(graph.stages, stage_scales(graph, arch)):
        channels = stage.out_shape[0]
        if s is None:
            sources = [Source(src.input, src.op, _exact(stage, src.weight), src.stride, src.padding)
                       for src in stage.sources]
            bias = _exact(stage, stage.bias)
            thresholds = torch.full((1, channels), never, dtype=torch.int64)
            shift, s = 0, torch.ones(channels, dtype=torch.float64)
        else:
            view = lambda w: s.view((-1,) + (1,) * (w.dim() - 1))
            sources = [Source(src.input, src.op, _round(src.weight * view(src.weight)), src.stride, src.padding)
                       for src in stage.sources]
            bias = _round(stage.bias * s)
            if stage.kind == "neuron":
                if stage.neuron.levels > arch.max_levels:
                    raise UserError(f"layer {stage.name}: {stage.neuron.levels} levels exceed the configuration's "
                                    f"max_levels = {arch.max_levels}")
                thresholds = torch.floor(_thresholds(stage).view(-1, 1) * s.view(1, -1)).to(torch.int64)
                shift = leak_shift(stage.neuron.decay, stage.name)
            else:
                thresholds = torch.full((1, channels), never, dtype=torch.int64)
                shift = 0
        out.append(IntegerStage(name=stage.name, kind=stage.kind, sources=sources, out_shape=stage.out_shape,
                                bias=bias, thresholds=thresholds, shift=shift, truth_table=stage.truth_table,
                                carry=stage.carry))
        scales.append(s)
    return out, scales
