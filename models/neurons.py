"""Spiking neurons: pure step functions with the equations, and thin multi-step modules.

Tensors are time-major, ``[T, N, ...]``. A neuron returns spike *counts* with the input's shape: 0/1 for
a single level, ``0..K`` for the multi-level (MLF) neuron.
"""
from __future__ import annotations

import torch
from torch import nn


class RectangleSpike(torch.autograd.Function):
    """Heaviside ``v > 0`` forward; rectangular surrogate ``1[|v| < width/2] / width`` backward.

    ``v`` is the membrane minus the threshold. Firing is strict (``v > 0``), as in the MLF authors' code.
    """

    @staticmethod
    def forward(ctx, v: torch.Tensor, width: float):
        ctx.save_for_backward(v)
        ctx.width = width
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        (v,) = ctx.saved_tensors
        window = (v.abs() < ctx.width / 2).to(grad_output.dtype) / ctx.width
        return grad_output * window, None


def rectangle(width: float = 1.0):
    """Surrogate factory: returns ``spike(v)`` with the rectangular surrogate of the given width."""
    if width <= 0:
        raise ValueError(f"surrogate width must be positive, got {width}")
    return lambda v: RectangleSpike.apply(v, width)


def mlf_thresholds(levels: int, v_th: float, width: float) -> list:
    """Thresholds of the K levels: ``V_th + (k - 1) * a`` for ``k = 1..K`` (0.6, 1.6, 2.6 by default)."""
    return [v_th + k * width for k in range(levels)]


def mlf_step(u: torch.Tensor, o_prev: torch.Tensor, x: torch.Tensor, thresholds: torch.Tensor,
             decay: float, spike):
    """One timestep of the multi-level firing (MLF) neuron, all K levels at once.

    For each level ``k`` (leading axis of ``u``)::

        u_k <- decay * u_k * (1 - o_k[t-1]) + x[t]
        o_k[t] = spike(u_k - theta_k)              # Heaviside, strict
        output[t] = sum_k o_k[t]

    ``K = 1`` is the plain iterative LIF neuron of STBP.

    Parameters
    ----------
    u, o_prev : [K, N, ...]  membranes and spikes of the previous step
    x : [N, ...]              input current
    thresholds : [K, 1, ...]  broadcastable thresholds
    """
    u = decay * u * (1 - o_prev) + x.unsqueeze(0)
    o = spike(u - thresholds)
    return u, o


class MLF(nn.Module):
    """Multi-level firing neuron over ``[T, N, ...]`` inputs; returns spike counts ``0..levels``.

    Parameters
    ----------
    levels : int
        K, the number of levels (one membrane each). ``levels=1`` is LIF.
    v_th : float
        Threshold of the first level.
    width : float
        Level spacing ``a`` and the rectangular surrogate's width.
    decay : float
        Membrane decay ``k_tau`` per step.
    """

    def __init__(self, levels: int = 3, v_th: float = 0.6, width: float = 1.0, decay: float = 0.25):
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        self.levels, self.v_th, self.width, self.decay = levels, v_th, width, decay
        self.spike = rectangle(width)

    @property
    def thresholds(self) -> list:
        return mlf_thresholds(self.levels, self.v_th, self.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        th = torch.tensor(self.thresholds, dtype=x.dtype, device=x.device)
        th = th.view((self.levels,) + (1,) * (x.dim() - 1))
        u = torch.zeros((self.levels,) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
        o = torch.zeros_like(u)
        out = []
        for t in range(x.shape[0]):
            u, o = mlf_step(u, o, x[t], th, self.decay, self.spike)
            out.append(o.sum(0))
        return torch.stack(out)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, v_th={self.v_th}, width={self.width}, decay={self.decay}"


class LIF(MLF):
    """Leaky integrate-and-fire: the MLF neuron with one level."""

    def __init__(self, v_th: float = 0.6, width: float = 1.0, decay: float = 0.25):
        super().__init__(1, v_th, width, decay)
