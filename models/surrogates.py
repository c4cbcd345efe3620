"""Surrogate spike functions: a Heaviside forward and a smooth (or windowed) derivative backward.

Every surrogate is a ``torch.autograd.Function`` over ``v = u - theta`` (membrane minus threshold) behind a
small factory, snnTorch style: ``spike = triangle(width=1.0); s = spike(v)``. A factory returns a
:class:`Surrogate`, a plain callable that also exposes the surrogate derivative as a pure function
(:meth:`Surrogate.derivative`), which the metrics use to find dormant units without running backward.

Firing rule. ``strict=True`` fires on ``v > 0`` (the MLF authors' code, ``torch.gt``); ``strict=False`` fires
on ``v >= 0`` (the Heaviside of the dual-stream and SEW papers and of SpikingJelly), which the IF neurons on
residual connections need: with ``V_th = 1`` an input spike of exactly 1 must fire.
"""
from __future__ import annotations

import math

import torch


def heaviside(v: torch.Tensor, strict: bool) -> torch.Tensor:
    """``1[v > 0]`` if ``strict`` else ``1[v >= 0]``, in ``v``'s dtype."""
    return ((v > 0) if strict else (v >= 0)).to(v.dtype)


def rectangle_derivative(v: torch.Tensor, width: float) -> torch.Tensor:
    """``1[|v| < width / 2] / width`` (STBP; Eq. 12 of the MLF paper)."""
    return (v.abs() < width / 2).to(v.dtype) / width


def triangle_derivative(v: torch.Tensor, width: float) -> torch.Tensor:
    """``max(0, 1 - |v| / width) / width``; ``width = 1`` is the LSN paper's ``S(x) = 1 - |x|`` (Eq. 12)."""
    return torch.clamp(1 - v.abs() / width, min=0) / width


def arctan_derivative(v: torch.Tensor, alpha: float) -> torch.Tensor:
    """Derivative of ``arctan(pi/2 * alpha * v) / pi + 1/2``: ``alpha / 2 / (1 + (pi/2 * alpha * v)^2)``."""
    return alpha / 2 / (1 + (math.pi / 2 * alpha * v) ** 2)


def sigmoid_derivative(v: torch.Tensor, alpha: float) -> torch.Tensor:
    """Derivative of ``sigmoid(alpha * v)``: ``alpha * sigmoid(alpha v) * (1 - sigmoid(alpha v))``."""
    sig = torch.sigmoid(alpha * v)
    return alpha * sig * (1 - sig)


class _SurrogateSpike(torch.autograd.Function):
    """Shared forward/backward; subclasses name the derivative. Inputs: ``(v, parameter, strict)``."""

    derivative = None  # set by each subclass to one of the ``*_derivative`` functions above

    @classmethod
    def forward(cls, ctx, v: torch.Tensor, parameter: float, strict: bool = True):
        ctx.save_for_backward(v)
        ctx.parameter = parameter
        return heaviside(v, strict)

    @classmethod
    def backward(cls, ctx, grad_output):
        (v,) = ctx.saved_tensors
        return grad_output * cls.derivative(v, ctx.parameter).to(grad_output.dtype), None, None


class RectangleSpike(_SurrogateSpike):
    """Heaviside forward; rectangular surrogate ``1[|v| < width/2] / width`` backward.

    ``v`` is the membrane minus the threshold. Firing is strict (``v > 0``) unless ``strict=False`` is passed,
    as in the MLF authors' code. ``RectangleSpike.apply(v, width)`` is the MLF neuron's spike.
    """

    derivative = staticmethod(rectangle_derivative)


class TriangleSpike(_SurrogateSpike):
    """Heaviside forward; triangular surrogate ``max(0, 1 - |v|/width) / width`` backward (LSN paper)."""

    derivative = staticmethod(triangle_derivative)


class ArctanSpike(_SurrogateSpike):
    """Heaviside forward; arctan surrogate ``alpha/2 / (1 + (pi/2 alpha v)^2)`` backward (SpikingJelly ATan)."""

    derivative = staticmethod(arctan_derivative)


class SigmoidSpike(_SurrogateSpike):
    """Heaviside forward; sigmoid surrogate ``alpha sig(alpha v)(1 - sig(alpha v))`` backward."""

    derivative = staticmethod(sigmoid_derivative)


class Surrogate:
    """A spike function ``spike(v) = H(v)`` whose gradient is a chosen surrogate derivative.

    Parameters
    ----------
    function : type
        One of the ``*Spike`` autograd functions of this module.
    parameter : float
        Its shape parameter (``width`` for rectangle and triangle, ``alpha`` for arctan and sigmoid).
    strict : bool
        Fire on ``v > 0`` (True) or ``v >= 0`` (False).
    """

    def __init__(self, function, parameter: float, strict: bool = True):
        self.function, self.parameter, self.strict = function, float(parameter), bool(strict)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return self.function.apply(v, self.parameter, self.strict)

    def derivative(self, v: torch.Tensor) -> torch.Tensor:
        """The surrogate derivative at ``v`` (what backward multiplies the incoming gradient by)."""
        return self.function.derivative(v, self.parameter)

    def __repr__(self) -> str:
        name = self.function.__name__.replace("Spike", "").lower()
        return f"{name}({self.parameter:g}, strict={self.strict})"


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise ValueError(f"surrogate {name} must be positive, got {value}")
    return value


def rectangle(width: float = 1.0, strict: bool = True) -> Surrogate:
    """Rectangular surrogate of the given width (MLF, STBP); ``spike(v)`` is a Heaviside of ``v``."""
    return Surrogate(RectangleSpike, _positive("width", width), strict)


def triangle(width: float = 1.0, strict: bool = True) -> Surrogate:
    """Triangular surrogate of half-width ``width`` (LSN uses ``width = 1``)."""
    return Surrogate(TriangleSpike, _positive("width", width), strict)


def arctan(alpha: float = 2.0, strict: bool = True) -> Surrogate:
    """Arctan surrogate with steepness ``alpha`` (SpikingJelly's ``ATan`` default ``alpha = 2``)."""
    return Surrogate(ArctanSpike, _positive("alpha", alpha), strict)


def sigmoid(alpha: float = 4.0, strict: bool = True) -> Surrogate:
    """Sigmoid surrogate with steepness ``alpha`` (SpikingJelly's ``Sigmoid`` default ``alpha = 4``)."""
    return Surrogate(SigmoidSpike, _positive("alpha", alpha), strict)


SURROGATES = {"rectangle": rectangle, "triangle": triangle, "arctan": arctan, "sigmoid": sigmoid}


def make_surrogate(spec) -> Surrogate:
    """A surrogate from a config entry: a :class:`Surrogate`, a name, or ``{"name": ..., **parameters}``."""
    if isinstance(spec, Surrogate):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or spec.get("name") not in SURROGATES:
        raise ValueError(f"surrogate: expected one of {sorted(SURROGATES)} or a dict with 'name', got {spec!r}")
    parameters = {k: v for k, v in spec.items() if k != "name"}
    try:
        return SURROGATES[spec["name"]](**parameters)
    except TypeError as err:
        raise ValueError(f"surrogate {spec['name']!r}: bad parameter ({err})") from None
