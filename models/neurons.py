"""Spiking neurons: pure step functions with the equations, and thin multi-step modules.

Tensors are time-major, ``[T, N, ...]``. A neuron returns spike *counts* with the input's shape: 0/1 for
a single level, ``0..K`` for the multi-level (MLF) neuron.
"""
from __future__ import annotations

import inspect

import torch
from torch import nn

from .surrogates import make_surrogate, rectangle


def mlf_thresholds(levels: int, v_th: float, width: float) -> list:
    """Thresholds of the K levels: ``V_th + (k - 1) * a`` for ``k = 1..K`` (0.6, 1.6, 2.6 by default)."""
    return [v_th + k * width for k in range(levels)]


def mlf_step(u: torch.Tensor, o_prev: torch.Tensor, x: torch.Tensor, thresholds: torch.Tensor,
             decay: float, spike):
    """One timestep of the multi-level firing (MLF) neuron, all K levels at once.

    For each level ``k`` (leading axis of ``u``)::

        u_k <- decay * u_k * (1 - o_k[t-1]) + x[t]
        o_k[t] = spike(u_k - theta_k)              # Heaviside (strict unless the surrogate says not)
        output[t] = sum_k o_k[t]

    ``K = 1`` is the plain iterative LIF neuron of STBP; ``K = 1, decay = 1`` is the IF neuron.

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
        Membrane decay ``k_tau`` per step (``1.0``: no leak, the IF neuron).
    surrogate : Surrogate, str or dict, optional
        The spike function (see :mod:`spikecore.models.surrogates`); default ``rectangle(width)``, strict firing.
    """

    def __init__(self, levels: int = 3, v_th: float = 0.6, width: float = 1.0, decay: float = 0.25,
                 surrogate=None):
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        self.levels, self.v_th, self.width, self.decay = levels, v_th, width, decay
        self.spike = rectangle(width) if surrogate is None else make_surrogate(surrogate)

    @property
    def thresholds(self) -> list:
        return mlf_thresholds(self.levels, self.v_th, self.width)

    def threshold_tensor(self, like: torch.Tensor) -> torch.Tensor:
        """The thresholds as ``[K, 1, ...]``, broadcastable against ``[K] + like.shape[1:]``."""
        th = torch.tensor(self.thresholds, dtype=like.dtype, device=like.device)
        return th.view((self.levels,) + (1,) * (like.dim() - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trace(x)[1].sum(1)

    def trace(self, x: torch.Tensor):
        """Run over ``x`` ``[T, N, ...]``; return membranes and per-level spikes, both ``[T, K, N, ...]``.

        The membranes are the post-integration values ``u_k[t]`` that are compared with the thresholds
        (before the reset that the next step applies); the metrics use them to find dormant units.
        """
        th = self.threshold_tensor(x)
        u = torch.zeros((self.levels,) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
        o = torch.zeros_like(u)
        membranes, spikes = [], []
        for t in range(x.shape[0]):
            u, o = mlf_step(u, o, x[t], th, self.decay, self.spike)
            membranes.append(u)
            spikes.append(o)
        return torch.stack(membranes), torch.stack(spikes)

    def extra_repr(self) -> str:
        return (f"levels={self.levels}, v_th={self.v_th}, width={self.width}, decay={self.decay}, "
                f"surrogate={self.spike!r}")


class LIF(MLF):
    """Leaky integrate-and-fire: the MLF neuron with one level.

    ``u <- decay * u * (1 - o[t-1]) + x[t]``, ``o[t] = H(u - v_th)``: hard reset to zero, leak applied
    to the reset membrane (STBP; the LSN paper's Eqs. 2-4 with ``alpha = decay``).
    """

    def __init__(self, v_th: float = 0.6, width: float = 1.0, decay: float = 0.25, surrogate=None):
        super().__init__(1, v_th, width, decay, surrogate)


class IF(MLF):
    """Integrate-and-fire (no leak): ``u <- u * (1 - o[t-1]) + x[t]``, ``o[t] = H(u - v_th)``.

    Used on residual connections in the dual-stream paper: with ``0 < v_th <= 1`` and a membrane at rest,
    an input spike fires and no input stays silent, so ``IF(s) = s`` for spike trains ``s``. That needs
    ``H(0) = 1`` at ``v_th = 1``, so the default surrogate fires on ``u >= v_th`` (``strict=False``).
    """

    def __init__(self, v_th: float = 1.0, width: float = 1.0, surrogate=None):
        super().__init__(1, v_th, width, 1.0, rectangle(width, strict=False) if surrogate is None else surrogate)


NEURON_TYPES = {"mlf": MLF, "lif": LIF, "if": IF}


def make_neuron(spec) -> MLF:
    """A neuron module from a config entry ``{"type": "mlf"|"lif"|"if", **its constructor arguments}``.

    Raises
    ------
    ValueError
        Naming the bad key when the type or an argument is unknown or of the wrong type.
    """
    kind = spec.get("type") if isinstance(spec, dict) else None
    if not isinstance(kind, str) or kind not in NEURON_TYPES:
        raise ValueError(f"neuron.type: expected one of {sorted(NEURON_TYPES)}, got {spec!r}")
    arguments = {k: v for k, v in spec.items() if k != "type"}
    cls = NEURON_TYPES[kind]
    parameters = inspect.signature(cls.__init__).parameters
    allowed = set(parameters) - {"self"}
    unknown = sorted(set(arguments) - allowed)
    if unknown:
        raise ValueError(f"neuron.{unknown[0]}: not an argument of {cls.__name__} (allowed: {sorted(allowed)})")
    for name, value in arguments.items():
        default = parameters[name].default
        # numeric arguments must be numbers (a list here is a per-layer list put one level too deep)
        if isinstance(default, (int, float)) and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"neuron.{name}: expected a number, got {value!r}")
        if name == "levels" and (not isinstance(value, int) or value < 1):
            raise ValueError(f"neuron.levels: expected an int >= 1, got {value!r}")
    return cls(**arguments)
