"""Integer semantics of the hardware-exact mode (the golden model).

These functions implement ``docs/numerics.md`` on int64 tensors. They know nothing of memories, lanes or
cycles: they state what each neuron computes, and every other implementation (the event-driven
simulator, the Amaranth core, the generated Verilog) is tested against them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def clamp_count(v: torch.Tensor, lo: int, hi: int):
    """``(clamp(v, lo, hi), number of clamped elements)``; one pass over ``v`` in the usual case, nothing clamped."""
    if v.numel() == 0:
        return v, 0
    low, high = torch.aminmax(v)
    if lo <= int(low) and int(high) <= hi:
        return v, 0
    clamped = v.clamp(lo, hi)
    return clamped, int((clamped != v).sum())


def saturate(v: torch.Tensor, bits: int):
    """Clamp to the signed range of ``bits`` bits; returns ``(clamped, number_of_clamped_elements)``."""
    return clamp_count(v, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def neuron_step_int(u: torch.Tensor, x: torch.Tensor, thresholds: torch.Tensor, shift: int, bits: int,
                    out: torch.Tensor | None = None):
    """One timestep of the integer multi-level neuron.

    For every level ``k`` (the leading axis of ``u`` and ``thresholds``)::

        v_k   = sat_bits( (u_k >> shift) + x )      # arithmetic shift = floor(u_k / 2**shift)
        o_k   = v_k > theta_k                       # strict, as the MLF authors' code
        u_k'  = 0 if o_k else v_k                   # reset stored immediately
        count = sum_k o_k

    Storing the reset membrane is the same as the authors' ``u = tau*u*(1 - o) + x`` with ``o`` taken from
    the previous step. ``shift = 2`` is the decay 0.25; ``shift = 0`` is an IF neuron (no leak).

    The same integers may be held in float32 (the golden model does so where it proves them exact: every
    magnitude below 2**24 and ``bits <= 24``); the shift is then ``floor(u * 2**-shift)``, exact too. A
    sum beyond 2**24 may round, but only where it saturates anyway, to the same bound.

    Parameters
    ----------
    u : tensor [K, ...], int64, int32 or float32 holding integers
        Stored (post-reset) membranes of each level.
    x : tensor [...], the dtype of ``u``
        Input current of this timestep, bias included.
    thresholds : tensor broadcastable to [K, ...], the dtype of ``u``
    shift : int
    bits : int
        Membrane width; the sum saturates to it.
    out : tensor [...], optional
        Where to write the spike counts (any dtype); a new int64 tensor when omitted.

    Returns
    -------
    (u_next, count, saturations): [K, ...] in the dtype of ``u``, ``out`` or int64 [...], int
    """
    if shift:
        u = torch.floor(u * 2.0 ** -shift) if u.is_floating_point() else u >> shift
    v, saturations = saturate(u + x.unsqueeze(0), bits)
    if out is None:
        out = torch.empty(v.shape[1:], dtype=torch.int64)
    if v.is_floating_point():
        # integers: v - theta >= 1 exactly where v > theta, and rounding (beyond 2**24) keeps the sign
        single = len(v) == 1 and out.dtype == v.dtype  # one level: the spikes are written in place
        fired = torch.sub(v, thresholds, out=out.unsqueeze(0) if single else None).clamp_(0, 1)
        u_next = v.addcmul(v, fired, value=-1)
    else:
        fired = v > thresholds
        u_next = v.masked_fill_(fired, 0)
        single = False
    if not single:
        if len(fired) == 1:
            out.copy_(fired[0])
        else:
            torch.sum(fired, 0, dtype=out.dtype, out=out)
    return u_next, out, saturations


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
STAGE_KINDS = ("neuron", "readout", "sum", "gate", "max")
GATE_INPUTS = 3


@dataclass
class IntegerStage:
    """One stage of an integer network (hardware-agnostic: no lanes, memories or cycles).

    Per timestep the stage forms ``acc = sum(source currents) (+ acc of stage `carry`)`` (a ``max`` stage: the
    maximum of the inputs its weights select, :func:`max_map`) and ``x = acc + bias`` (per output channel), then
    applies its kind (see ``STAGE_KINDS``). ``carry`` is the
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


#: Integers of magnitude below this are exact in float32, and so is every partial sum of a product of them.
FLOAT32_EXACT = 1 << 24


def weight_bound(source: Source) -> int:
    """``max_o sum_i |W_oi|``: with inputs of magnitude at most ``m``, every partial sum of ``W s`` is at most
    this times ``m``."""
    w = source.weight
    return int(w.abs().flatten(1).sum(1).max()) if w.numel() else 0


