"""The papers' measurements, collected with forward/backward hooks on any network of this package.

- :class:`ActivityMonitor`: per neuron layer, the firing rate and the dormant-unit ratio (MLF paper: a unit
  whose membrane lies outside the non-zero area of every level's surrogate derivative, so no gradient
  reaches it through space), split into the paper's two sides: *dormant* (membrane too high, right of the
  windows, Sec. 1) and ``dormant*`` (too low, left of the first level's window, Appendix G).
- :class:`SynapticOpsCounter`: synaptic operations of every convolution and linear layer, the ResNet
  classifier included, split into accumulates (AC: binary spike inputs, charged per spike and fan-out) and
  multiply-accumulates (MAC: multi-valued inputs, charged densely as in DST Eq. 7); which one a layer costs
  follows the kind of its input, known from the network's structure (:func:`synaptic_input_kinds`); BN is
  folded into the weights (DST appendix A), so it costs nothing. :func:`energy_pj` turns the counts into
  energy (E_AC = 0.9 pJ, E_MAC = 4.6 pJ).
- :class:`GradientMonitor`: mean absolute gradient at the output of each named stage.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .blocks import COUNTS, REAL, RESIDUAL_BLOCKS, SPIKES, TimeDistributed, block_signals, neuron_kind
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
    dormant: float = 0.0  # both sides: dormant_high + dormant_low
    dormant_high: float = 0.0
    dormant_low: float = 0.0
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
        """Fraction of dormant unit-timesteps, both sides."""
        return self.dormant / self.samples

    @property
    def dormant_high_ratio(self) -> float:
        """The MLF paper's *dormant* units: membrane above the windows (excessive potential, Sec. 1)."""
        return self.dormant_high / self.samples

    @property
    def dormant_low_ratio(self) -> float:
        """The MLF paper's ``dormant*`` units: first level's membrane left of its window (Appendix G)."""
        return self.dormant_low / self.samples


def dormant_mask(neuron: MLF, x: torch.Tensor) -> torch.Tensor:
    """``[T, N, ...]`` booleans: the surrogate derivative is zero at every level (a dormant unit).

    Re-runs the neuron's pure dynamics on its input ``x`` to get the membranes it compared with the
    thresholds.
    """
    high, low = dormant_sides(neuron, x)
    return high | low


def dormant_sides(neuron: MLF, x: torch.Tensor):
    """``(high, low)``, ``[T, N, ...]`` booleans splitting :func:`dormant_mask` by side (MLF paper, Fig. G.1).

    ``low`` (``dormant*``): dormant with the first level's membrane below its threshold, ``u_1 < theta_1``, in
    the saturation area left of ``h_1``; ``high`` (*dormant*): every other dormant unit, its membranes beyond
    the windows on the right (excessive potential).
    """
    with torch.no_grad():
        membranes, _ = neuron.trace(x)
        distance = membranes - neuron.threshold_tensor(x)
        dormant = (neuron.spike.derivative(distance) == 0).all(dim=1)
        low = dormant & (distance[:, 0] < 0)
        return dormant & ~low, low


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
                high, low = dormant_sides(module, inputs[0].detach())
                stats.dormant_high += float(high.sum())
                stats.dormant_low += float(low.sum())
                stats.dormant = stats.dormant_high + stats.dormant_low
        return record

    def mean_dormant_ratio(self) -> float:
        return sum(s.dormant_ratio for s in self.layers.values()) / len(self.layers)

    def report(self) -> dict:
        return {name: {"firing_rate": s.firing_rate, "active_rate": s.active_rate, "dormant_ratio": s.dormant_ratio,
                       "dormant_high_ratio": s.dormant_high_ratio, "dormant_low_ratio": s.dormant_low_ratio}
                for name, s in self.layers.items()}


@dataclass
class SynapticOps:
    """AC and MAC counts, total and per layer (per-layer values are ``(ac, mac)`` pairs)."""

    ac: float = 0.0
    mac: float = 0.0
    per_layer: dict = field(default_factory=dict)


NETWORK_INPUT = "input"  # a layer fed by the network's input, whose kind comes from the data


def value_kind(x: torch.Tensor) -> str:
    """The kind the values of ``x`` have: ``SPIKES`` (all 0/1), ``COUNTS`` (non-negative integers) or ``REAL``."""
    if bool(((x == 0) | (x == 1)).all()):
        return SPIKES
    return COUNTS if bool(((x >= 0) & (x == x.round())).all()) else REAL


def _sequential_kinds(modules, x: str, kinds: dict) -> str:
    """Walk modules applied one after the other; record each synaptic layer's input kind; return the output's."""
    for module in modules:
        inner = module.module if isinstance(module, TimeDistributed) else module
        if isinstance(inner, (nn.Conv2d, nn.Linear)):
            kinds[inner], x = x, REAL
        elif isinstance(inner, MLF):
            x = neuron_kind(inner)
        elif isinstance(inner, (nn.MaxPool2d, nn.Flatten, nn.Identity, nn.Dropout)):
            continue  # the largest of spikes is a spike: the kind is kept
        elif isinstance(inner, nn.Sequential):
            x = _sequential_kinds(list(inner), x, kinds)
        elif isinstance(inner, RESIDUAL_BLOCKS):
            x, layers, _ = block_signals(inner, x)
            kinds.update(layers)
        else:  # normalisation, average pooling, anything else: real values
            x = REAL
    return x


