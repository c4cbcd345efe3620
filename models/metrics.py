"""The papers' measurements, collected with forward/backward hooks on any network of this package.

- :class:`ActivityMonitor`: per neuron layer, the firing rate and the dormant-unit ratio (MLF paper: a unit
  whose membrane lies outside the non-zero area of every level's surrogate derivative, so no gradient
  reaches it through space).
- :class:`SynapticOpsCounter`: synaptic operations of every convolution and linear layer, split into
  accumulates (AC: binary spike inputs, charged per spike and fan-out) and multiply-accumulates (MAC:
  multi-valued inputs, charged densely as in DST Eq. 7); BN is folded into the weights (DST appendix A),
  so it costs nothing. :func:`energy_pj` turns the counts into energy (E_AC = 0.9 pJ, E_MAC = 4.6 pJ).
- :class:`GradientMonitor`: mean absolute gradient at the output of each named stage.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .blocks import TimeDistributed
from .neurons import MLF

E_AC_PJ = 0.9
E_MAC_PJ = 4.6


class _HookSet:
    """Owns hook handles; a context manager that removes them on exit."""

    def __init__(self):
        self._handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


@dataclass
class LayerActivity:
    """Accumulated activity of one neuron layer: ``firing_rate`` is spikes per unit per timestep."""

    spikes: float = 0.0
    active: float = 0.0
    dormant: float = 0.0
    samples: int = 0  # unit-timesteps seen

    @property
    def firing_rate(self) -> float:
        """Mean spike count per unit and timestep (``0..K`` for an MLF layer)."""
        return self.spikes / self.samples

    @property
    def active_rate(self) -> float:
        """Fraction of unit-timesteps with at least one spike."""
        return self.active / self.samples

    @property
    def dormant_ratio(self) -> float:
        return self.dormant / self.samples


def dormant_mask(neuron: MLF, x: torch.Tensor) -> torch.Tensor:
    """``[T, N, ...]`` booleans: the surrogate derivative is zero at every level (a dormant unit).

    Re-runs the neuron's pure dynamics on its input ``x`` to get the membranes it compared with the
    thresholds.
    """
    with torch.no_grad():
        membranes, _ = neuron.trace(x)
        derivative = neuron.spike.derivative(membranes - neuron.threshold_tensor(x))
        return (derivative == 0).all(dim=1)


class ActivityMonitor(_HookSet):
    """Firing rate and dormant ratio of every neuron layer (every :class:`MLF`, hence LIF and IF) of ``net``.

    Use as ``with ActivityMonitor(net) as monitor: net(x)``; then ``monitor.layers[name]`` is a
    :class:`LayerActivity`, and :meth:`mean_dormant_ratio` averages over layers as in Fig. 4 of the MLF paper.
    """

    def __init__(self, net: nn.Module, dormant: bool = True):
        super().__init__()
        self.layers: dict = {}
        for name, module in net.named_modules():
            if isinstance(module, MLF):
                self.layers[name] = LayerActivity()
                self._handles.append(module.register_forward_hook(self._hook(name, dormant)))

    def _hook(self, name, dormant):
        def record(module, inputs, output):
            stats = self.layers[name]
            stats.spikes += float(output.detach().sum())
            stats.active += float((output.detach() > 0).sum())
            stats.samples += output.numel()
            if dormant:
                stats.dormant += float(dormant_mask(module, inputs[0].detach()).sum())
        return record

    def mean_dormant_ratio(self) -> float:
        return sum(s.dormant_ratio for s in self.layers.values()) / len(self.layers)

    def report(self) -> dict:
        return {name: {"firing_rate": s.firing_rate, "active_rate": s.active_rate, "dormant_ratio": s.dormant_ratio}
                for name, s in self.layers.items()}


@dataclass
class SynapticOps:
    """AC and MAC counts, total and per layer (per-layer values are ``(ac, mac)`` pairs)."""

    ac: float = 0.0
    mac: float = 0.0
    per_layer: dict = field(default_factory=dict)


def _is_binary(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


def _is_count(x: torch.Tensor) -> bool:
    return bool(((x >= 0) & (x == x.round())).all())


def layer_synaptic_ops(layer: nn.Module, weight_of_input: torch.Tensor) -> float:
    """Sum over inputs of ``weight_of_input * (number of outputs that input reaches)``, exactly.

    For a convolution this is the convolution of ``weight_of_input`` with an all-ones kernel, summed (so
    zero padding and stride borders are exact); for a linear layer it is ``sum * out_features``.
    """
    x = weight_of_input.reshape((-1,) + tuple(weight_of_input.shape[2:]))
    if isinstance(layer, nn.Conv2d):
        ones = torch.ones((layer.out_channels, layer.in_channels // layer.groups) + tuple(layer.kernel_size),
                          dtype=x.dtype, device=x.device)
        return float(nn.functional.conv2d(x, ones, None, layer.stride, layer.padding, layer.dilation,
                                          layer.groups).sum())
    return float(x.sum()) * layer.out_features


class SynapticOpsCounter(_HookSet):
    """Counts synaptic operations of every time-distributed ``Conv2d``/``Linear`` of ``net`` (BN folded).

    Binary inputs cost one AC per spike and fan-out. Multi-valued inputs (pixels, MLF counts, DS-ResNet
    sums, MS membranes, AAP accumulations) cost one MAC per input and fan-out (``multivalued="mac"``, DST's
    convention), or, with ``multivalued="repeated_ac"``, non-negative integer inputs cost ``value`` ACs
    (a core without multipliers adds the weight ``value`` times) and other inputs MACs.
    """

    def __init__(self, net: nn.Module, multivalued: str = "mac"):
        super().__init__()
        if multivalued not in ("mac", "repeated_ac"):
            raise ValueError(f"multivalued: expected 'mac' or 'repeated_ac', got {multivalued!r}")
        self.multivalued = multivalued
        self.ops = SynapticOps()
        for name, module in net.named_modules():
            if isinstance(module, TimeDistributed) and isinstance(module.module, (nn.Conv2d, nn.Linear)):
                self._handles.append(module.register_forward_hook(self._hook(name, module.module)))

    def _hook(self, name, layer):
        def record(module, inputs, output):
            x = inputs[0].detach()
            ac = mac = 0.0
            if _is_binary(x):
                ac = layer_synaptic_ops(layer, x)
            elif self.multivalued == "repeated_ac" and _is_count(x):
                ac = layer_synaptic_ops(layer, x)
            else:
                mac = layer_synaptic_ops(layer, torch.ones_like(x))
            previous = self.ops.per_layer.get(name, (0.0, 0.0))
            self.ops.per_layer[name] = (previous[0] + ac, previous[1] + mac)
            self.ops.ac += ac
            self.ops.mac += mac
        return record


def energy_pj(ops: SynapticOps, e_ac: float = E_AC_PJ, e_mac: float = E_MAC_PJ) -> float:
    """``E = E_AC * O_ac + E_MAC * O_mac`` in picojoules (45 nm figures of Horowitz 2014 by default)."""
    return e_ac * ops.ac + e_mac * ops.mac


class GradientMonitor(_HookSet):
    """Mean absolute gradient of the loss at the output of each named module (e.g. each residual stage).

    ``stages`` maps names to modules; tuple outputs (dual-stream blocks) record their first tensor.
    After ``loss.backward()``, ``monitor.mean_abs[name]`` is the mean |dL/d output| of the last backward.
    """

    def __init__(self, stages: dict):
        super().__init__()
        self.mean_abs: dict = {}
        for name, module in stages.items():
            self._handles.append(module.register_forward_hook(self._hook(name)))

    def _hook(self, name):
        def attach(module, inputs, output):
            tensor = output[0] if isinstance(output, tuple) else output
            if tensor.requires_grad:
                tensor.register_hook(lambda grad: self.mean_abs.__setitem__(name, float(grad.abs().mean())))
        return attach


def resnet_stages(net: nn.Module) -> dict:
    """``{"block0": ..., "block1": ...}`` for a network with a ``blocks`` ModuleList (ResNets, 7B-Net)."""
    return {f"block{i}": block for i, block in enumerate(b for b in net.blocks if not isinstance(b, TimeDistributed))}