def _channel_scale(source: Source):
    """The per-channel factors of a 1x1, unpadded convolution whose only nonzero weights are ``W[c, c]``, or
    None for any other source."""
    w = source.weight
    if source.op != "conv" or source.padding or w.shape[2:] != (1, 1) or w.shape[0] != w.shape[1]:
        return None
    square = w[:, :, 0, 0]
    diagonal = torch.diagonal(square)
    return diagonal if torch.equal(torch.diag(diagonal), square) else None


def linear_map(source: Source, s: torch.Tensor) -> torch.Tensor:
    """``W s`` in the floating dtype of ``s`` (``[N, ...]``); exact when the caller has bounded every partial
    sum (``weight_bound(source) * max|s|``) below 2**24 (float32) or 2**53 (float64)."""
    w = source.weight.to(s.dtype)
    if source.op == "conv":
        diagonal = _channel_scale(source)
        if diagonal is not None:  # identity shortcuts and join inputs: a per-channel scale, no convolution
            picked = s[:, :, ::source.stride, ::source.stride]
            return picked * diagonal.to(s.dtype).view(1, -1, 1, 1)
        return F.conv2d(s, w, stride=source.stride, padding=source.padding)
    if source.op == "linear":
        return s.flatten(1) @ w.t()
    raise ValueError(f"unknown source op {source.op!r}")


def max_map(source: Source, s: torch.Tensor) -> torch.Tensor:
    """A ``max`` stage's accumulation: ``acc_o = max(0, max over i with W_oi != 0 of s_i)`` for non-negative
    events ``s`` (``[N, C, H, W]``, floating dtype; the weights only select the inputs), per output channel
    over the input rows its weights select (``docs/numerics.md``, "Max pooling")."""
    if source.op != "conv":
        raise ValueError(f"a max stage's source is a convolution (a pooling window), not {source.op!r}")
    kh, kw = source.weight.shape[2:]
    columns = F.unfold(s, (kh, kw), padding=source.padding, stride=source.stride)    # [N, C*kh*kw, P]
    selected = source.weight.flatten(1) != 0                                         # [O, C*kh*kw]
    out = torch.zeros((s.shape[0], len(selected), columns.shape[-1]), dtype=s.dtype)
    for o, rows in enumerate(selected):
        if rows.any():
            out[:, o] = columns[:, rows].amax(1).clamp_min(0)
    h = (s.shape[2] + 2 * source.padding - kh) // source.stride + 1
    return out.view(s.shape[0], len(selected), h, -1)


