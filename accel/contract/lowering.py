"""Lowering: a trained PyTorch network -> a float stage graph (the compiler's first IR).

Every network the core runs is a list of *stages* in execution order. A stage sums synaptic sources
(convolutions or linear maps of earlier stages' output events, or of the pixels), adds a per-channel bias
and applies its kind: a multi-level neuron, a readout (the classifier), a ``sum`` (DS-ResNet and SEW ADD
joins, the dual-stream AAP, sum/average pooling) or a ``gate`` (logic joins: SEW AND/IAND/OR/XOR and
the LSN gate; max pooling of binary spikes, their OR) or a ``max`` (max pooling of multi-valued events).
Normalisations are folded into the weights and bias here; quantization happens later (:mod:`spikecore.accel.contract.quantize`), so this module is all about topology. See ``docs/constructs.md``.

Each stage's output carries a *gain*: the float value of one integer unit of its events (1 for spikes,
``1/4`` for a 2x2 average pool, which is emitted as a sum). Consumers fold the gain of their inputs into
their weights, so the core only ever adds integers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from spikecore.models import DigitsNet, gate_table
from spikecore.models.blocks import (DSBasicBlock, DualStreamBlock, LSNBlock, MSBasicBlock, SEWBlock, SpikingBasicBlock,
                           TimeDistributed, logic_join, lsn_join)
from spikecore.models.neurons import MLF
from spikecore.models.tdbn import TdBN

from spikecore.errors import UserError

PIXELS = -1
#: The gate table of a binary max pool: bit ``n`` (the window's spike count) is 1 for every ``n >= 1``.
OR_TABLE = 0xFE
#: The largest window a binary max pool lowers to a gate: its spike count must stay below 8, the gate's index range.
MAX_OR_WINDOW = 7


@dataclass
class FloatSource:
    """``weight`` applied to the events of stage ``input`` (``PIXELS``: the network input)."""

    input: int
    op: str                        # "conv" | "linear"
    weight: torch.Tensor           # float64, the producer's gain already folded in
    stride: int = 1
    padding: int = 0


@dataclass
class FloatStage:
    name: str
    kind: str                      # "neuron" | "readout" | "sum" | "gate" | "max"
    sources: list
    bias: torch.Tensor             # float64 [C]
    out_shape: tuple
    neuron: MLF | None = None      # neuron kind: its thresholds and decay
    truth_table: int = 0
    carry: int | None = None       # MS-ResNet membrane shortcut: include this stage's accumulation
    gain: float = 1.0              # float value of one unit of this stage's output events


@dataclass
class FloatGraph:
    stages: list = field(default_factory=list)
    input_shape: tuple = ()
    timesteps: int = 1

    def add(self, stage: FloatStage) -> int:
        shapes = {self._source_shape(src) for src in stage.sources}
        if len(shapes) > 1:
            raise UserError(f"layer {stage.name}: its inputs have different shapes {sorted(shapes)}")
        if stage.carry is not None and self.stages[stage.carry].out_shape != stage.out_shape:
            raise UserError(f"layer {stage.name}: membrane shortcut from a differently shaped layer")
        self.stages.append(stage)
        return len(self.stages) - 1

    def shape_of(self, index: int) -> tuple:
        return self.input_shape if index == PIXELS else self.stages[index].out_shape

    def _source_shape(self, src: FloatSource) -> tuple:
        return output_shape(self.shape_of(src.input), src)


def output_shape(in_shape: tuple, src: FloatSource) -> tuple:
    if src.op == "linear":
        return (int(src.weight.shape[0]),)
    _, h, w = in_shape
    kh, kw = src.weight.shape[2:]
    return (int(src.weight.shape[0]), (h + 2 * src.padding - kh) // src.stride + 1,
            (w + 2 * src.padding - kw) // src.stride + 1)


# ---- folding helpers ---------------------------------------------------------------------------------

def _unwrap(module):
    return module.module if isinstance(module, TimeDistributed) else module


def norm_affine(norm) -> tuple:
    """``(a, b)`` with ``norm(x) = a x + b`` per channel in eval mode (tdBN or BatchNorm2d), float64."""
    norm = _unwrap(norm)
    if isinstance(norm, TdBN):
        a, b = norm.affine()
        return a.to(torch.float64), b.to(torch.float64)
    if isinstance(norm, nn.BatchNorm2d):
        a = norm.weight.to(torch.float64) / torch.sqrt(norm.running_var.to(torch.float64) + norm.eps)
        return a, norm.bias.to(torch.float64) - a * norm.running_mean.to(torch.float64)
    raise UserError(f"layer {type(norm).__name__}: unsupported normalisation")


def conv_norm(conv, norm) -> tuple:
    """Fold ``norm(conv(x))`` into ``(weight, bias, stride, padding)``."""
    conv = _unwrap(conv)
    a, b = norm_affine(norm) if norm is not None else (torch.ones(conv.out_channels, dtype=torch.float64),
                                                       torch.zeros(conv.out_channels, dtype=torch.float64))
    w = conv.weight.to(torch.float64) * a.view(-1, 1, 1, 1)
    if conv.bias is not None:
        b = b + a * conv.bias.to(torch.float64)
    if conv.stride[0] != conv.stride[1] or conv.padding[0] != conv.padding[1] or conv.groups != 1 \
            or conv.dilation != (1, 1):
        raise UserError(f"layer {type(conv).__name__}: only square stride/padding, no groups or dilation")
    return w, b, conv.stride[0], conv.padding[0]


def identity_weight(channels: int, kernel: int = 1) -> torch.Tensor:
    """A per-channel (diagonal) convolution of ones: the identity, or a ``kernel``-wide sum pool."""
    w = torch.zeros(channels, channels, kernel, kernel, dtype=torch.float64)
    w[torch.arange(channels), torch.arange(channels)] = 1.0
    return w


class _Lowering:
    def __init__(self, input_shape, timesteps: int, input_divisor: float):
        self.graph = FloatGraph(input_shape=tuple(input_shape), timesteps=timesteps)
        self.input_divisor = float(input_divisor)

    def gain(self, x: int) -> float:
        """Float value of one integer unit of ``x``'s events (a pixel unit is ``1 / input_divisor``)."""
        return 1.0 / self.input_divisor if x == PIXELS else self.graph.stages[x].gain

    # A source from stage `x`: the producer's gain folded into the weight.
    def source(self, x: int, op: str, weight, stride=1, padding=0) -> FloatSource:
        return FloatSource(x, op, weight * self.gain(x), stride, padding)

    def conv_source(self, x, conv, norm=None):
        w, b, stride, padding = conv_norm(conv, norm)
        return self.source(x, "conv", w, stride, padding), b

    def identity(self, x: int, weight: float = 1.0) -> FloatSource:
        channels = self.graph.shape_of(x)[0]
        return self.source(x, "conv", identity_weight(channels) * weight)

    def add(self, name, kind, sources, bias=None, **kw) -> int:
        shape = output_shape(self.graph.shape_of(sources[0].input), sources[0])
        if bias is None:
            bias = torch.zeros(shape[0], dtype=torch.float64)
        return self.graph.add(FloatStage(name, kind, sources, bias, shape, **kw))

    def neuron(self, name, neuron, sources_biases, carry=None) -> int:
        if not isinstance(neuron, MLF):
            raise UserError(f"layer {name} ({type(neuron).__name__}): unsupported neuron")
        sources = [s for s, _ in sources_biases]
        channels = output_shape(self.graph.shape_of(sources[0].input), sources[0])[0]
        bias = torch.zeros(channels, dtype=torch.float64) + sum(b for _, b in sources_biases)
        return self.add(name, "neuron", sources, bias, neuron=neuron, carry=carry)

    def conv_neuron(self, name, x, conv, norm, neuron) -> int:
        return self.neuron(name, neuron, [self.conv_source(x, conv, norm)])

    def sum(self, name, inputs) -> int:
        return self.add(name, "sum", [self.identity(x) for x in inputs])

    def gate(self, name, inputs, function) -> int:
        """A logic join: input ``i`` is bit ``i`` of the gate's table index (weights 1, 2, 4)."""
        return self.add(name, "gate", [self.identity(x, float(1 << i)) for i, x in enumerate(inputs)],
                        truth_table=gate_table(function))

    def max_pool(self, name, x, pool) -> int:
        """Max pooling (``nn.MaxPool2d``) of stage ``x``'s events, lowered to a ``gate`` or a ``max`` stage.

        On binary events ``s_i in {0, 1}`` (neurons with ``K = 1``, gates) the maximum over a window ``W`` is
        its OR, and with the window's spike count ``n = sum_{i in W} s_i`` (one source: a per-channel
        ``k x k`` convolution of ones, stride and zero padding as the pool's)

            max_{i in W} s_i = OR_{i in W} s_i = [n >= 1] = bit n of OR_TABLE    (0 <= n <= k^2 <= 7)

        so a gate with table ``0xFE`` computes it exactly (``docs/numerics.md``). Zero padding equals the
        pool's ``-inf`` padding on non-negative events, since no window is padding alone. Multi-valued events
        (pixels, spike counts ``K > 1``, sums) and larger windows become a ``max`` stage (``acc = max(acc, v)``
        over the window, weights 1 selecting it), which needs a core with ``max_pool``; its gain is its
        input's, since ``max(g v) = g max(v)`` for ``g > 0``.

        Parameters
        ----------
        name : str
            The pool's module name, for errors.
        x : int
            The pooled stage.
        pool : nn.MaxPool2d or TimeDistributed
            Square window, stride and padding; no dilation or ``ceil_mode``.

        Returns
        -------
        int
            The stage's index.

        Raises
        ------
        UserError
            Naming the layer, for a window that does not fit its input.
        """
        pool = _unwrap(pool)
        pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)
        (kh, kw), (sh, sw), (ph, pw) = pair(pool.kernel_size), pair(pool.stride or pool.kernel_size), \
            pair(pool.padding)
        if kh != kw or sh != sw or ph != pw or pair(pool.dilation) != (1, 1) or pool.ceil_mode:
            raise UserError(f"layer {name} (MaxPool2d): only square windows, strides and padding, no dilation or "
                            f"ceil_mode")
        producer = None if x == PIXELS else self.graph.stages[x]
        channels, height, width = self.graph.shape_of(x)
        if (height + 2 * ph - kh) // sh < 0 or (width + 2 * pw - kw) // sw < 0:
            raise UserError(f"layer {name} (MaxPool2d): a {kh}x{kw} window does not fit the {height}x{width} "
                            f"input")
        binary = producer is not None and (producer.kind == "gate" or (
            producer.kind == "neuron" and producer.neuron.levels == 1))
        if binary and kh * kw <= MAX_OR_WINDOW:
            return self.add(name, "gate", [self.source(x, "conv", identity_weight(channels, kh), sh, ph)],
                            truth_table=OR_TABLE)
        # the maximum of values of gain g is g times the maximum of their integers: the weights stay 1
        return self.add(name, "max", [FloatSource(x, "conv", identity_weight(channels, kh), sh, ph)],
                        gain=self.gain(x))

    def readout(self, name, x, linear, pool: bool) -> int:
        """The classifier; ``pool``: global average pooling first, folded into replicated weights."""
        w = _unwrap(linear).weight.to(torch.float64)
        b = _unwrap(linear).bias.to(torch.float64) if _unwrap(linear).bias is not None else torch.zeros(w.shape[0])
        shape = self.graph.shape_of(x)
        if pool:
            positions = shape[1] * shape[2]
            w = (w / positions).repeat_interleave(positions, dim=1)
        if w.shape[1] != int(torch.tensor(shape).prod()):
            raise UserError(f"layer {name}: expects {w.shape[1]} inputs, gets {list(shape)}")
        return self.add(name, "readout", [self.source(x, "linear", w)], b.to(torch.float64))