def synaptic_input_kinds(net: nn.Module) -> dict:
    """``{layer: kind}``: the kind of input (``SPIKES``, ``COUNTS``, ``REAL`` or ``NETWORK_INPUT``) of every
    ``Conv2d``/``Linear`` whose input the structure of ``net`` determines: the networks of
    :mod:`spikecore.models.networks` (every block kind, mixed ones included), :class:`models.DigitsNet` and
    ``nn.Sequential`` stacks. The ResNet classifier reads the global average pool of the features: real values.
    """
    from .digits import DigitsNet
    from .networks import SEW7BNet, SpikingMLP, SpikingResNet, SpikingVGG

    kinds: dict = {}
    if isinstance(net, SpikingResNet):
        kinds[net.stem_conv.module] = NETWORK_INPUT
        x = REAL if net.stem_neuron is None else neuron_kind(net.stem_neuron)
        if net.block_kind == "dual":
            x = (x, None if net.stream_mode == "fsnn" else x)
        for index, block in enumerate(net.blocks):
            x, layers, _ = block_signals(block, x)
            kinds.update(layers)
            if str(index) in net.closing_neurons:
                x = neuron_kind(net.closing_neurons[str(index)])
        kinds[net.classifier] = REAL
    elif isinstance(net, SpikingVGG):
        _sequential_kinds(list(net.features) + list(net.fc) + [net.classifier], NETWORK_INPUT, kinds)
    elif isinstance(net, SpikingMLP):
        _sequential_kinds(list(net.fc) + [net.classifier], NETWORK_INPUT, kinds)
    elif isinstance(net, SEW7BNet):
        _sequential_kinds([net.stem, net.blocks, net.classifier], NETWORK_INPUT, kinds)
    elif isinstance(net, DigitsNet):
        kinds.update({net.conv0: NETWORK_INPUT, net.conv1: neuron_kind(net.act0), net.fc: neuron_kind(net.act1)})
    elif isinstance(net, nn.Sequential):
        _sequential_kinds(list(net), NETWORK_INPUT, kinds)
    return kinds


def layer_synaptic_ops(layer: nn.Module, weight_of_input: torch.Tensor) -> float:
    """Sum over inputs of ``weight_of_input * (number of outputs that input reaches)``, exactly.

    ``weight_of_input`` has the shape of the layer's input (``[..., C, H, W]`` for a convolution, ``[...,
    features]`` for a linear layer). For a convolution this is the convolution of ``weight_of_input`` with an
    all-ones kernel, summed (so zero padding and stride borders are exact); for a linear layer it is
    ``sum * out_features``.
    """
    if isinstance(layer, nn.Conv2d):
        x = weight_of_input.reshape((-1,) + tuple(weight_of_input.shape[-3:]))
        ones = torch.ones((layer.out_channels, layer.in_channels // layer.groups) + tuple(layer.kernel_size),
                          dtype=x.dtype, device=x.device)
        return float(nn.functional.conv2d(x, ones, None, layer.stride, layer.padding, layer.dilation,
                                          layer.groups).sum())
    return float(weight_of_input.sum()) * layer.out_features


class SynapticOpsCounter(_HookSet):
    """Counts synaptic operations of every ``Conv2d``/``Linear`` of ``net`` (BN folded), the ResNet classifier
    included.

    A layer's cost follows the kind of its input (:func:`synaptic_input_kinds`). Spikes cost one AC per
    spike and fan-out. Multi-valued inputs (pixels, MLF counts, DS-ResNet and SEW ADD sums, MS membranes, AAP
    accumulations, pooled features) cost one MAC per input and fan-out (``multivalued="mac"``, DST's
    convention), or, with ``multivalued="repeated_ac"``, counts cost ``value`` ACs (a core without
    multipliers adds the weight ``value`` times) and real values MACs.

    The layers fed by the network's input take ``input_kind``; ``"auto"`` (default) reads it from the values
    each batch brings (images: real, event frames: counts or spikes), the one place the data decides. Layers
    whose input the structure does not tell (a network this module does not know) are also read from the
    values.
    """

    def __init__(self, net: nn.Module, multivalued: str = "mac", input_kind: str = "auto"):
        super().__init__()
        if multivalued not in ("mac", "repeated_ac"):
            raise ValueError(f"multivalued: expected 'mac' or 'repeated_ac', got {multivalued!r}")
        if input_kind not in ("auto", SPIKES, COUNTS, REAL):
            raise ValueError(f"input_kind: expected 'auto', {SPIKES!r}, {COUNTS!r} or {REAL!r}, got {input_kind!r}")
        self.multivalued, self.input_kind = multivalued, input_kind
        self.ops = SynapticOps()
        kinds = synaptic_input_kinds(net)
        names = {}
        for name, module in net.named_modules():
            if isinstance(module, TimeDistributed):
                names[module.module] = name  # report the time-distributed wrapper's name
            elif isinstance(module, (nn.Conv2d, nn.Linear)):
                self._handles.append(module.register_forward_hook(
                    self._hook(names.get(module, name), kinds.get(module))))

    def _hook(self, name, kind):
        def record(module, inputs, output):
            x = inputs[0].detach()
            actual = kind
            if kind == NETWORK_INPUT and self.input_kind != "auto":
                actual = self.input_kind
            elif kind in (None, NETWORK_INPUT):
                actual = value_kind(x)
            ac = mac = 0.0
            if actual == SPIKES or (actual == COUNTS and self.multivalued == "repeated_ac"):
                ac = layer_synaptic_ops(module, x)
            else:
                mac = layer_synaptic_ops(module, torch.ones_like(x))
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