def _per_channel(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``[..., C]`` parameters broadcast against ``[N, C, ...]`` values."""
    return v.to(torch.int64).view(v.shape[:-1] + (1, -1) + (1,) * (like.dim() - 2))


def sum_step(x: torch.Tensor, value_bits: int):
    """A ``sum`` stage: emits ``clamp(x, 0, 2**value_bits - 1)``; returns ``(events, clamped elements)``."""
    return clamp_count(x, 0, (1 << value_bits) - 1)


def gate_step(x: torch.Tensor, truth_table: int):
    """A ``gate`` stage: emits bit ``clamp(x, 0, 7)`` of ``truth_table``; returns ``(events, clamped elements)``."""
    index, clamped = clamp_count(x, 0, (1 << GATE_INPUTS) - 1)
    return (truth_table >> index.to(torch.int64)) & 1, clamped


def float32_exact(bound: int, stateful: bool, membrane_bits: int, threshold_peak: int) -> bool:
    """Whether a stage whose currents (bias included) are bounded by ``bound`` can be computed in float32
    without rounding: every current, and for a neuron stage every membrane and threshold, below 2**24."""
    return bound < FLOAT32_EXACT and (not stateful or (membrane_bits <= 24 and threshold_peak < FLOAT32_EXACT))


def stage_output(stage: IntegerStage, state, x: torch.Tensor, membrane_bits: int, value_bits: int):
    """The kind's step on the stage current ``x`` (bias included): ``(state_next, events, saturations)``."""
    if stage.kind in ("neuron", "readout"):
        th = _per_channel(stage.thresholds, x)
        return neuron_step_int(state, x, th, stage.shift, membrane_bits)
    if stage.kind in ("sum", "max"):   # a max stage's maximum is emitted as a sum's value
        return (state,) + sum_step(x, value_bits)
    if stage.kind == "gate":
        return (state,) + gate_step(x, stage.truth_table)
    raise ValueError(f"unknown stage kind {stage.kind!r}")


def run_integer_network(stages, pixels: torch.Tensor, timesteps: int, membrane_bits: int, value_bits: int) -> dict:
    """The golden model: evaluate an integer network on integer pixels ``[N, C, H, W]`` (the same image at every
    timestep: direct encoding) or on integer frames ``[N, T, C, H, W]`` (frame ``t`` at timestep ``t``: event
    input).

    Each source refers to an earlier stage or the pixels and a stage's state depends only on its own past,
    so the stages are evaluated one after the other over all timesteps at once (layer-major): a source's
    current for every timestep is one convolution over ``T * N`` inputs, then the stage steps through
    the timesteps. The result is the same as stepping the whole network timestep by timestep.

    Every value is an integer. A stage runs in float32 (the fast convolution kernels, no conversions) when
    its bound ``sum over sources (max_o sum_i |W_oi|) * max|s|`` (plus a carried accumulation and the
    bias) is below 2**24 and its membranes have at most 24 bits: then every partial sum, current and
    membrane is exactly representable (PyTorch's CPU convolutions are direct or GEMM ones, sums of exact
    products, no Winograd or FFT). Otherwise the currents are float64 (exact below 2**53) and the
    membranes int64.

    Returns ``{"spikes": [int32 [T, N, ...] per emitting stage, in stage order], "logits": int64 [N, classes]
    (level-0 membranes of the last stage, a readout), "saturations": int}`` following ``docs/numerics.md``.
    """
    pixels = pixels.to(torch.int64)
    frames = pixels.dim() == 5
    if frames:  # [T, N, C, H, W], as a stage's events
        if pixels.shape[1] != timesteps:
            raise ValueError(f"frames {list(pixels.shape)}: expected {timesteps} timesteps after N")
        pixels = pixels.transpose(0, 1)
    carried = {stage.carry for stage in stages if stage.carry is not None}
    inputs = {-1: (pixels.to(torch.float64), int(pixels.abs().max()) if pixels.numel() else 0)}
    accumulations, emitted = {}, []
    saturations, state = 0, None
    for i, stage in enumerate(stages):
        bound = sum(weight_bound(src) * inputs[src.input][1] for src in stage.sources)
        if stage.carry is not None:
            bound += accumulations[stage.carry][1]
        bound += int(stage.bias.abs().max()) if stage.bias.numel() else 0
        stateful = stage.kind in ("neuron", "readout")
        exact32 = float32_exact(bound, stateful, membrane_bits, int(stage.thresholds.abs().max()))
        dtype = torch.float32 if exact32 else torch.float64
        acc = None
        accumulate = max_map if stage.kind == "max" else linear_map
        for src in stage.sources:
            events = inputs[src.input][0].to(dtype)
            if src.input < 0 and not frames:  # direct encoding: the same current at every timestep
                current = accumulate(src, events)  # [N, C, H, W] for a convolution, [N, F] for a linear layer
                current = current.unsqueeze(0).expand((timesteps,) + current.shape)
            else:
                current = accumulate(src, events.flatten(0, 1))
                current = current.view((timesteps, events.shape[1]) + current.shape[1:])
            acc = current if acc is None else acc + current
        if stage.carry is not None:
            acc = accumulations[stage.carry][0].to(dtype) + acc
        if i in carried:
            accumulations[i] = (acc, bound)
        x = acc + _per_channel(stage.bias, acc[0]).to(dtype)
        if not exact32:
            x = x.to(torch.int64)
        if stateful:
            state = torch.zeros((stage.levels,) + tuple(x.shape[1:]), dtype=x.dtype)
            thresholds = _per_channel(stage.thresholds, x[0]).to(x.dtype)
            out = torch.empty(x.shape, dtype=torch.float32)
            for t in range(timesteps):
                state, _, sat = neuron_step_int(state, x[t], thresholds, stage.shift, membrane_bits, out[t])
                saturations += sat
        else:  # stateless: every timestep at once
            _, out, sat = stage_output(stage, None, x, membrane_bits, value_bits)
            saturations += sat
            out = out.to(torch.float32)
        # the largest event: at most K spikes from a neuron, 1 from a gate; measured for a sum
        peak = stage.levels if stateful else 1 if stage.kind == "gate" else int(out.max()) if out.numel() else 0
        inputs[i] = (out, peak)
        if stage.emits:
            emitted.append(out.to(torch.int32))
    return {"spikes": emitted, "logits": state[0].to(torch.int64), "saturations": saturations}