# ---- networks --------------------------------------------------------------------------------------

def _lower_digits(net: DigitsNet, low: _Lowering) -> None:
    (s0, s1), fc = net.stages()
    x = low.conv_neuron("conv0", PIXELS, *s0)
    x = low.conv_neuron("conv1", x, *s1)
    low.readout("classifier", x, fc, pool=False)


def _conv_path(low, name, x, path) -> int:
    """``BN2(conv2(SN(BN1(conv1 x))))`` up to the second BN: returns (mid stage, conv2 source, bias)."""
    mid = low.conv_neuron(f"{name}.sn1", x, path.conv1, path.bn1, path.sn1)
    src, b = low.conv_source(mid, path.conv2, path.bn2)
    return src, b


def _projection(low, name, x, projection, spiking: bool):
    """A downsample shortcut ``conv1x1 + BN (+ SN)``: a neuron stage when spiking, else (source, bias)."""
    conv, norm = projection[0], projection[1]
    if spiking:
        return low.conv_neuron(f"{name}.shortcut", x, conv, norm, projection[2])
    return low.conv_source(x, conv, norm)


def _lower_block(low, name, block, x):
    """One residual block; ``x`` is a stage index (or, for MS blocks, the pending membrane stream)."""
    if isinstance(block, SpikingBasicBlock):
        src, b = _conv_path(low, name, x, block.path)
        shortcut = (low.identity(x), 0.0) if isinstance(block.shortcut, nn.Identity) else \
            _projection(low, name, x, block.shortcut, spiking=False)
        return low.neuron(f"{name}.sn_out", block.sn_out, [(src, b), shortcut])
    if isinstance(block, DSBasicBlock):
        src, b = _conv_path(low, name, x, block.path)
        s = low.neuron(f"{name}.sn_out", block.sn_out, [(src, b)])
        sc = x if isinstance(block.shortcut, nn.Identity) else _projection(low, name, x, block.shortcut, True)
        return low.sum(f"{name}.add", [s, sc])
    if isinstance(block, SEWBlock):
        src, b = _conv_path(low, name, x, block.path)
        s = low.neuron(f"{name}.sn2", block.sn2, [(src, b)])
        sc = x if isinstance(block.shortcut, nn.Identity) else _projection(low, name, x, block.shortcut, True)
        if block.connect == "ADD":
            return low.sum(f"{name}.add", [s, sc])
        connect = block.connect
        return low.gate(f"{name}.{connect.lower()}", [s, sc], lambda s_, x_, _: logic_join(connect, s_, x_))
    if isinstance(block, LSNBlock):
        branches = []
        for branch_name, branch in (("excitatory", block.excitatory), ("inhibitory", block.inhibitory)):
            src, b = _conv_path(low, f"{name}.{branch_name}", x, branch[0])
            branches.append(low.neuron(f"{name}.{branch_name}.sn", branch[1], [(src, b)]))
        sc = x if isinstance(block.shortcut, nn.Identity) else _projection(low, name, x, block.shortcut, True)
        return low.gate(f"{name}.lsn", [sc] + branches, lambda x_, e, i: lsn_join(x_, e, i))
    if isinstance(block, MSBasicBlock):
        if block.sn_in is None:  # after a spiking block (a mixed network): spikes in, the membrane stream out
            src, b = _conv_path(low, name, x, block.path)
            shortcut = (low.identity(x), 0.0) if block.shortcut is None else \
                _projection(low, name, x, block.shortcut, spiking=False)
            return [shortcut[0], src], shortcut[1] + b, None
        top = _membrane_neuron(low, f"{name}.sn_in", block.sn_in, x)
        src, b = _conv_path(low, name, top, block.path)
        if block.shortcut is None:  # the stream continues in the same accumulators (the bias is added on update)
            return [src], x[1] + b, top
        sc_src, sc_b = _projection(low, name, top, block.shortcut, spiking=False)
        return [sc_src, src], sc_b + b, None
    raise UserError(f"layer {name} ({type(block).__name__}): unsupported block")


