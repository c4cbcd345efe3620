"""Integer semantics of the hardware-exact mode (the golden model).

These functions implement ``docs/numerics.md`` on int64 tensors. They know nothing of memories, lanes or
cycles: they state what each neuron computes, and every other implementation (the event-driven
simulator, the Amaranth core, the generated Verilog) is tested against them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def saturate(v: torch.Tensor, bits: int):
    """Clamp to the signed range of ``bits`` bits; returns ``(clamped, number_of_clamped_elements)``."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    clamped = v.clamp(lo, hi)
    return clamped, int((clamped != v).sum())


def neuron_step_int(u: torch.Tensor, x: torch.Tensor, thresholds: torch.Tensor, shift: int, bits: int):
    """One timestep of the integer multi-level neuron.

    For every level ``k`` (the leading axis of ``u`` and ``thresholds``)::

        v_k   = sat_bits( (u_k >> shift) + x )      # arithmetic shift = floor(u_k / 2**shift)
        o_k   = v_k > theta_k                       # strict, as the MLF authors' code
        u_k'  = 0 if o_k else v_k                   # reset stored immediately
        count = sum_k o_k

    Storing the reset membrane is the same as the authors' ``u = tau*u*(1 - o) + x`` with ``o`` taken from
    the previous step. ``shift = 2`` is the decay 0.25; ``shift = 0`` is an IF neuron (no leak).

    Parameters
    ----------
    u : int64 tensor [K, ...]
        Stored (post-reset) membranes of each level.
    x : int64 tensor [...]
        Input current of this timestep, bias included.
    thresholds : int64 tensor broadcastable to [K, ...]
    shift : int
    bits : int
        Membrane width; the sum saturates to it.

    Returns
    -------
    (u_next, count, saturations): int64 [K, ...], int64 [...], int
    """
    v, saturations = saturate((u >> shift) + x.unsqueeze(0), bits)
    fired = v > thresholds
    u_next = torch.where(fired, torch.zeros_like(v), v)
    return u_next, fired.sum(0).to(torch.int64), saturations


@dataclass
class Source:
    """One synaptic input of a stage: a convolution or a linear map of another stage's output events.

    ``input`` is the index of the producing stage, or ``-1`` for the network input (the pixels, the same
    at every timestep: direct encoding). ``op`` is ``"conv"`` (weight ``[C_out, C_in, KH, KW]``,
    ``stride``, ``padding``) or ``"linear"`` (weight ``[N_out, N_in]``, the input flattened in
    ``(C, H, W)`` order). Identity shortcuts, gate inputs and sum pooling are convolutions with one
    nonzero weight per output channel, so the core needs no other synaptic operation.
    """

    input: int
    op: str
    weight: torch.Tensor
    stride: int = 1
    padding: int = 0


#: Stage kinds. ``neuron``: multi-level neurons (MLF K >= 1; LIF and IF are K = 1); ``readout``: a neuron
#: that never fires, whose level-0 membranes summed over T are the logits; ``sum``: stateless, emits
#: ``clamp(x, 0, 2**value_bits - 1)`` (DS-ResNet and SEW ADD joins, the AAP, sum pooling); ``gate``:
#: stateless, emits bit ``clamp(x, 0, 7)`` of ``truth_table`` (logic joins over up to three binary inputs).
STAGE_KINDS = ("neuron", "readout", "sum", "gate")
GATE_INPUTS = 3


@dataclass
class IntegerStage:
    """One stage of an integer network (hardware-agnostic: no lanes, memories or cycles).

    Per timestep the stage forms ``acc = sum(source currents) (+ acc of stage `carry`)`` and
    ``x = acc + bias`` (per output channel), then applies its kind (see ``STAGE_KINDS``). ``carry`` is the
    MS-ResNet membrane shortcut: the stage's current includes the accumulation (bias excluded) of an
    earlier stage of the same shape, whose ``bias`` this stage's bias already contains.
    """

    name: str
    kind: str
    sources: list
    out_shape: tuple
    bias: torch.Tensor            # int64 [C]
    thresholds: torch.Tensor      # int64 [K, C] (neuron, readout); [1, C] unused otherwise
    shift: int = 0
    truth_table: int = 0
    carry: int | None = None

    @property
    def levels(self) -> int:
        return int(self.thresholds.shape[0])

    @property
    def emits(self) -> bool:
        return self.kind != "readout"


