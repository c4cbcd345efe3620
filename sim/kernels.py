"""The simulator's integer arithmetic, written from ``docs/numerics.md`` (sections 1 and 3).

These kernels are the simulator's own implementation of the numerics contract, independent of the golden
model (``spikecore.models.hwexact``), so that comparing the two tests each against the other. Both engines
call them: ``sim/tables.py`` on int64 tensors (views of its numpy memories), ``sim/dense.py`` on int64 or,
where :func:`float32_holds` proves every value exact, float32 tensors holding integers.

Notation: ``sat_B(v)`` clamps ``v`` to ``[-2^(B-1), 2^(B-1) - 1]`` and counts one saturation event per
clamped element; ``v >> s = floor(v / 2^s)`` for negative ``v`` too.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from spikecore.accel.contract.layouts import GATE_TABLE_BITS

#: Largest index of a gate's truth table: a gate reads bit ``clamp(x, 0, GATE_INDEX_MAX)`` of its
#: ``GATE_TABLE_BITS``-bit table (three binary inputs weighted 1, 2, 4).
GATE_INDEX_MAX = GATE_TABLE_BITS - 1
#: Every integer of magnitude up to this is exact in float32 (24 significand bits), and so is every sum of
#: such integers that stays within it.
FLOAT32_EXACT = 1 << (np.finfo(np.float32).nmant + 1)


def clamp_counted(v: torch.Tensor, low: int, high: int):
    """``(clamp(v, low, high), number of elements outside [low, high])``.

    Parameters
    ----------
    v : tensor of integers (any integer or floating dtype)
    low, high : int

    Returns
    -------
    (tensor, int)
        ``v`` itself when nothing is outside the range (the usual case, one pass over ``v``).
    """
    if v.numel() == 0:
        return v, 0
    smallest, largest = torch.aminmax(v)
    if smallest.item() >= low and largest.item() <= high:
        return v, 0
    outside = int(torch.count_nonzero(v < low)) + int(torch.count_nonzero(v > high))
    return v.clamp(low, high), outside


def saturate(v: torch.Tensor, bits: int):
    """``(sat_bits(v), saturation events)``: clamp to the signed range of ``bits`` bits."""
    return clamp_counted(v, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def leak(u: torch.Tensor, shift: int) -> torch.Tensor:
    """``u >> shift = floor(u / 2**shift)``, rounding toward minus infinity for negative ``u`` too.

    Multiplying by ``2**-shift`` is exact in floating point, so the floor of the product is exact for
    integers held in float32; int64 membranes take the arithmetic shift itself.
    """
    if shift == 0:
        return u
    if u.is_floating_point():
        return torch.floor(u * (1.0 / (1 << shift)))   # two vectorised passes; torch.div(floor) is several
    return u >> shift


def neuron_update(u: torch.Tensor, x: torch.Tensor, thresholds: torch.Tensor, shift: int, membrane_bits: int,
                  out: torch.Tensor | None = None):
    """One timestep of a stage of multi-level neurons (``docs/numerics.md``, "Neuron").

    For every level ``k`` (the leading axis)::

        v_k = sat_M((u_k >> shift) + x)          M = membrane_bits
        o_k = 1 if v_k > theta_k else 0          strict comparison
        u_k <- 0 if o_k else v_k                 the membrane is stored after reset
        s   = o_1 + ... + o_K                    the spike count

    Held in float32 (under :func:`float32_holds`: ``|u >> shift| < 2**23`` and ``|x| < 2**24``), the sum
    ``(u >> shift) + x`` may exceed 2**24 and round, but then it is beyond the membrane range either way, so
    it clamps to the same bound and counts the same saturation.

    Parameters
    ----------
    u : tensor [K, ...] of integers (int64, or float32 under :func:`float32_holds`)
        Stored membranes of the ``K`` levels.
    x : tensor [...], the dtype of ``u``
        Input current (bias included).
    thresholds : tensor broadcastable to [K, ...], the dtype of ``u``
    shift : int
        Leak shift (``shift = 2`` is the decay 0.25; 0 is the IF neuron).
    membrane_bits : int
    out : tensor [...], optional
        Receives the spike counts (in its own dtype); a new int64 tensor when omitted.

    Returns
    -------
    (u_next [K, ...], counts [...], saturations)
    """
    v, saturations = saturate(leak(u, shift) + x, membrane_bits)
    fired = v > thresholds
    u_next = v.masked_fill_(fired, 0)  # v is the fresh sum (or its clamped copy), never u or x
    if out is None:
        out = torch.empty(fired.shape[1:], dtype=torch.int64)
    torch.sum(fired, 0, dtype=out.dtype, out=out)
    return u_next, out, saturations


def sum_update(x: torch.Tensor, value_bits: int):
    """A ``sum`` stage: ``(clamp(x, 0, 2**value_bits - 1), saturation events)``."""
    return clamp_counted(x, 0, (1 << value_bits) - 1)


def gate_update(x: torch.Tensor, truth_table: int):
    """A ``gate`` stage: ``(bit clamp(x, 0, 7) of truth_table, saturation events)``, as int64."""
    index, saturations = clamp_counted(x, 0, GATE_INDEX_MAX)
    table = torch.tensor([(truth_table >> bit) & 1 for bit in range(GATE_INDEX_MAX + 1)], dtype=torch.int64)
    return table[index.to(torch.int64)], saturations


def float32_holds(current_bound: int, stateful: bool, membrane_bits: int, threshold_peak: int) -> bool:
    """Whether a stage's update is exact in float32: every current (bias included, at most
    ``current_bound`` in magnitude) below :data:`FLOAT32_EXACT`, and for a neuron stage the membranes
    (``membrane_bits <= 24``) and thresholds too (see :func:`neuron_update` for the sum)."""
    if current_bound >= FLOAT32_EXACT:
        return False
    return not stateful or (membrane_bits <= 24 and threshold_peak < FLOAT32_EXACT)


class SynapticMap:
    """A source's synaptic map ``W s`` on the core's hardware layout: a convolution or a linear map.

    Parameters
    ----------
    op : {"conv", "linear"}
    weight : int64 tensor
        ``[C_out, C_in, KH, KW]`` (conv, on channels-first images) or ``[N_out, N_in]`` (linear).
    stride, padding : int
        Of a convolution (zero padding).
    """

    def __init__(self, op: str, weight: torch.Tensor, stride: int = 1, padding: int = 0):
        if op not in ("conv", "linear"):
            raise ValueError(f"unknown synaptic map {op!r}")
        self.op, self.weight, self.stride, self.padding = op, weight, stride, padding
        self.bound = int(weight.abs().reshape(len(weight), -1).sum(1).max()) if weight.numel() else 0
        self._weights = {}   # the weight in each floating dtype asked for, converted once
        # a max stage's window (maximum): each output channel's one input channel and the offsets it selects
        self.window_source = self.window_mask = None
        if op == "conv" and weight.numel():
            uses = weight.flatten(2).ne(0).any(2)                                     # [C_out, C_in]
            if bool((uses.sum(1) <= 1).all()):
                self.window_source = uses.to(torch.int64).argmax(1)
                self.window_mask = weight[torch.arange(len(weight)), self.window_source] != 0   # [C_out, KH, KW]
        # identities, sum pools and joins are per-channel: a grouped convolution does C instead of C*C products
        self.per_channel = False
        if op == "conv" and weight.numel() and weight.shape[0] == weight.shape[1]:
            channels = torch.arange(weight.shape[0])
            off_diagonal = weight.clone()
            off_diagonal[channels, channels] = 0
            if not bool(off_diagonal.any()):
                self.per_channel = True
                self.weight = weight[channels, channels].unsqueeze(1)   # [C, 1, KH, KW]

    def current(self, s: torch.Tensor) -> torch.Tensor:
        """``W s`` in the floating dtype of ``s`` (``[N, C, H, W]`` for a convolution, ``[N, F]`` for a linear
        map).

        Exact when every partial sum is below 2**24 (float32) or 2**53 (float64), which ``bound * max|s|``
        (:attr:`bound`: ``max_o sum_i |W[o, i]|``) bounds: PyTorch's CPU convolutions and matrix products sum
        exact products, with no Winograd or FFT transforms.
        """
        w = self._weights.get(s.dtype)
        if w is None:
            w = self._weights[s.dtype] = self.weight.to(s.dtype)
        if self.op == "conv":
            groups = w.shape[0] if self.per_channel else 1
            return F.conv2d(s, w, stride=self.stride, padding=self.padding, groups=groups)
        return s @ w.t()

    def maximum(self, s: torch.Tensor) -> torch.Tensor:
        """A ``max`` stage's accumulation: ``acc[c] = max(0, max over the window offsets (ky, kx) with
        W[c, i_c, ky, kx] != 0 of s[i_c] at that offset)``, where ``i_c`` is the one input channel output
        channel ``c`` reads (:attr:`window_source`), for non-negative ``s`` (``[N, C_in, H, W]``, any dtype;
        the result in it), zero padding. One ``torch.maximum`` per window offset over all channels at once,
        each channel masked by whether its weight selects the offset."""
        if self.window_source is None:
            raise ValueError("a max stage's map reads one input channel per output channel")
        kh, kw = self.window_mask.shape[1:]
        padded = F.pad(s[:, self.window_source], (self.padding,) * 4)
        out_h = (padded.shape[2] - kh) // self.stride + 1
        out_w = (padded.shape[3] - kw) // self.stride + 1
        out = torch.zeros(padded.shape[:2] + (out_h, out_w), dtype=s.dtype)
        selects = self.window_mask.to(s.dtype)
        for ky in range(kh):
            for kx in range(kw):
                window = padded[:, :, ky:ky + self.stride * (out_h - 1) + 1:self.stride,
                                kx:kx + self.stride * (out_w - 1) + 1:self.stride]
                out = torch.maximum(out, window * selects[:, ky, kx].view(1, -1, 1, 1))
        return out