def _membrane_neuron(low, name, neuron, stream) -> int:
    """The neuron stage that turns a pending membrane stream ``(sources, bias, carry)`` into spikes."""
    sources, bias, carry = stream
    return low.neuron(name, neuron, list(zip(sources, [bias] + [0.0] * (len(sources) - 1))), carry=carry)


def _lower_dual(low, name, block: DualStreamBlock, o: int, a):
    src, b = _conv_path(low, name, o, block.path)
    s = low.neuron(f"{name}.sn2", block.sn2, [(src, b)])
    identity = isinstance(block.shortcut, nn.Identity)
    if block.join == "IF":
        shortcut = (low.identity(o), 0.0) if identity else _projection(low, name, o, block.shortcut, False)
        o_next = low.neuron(f"{name}.if", block.residual_neuron, [(low.identity(s), 0.0), shortcut])
    else:
        sc = o if identity else _projection(low, name, o, block.shortcut, True)
        join = block.join
        o_next = low.gate(f"{name}.{join.lower()}", [s, sc], lambda s_, x_, _: logic_join(join, s_, x_))
    if a is None:
        return o_next, None
    if not isinstance(block.shortcut_a, nn.Identity):
        raise UserError(f"layer {name}.shortcut_a (Conv2d): the AAP downsample BN(conv1x1) of the accumulation "
                        f"gives real values, which the core cannot emit as events; use fsnn mode or identity "
                        f"shortcuts")
    return o_next, low.sum(f"{name}.aap", [s, a])