def gate_table(function) -> int:
    """Truth table of a logic join: bit ``x`` is ``function(b0, b1, b2)`` for ``x = b0 + 2 b1 + 4 b2``."""
    return sum(int(bool(function(x & 1, (x >> 1) & 1, (x >> 2) & 1))) << x for x in range(1 << GATE_INPUTS))


def source_current(source: Source, s: torch.Tensor) -> torch.Tensor:
    """``W s`` exactly: float64 holds these integers without rounding (|x| < 2**53)."""
    w = source.weight.to(torch.float64)
    if source.op == "conv":
        x = F.conv2d(s.to(torch.float64), w, stride=source.stride, padding=source.padding)
    elif source.op == "linear":
        x = s.flatten(1).to(torch.float64) @ w.t()
    else:
        raise ValueError(f"unknown source op {source.op!r}")
    return x.round().to(torch.int64)


def _per_channel(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``[..., C]`` parameters broadcast against ``[N, C, ...]`` values."""
    return v.to(torch.int64).view(v.shape[:-1] + (1, -1) + (1,) * (like.dim() - 2))


def stage_output(stage: IntegerStage, state, x: torch.Tensor, membrane_bits: int, value_bits: int):
    """The kind's step on the stage current ``x`` (bias included): ``(state_next, events, saturations)``."""
    if stage.kind in ("neuron", "readout"):
        th = _per_channel(stage.thresholds, x)
        return neuron_step_int(state, x, th, stage.shift, membrane_bits)
    if stage.kind == "sum":
        value = x.clamp(0, (1 << value_bits) - 1)
        return state, value, int((value != x).sum())
    if stage.kind == "gate":
        index = x.clamp(0, (1 << GATE_INPUTS) - 1)
        return state, (stage.truth_table >> index) & 1, int((index != x).sum())
    raise ValueError(f"unknown stage kind {stage.kind!r}")


def run_integer_network(stages, pixels: torch.Tensor, timesteps: int, membrane_bits: int, value_bits: int) -> dict:
    """The golden model: evaluate an integer network on integer pixels ``[N, C, H, W]``.

    Stages run in list order at every timestep (each source refers to an earlier stage or the pixels).
    Returns ``{"spikes": [int64 [T, N, ...] per emitting stage, in stage order], "logits": int64 [N, classes]
    (level-0 membranes of the last stage, a readout), "saturations": int}`` following ``docs/numerics.md``.
    """
    pixels = pixels.to(torch.int64)
    pixel_currents = {(i, j): source_current(src, pixels) for i, stage in enumerate(stages)
                      for j, src in enumerate(stage.sources) if src.input < 0}
    state = [None] * len(stages)
    spikes = [[] for _ in stages]
    saturations = 0
    for _ in range(timesteps):
        outputs, accumulations = [], []
        for i, stage in enumerate(stages):
            acc = None
            for j, src in enumerate(stage.sources):
                current = pixel_currents[i, j] if src.input < 0 else source_current(src, outputs[src.input])
                acc = current if acc is None else acc + current
            if stage.carry is not None:
                acc = accumulations[stage.carry] + acc
            accumulations.append(acc)
            x = acc + _per_channel(stage.bias, acc)
            if state[i] is None and stage.kind in ("neuron", "readout"):
                state[i] = torch.zeros((stage.levels,) + tuple(x.shape), dtype=torch.int64)
            state[i], out, sat = stage_output(stage, state[i], x, membrane_bits, value_bits)
            saturations += sat
            outputs.append(out)
            if stage.emits:
                spikes[i].append(out)
    logits = state[-1][0]
    emitted = [torch.stack(s) for s, stage in zip(spikes, stages) if stage.emits]
    return {"spikes": emitted, "logits": logits, "saturations": saturations}
