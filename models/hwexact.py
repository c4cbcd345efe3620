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
class IntegerLayer:
    """One layer of an integer network (hardware-agnostic: no lanes, memories or cycles).

    ``op`` is ``"conv"`` (weight ``[C_out, C_in, KH, KW]``, ``stride``, ``padding``) or ``"linear"``
    (weight ``[N_out, N_in]``; the input is flattened in ``(C, H, W)`` order). ``bias`` is ``[C_out]``;
    ``thresholds`` is ``[K, C_out]``; ``shift`` is the leak as a right shift; a classifier has
    ``fires=False`` (IF neuron with an unreachable threshold, its membranes are the logits).
    """

    op: str
    weight: torch.Tensor
    bias: torch.Tensor
    thresholds: torch.Tensor
    shift: int
    stride: int = 1
    padding: int = 0
    fires: bool = True

    @property
    def levels(self) -> int:
        return int(self.thresholds.shape[0])


def _current(layer: IntegerLayer, s: torch.Tensor) -> torch.Tensor:
    """``x = W s + b`` exactly: float64 holds these integers without rounding (|x| < 2**53)."""
    w = layer.weight.to(torch.float64)
    if layer.op == "conv":
        x = F.conv2d(s.to(torch.float64), w, stride=layer.stride, padding=layer.padding)
        x = x + layer.bias.to(torch.float64).view(1, -1, 1, 1)
    elif layer.op == "linear":
        x = s.flatten(1).to(torch.float64) @ w.t() + layer.bias.to(torch.float64)
    else:
        raise ValueError(f"unknown integer layer op {layer.op!r}")
    return x.round().to(torch.int64)


def run_integer_network(layers, pixels: torch.Tensor, timesteps: int, membrane_bits: int) -> dict:
    """The golden model: evaluate an integer network on integer pixels ``[N, C, H, W]``.

    Returns ``{"spikes": [int64 [T, N, ...] per firing layer], "logits": int64 [N, classes],
    "saturations": int}`` following ``docs/numerics.md``.
    """
    pixels = pixels.to(torch.int64)
    layer0_current = _current(layers[0], pixels)  # direct encoding: the same input at every timestep
    state = [None] * len(layers)
    spikes = [[] for _ in layers]
    saturations = 0
    for t in range(timesteps):
        s = None
        for i, layer in enumerate(layers):
            x = layer0_current if i == 0 else _current(layer, s)
            if state[i] is None:
                state[i] = torch.zeros((layer.levels,) + tuple(x.shape), dtype=torch.int64)
            th = layer.thresholds.to(torch.int64).view((layer.levels, 1, -1) + (1,) * (x.dim() - 2))
            state[i], s, sat = neuron_step_int(state[i], x, th, layer.shift, membrane_bits)
            saturations += sat
            if layer.fires:
                spikes[i].append(s)
    logits = state[-1][0]
    fired = [torch.stack(s) for s, layer in zip(spikes, layers) if layer.fires]
    return {"spikes": fired, "logits": logits, "saturations": saturations}