def _lower_resnet(net, low: _Lowering) -> None:
    if net.block_kind == "dual" and net.stream_mode == "dual":
        raise UserError("network: a dual-stream network compiles in one inference mode: set_stream_mode('fsnn') "
                        "or ('dsnn') first")
    stem_src, stem_b = low.conv_source(PIXELS, net.stem_conv, net.stem_norm)
    if net.block_kind in ("ms", "mixed"):
        # a stage index (spikes), or the pending membrane stream of a run of MS blocks
        x = ([stem_src], stem_b, None) if net.stem_neuron is None else \
            low.neuron("stem", net.stem_neuron, [(stem_src, stem_b)])
        for i, block in enumerate(net.blocks):
            x = _lower_block(low, f"block{i}", block, x)
            if str(i) in net.closing_neurons:   # the last of a run of MS blocks before a spiking block
                x = _membrane_neuron(low, f"closing{i}", net.closing_neurons[str(i)], x)
        if net.final_neuron is not None:
            x = _membrane_neuron(low, "final_sn", net.final_neuron, x)
    elif net.block_kind == "dual":
        o = low.neuron("stem", net.stem_neuron, [(stem_src, stem_b)])
        a = None if net.stream_mode == "fsnn" else o
        for i, block in enumerate(net.blocks):
            o, a = _lower_dual(low, f"block{i}", block, o, a)
        x = o if net.stream_mode == "fsnn" else a
    else:
        x = low.neuron("stem", net.stem_neuron, [(stem_src, stem_b)])
        for i, block in enumerate(net.blocks):
            x = _lower_block(low, f"block{i}", block, x)
    low.readout("classifier", x, net.classifier, pool=True)


def _lower_vgg(net, low: _Lowering) -> None:
    x, modules, i = PIXELS, list(net.features), 0
    while i < len(modules):
        inner = _unwrap(modules[i])
        if isinstance(inner, nn.AvgPool2d):
            k = inner.kernel_size if isinstance(inner.kernel_size, int) else inner.kernel_size[0]
            channels = low.graph.shape_of(x)[0]
            gain = low.gain(x) / (k * k)
            x = low.add(f"features.{i}", "sum", [FloatSource(x, "conv", identity_weight(channels, k), k, 0)],
                        gain=gain)
            i += 1
            continue
        if isinstance(inner, nn.MaxPool2d):
            x = low.max_pool(f"features.{i}", x, inner)
            i += 1
            continue
        if not isinstance(inner, nn.Conv2d):
            raise UserError(f"layer features.{i} ({type(inner).__name__}): not supported on the core")
        x = low.conv_neuron(f"features.{i}", x, modules[i], modules[i + 1], modules[i + 2])
        i += 3
    _lower_fully_connected(net, low, x)


def _lower_sew7b(net, low: _Lowering) -> None:
    """SEW ResNet's 7B-Net: the stem, seven (SEW block, max pool 2) pairs and a linear classifier."""
    stem = list(net.stem)
    x = low.conv_neuron("stem", PIXELS, *stem)
    for i, module in enumerate(net.blocks):
        if isinstance(_unwrap(module), nn.MaxPool2d):
            x = low.max_pool(f"blocks.{i}", x, module)
        else:
            x = _lower_block(low, f"blocks.{i}", module, x)
    low.readout("classifier", x, net.classifier, pool=False)


def _lower_fully_connected(net, low: _Lowering, x) -> None:
    """The spiking ``fc`` layers and the classifier of a VGG or an MLP, from stage ``x`` (or the pixels)."""
    fc = list(net.fc)
    for j in range(0, len(fc), 2):
        linear = _unwrap(fc[j])
        w = linear.weight.to(torch.float64)
        b = linear.bias.to(torch.float64)
        x = low.neuron(f"fc.{j}", fc[j + 1], [(low.source(x, "linear", w), b)])
    low.readout("classifier", x, net.classifier, pool=False)


def _lower_graph(net, low: _Lowering) -> None:
    """A :class:`spikecore.models.graphnet.GraphNet` (an imported network): its stages as stored. Its weights act on
    float values, so each source folds in its producer's gain and divides by the stage's own (a sum or
    gate then adds whole event values)."""
    for spec, stage in zip(net.specs, net.stages):
        gain = spec["gain"]
        sources = [low.source(src["input"], src["op"], weight.detach() / gain, src["stride"], src["padding"])
                   for src, weight in zip(spec["sources"], stage.weights)]
        low.add(spec["name"], spec["kind"], sources, stage.bias.detach() / gain, neuron=stage.neuron,
                truth_table=spec["truth_table"], carry=spec["carry"], gain=gain)


def lower(net: nn.Module, input_shape, input_divisor: float) -> FloatGraph:
    """The float stage graph of ``net`` (eval mode), for integer inputs ``pixels = input * input_divisor``.

    Raises :class:`UserError` naming the first layer the core cannot run.
    """
    from spikecore.models.graphnet import GraphNet
    from spikecore.models.networks import SEW7BNet, SpikingMLP, SpikingResNet, SpikingVGG

    net = net.eval()
    low = _Lowering(input_shape, int(getattr(net, "timesteps", 1)), input_divisor)
    with torch.no_grad():
        if isinstance(net, DigitsNet):
            _lower_digits(net, low)
        elif isinstance(net, SpikingResNet):
            _lower_resnet(net, low)
        elif isinstance(net, SpikingVGG):
            _lower_vgg(net, low)
        elif isinstance(net, SpikingMLP):
            if int(np.prod(input_shape)) != int(np.prod(net.feature_shape)):  # it flattens whatever it gets
                raise UserError(f"network SpikingMLP: takes {list(net.feature_shape)} inputs, the program's input is "
                                f"{list(input_shape)}")
            _lower_fully_connected(net, low, PIXELS)
        elif isinstance(net, GraphNet):
            _lower_graph(net, low)
        elif isinstance(net, SEW7BNet):
            _lower_sew7b(net, low)
        else:
            raise UserError(f"network {type(net).__name__}: not a network the compiler knows")
    return prune(low.graph)


def prune(graph: FloatGraph) -> FloatGraph:
    """Drop stages nothing reads (e.g. the spike stream's last join of a DSNN-mode dual-stream network)."""
    live = {len(graph.stages) - 1}
    for i in reversed(range(len(graph.stages))):
        if i in live:
            stage = graph.stages[i]
            live.update(s.input for s in stage.sources if s.input != PIXELS)
            if stage.carry is not None:
                live.add(stage.carry)
    renumber = {old: new for new, old in enumerate(sorted(live))}
    renumber[PIXELS] = PIXELS
    stages = []
    for i in sorted(live):
        stage = graph.stages[i]
        stage.sources = [FloatSource(renumber[s.input], s.op, s.weight, s.stride, s.padding) for s in stage.sources]
        stage.carry = None if stage.carry is None else renumber[stage.carry]
        stages.append(stage)
    return FloatGraph(stages, graph.input_shape, graph.timesteps)
