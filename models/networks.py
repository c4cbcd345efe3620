"""Networks built from YAML-like dicts: ``build_network(config) -> nn.Module``.

Keys (unknown keys are an error)::

    arch:        "resnet" | "vgg" | "sew7b"
    block:       resnet only: "spiking" | "ds" | "ms" | "sew" | "lsn" | "dual"
    depth:       resnet only: 6N + 2 (8, 14, 20, 32, ...)
    stages:      resnet only: 1, 2 or 3 stages of N blocks (default 3: widths w, 2w, 4w)
    width:       resnet: "small" | "middle" | "large" (16/32/64) or an int; sew7b: channels (default 32)
    layers:      vgg only: list of conv widths, "M" (max pool 2) or "A" (avg pool 2)
    fc_hidden:   vgg only: widths of hidden spiking fully-connected layers (default [])
    image_size:  vgg only: input height = width (default 32), to size the classifier
    in_channels: input channels (default 3; 2 for sew7b)
    classes:     classifier outputs (default 10; 11 for sew7b)
    timesteps:   T for static inputs [N, C, H, W], repeated over time (default 4)
    neuron:      {"type": "mlf"|"lif"|"if", ...constructor arguments}
    levels:      MLF levels K: an int, or a list, one per layer (see below)
    norm:        "tdbn" | "bn"
    connect:     sew, sew7b: "ADD" | "AND" | "IAND" | "OR" | "XOR"
    join:        dual: "IF" | "AND" | "IAND" | "OR" | "XOR"
    zero_init_residual: ms, dual: zero the last BN of each residual path

A per-layer ``levels`` list has one entry per neuron layer: for VGG one per conv and hidden fc layer; for
ResNets one for the stem and one per residual block (all neurons of a block share K); for the 7B-Net one
for the stem and one per SEW block. Inputs are time-major ``[T, N, C, H, W]``, or static ``[N, C, H, W]``;
the logits are the classifier's outputs averaged over time.
"""
from __future__ import annotations

import torch
from torch import nn

from .blocks import (CONNECTS, JOINS, NORMS, DSBasicBlock, DualStreamBlock, LSNBlock, MSBasicBlock, SEWBlock,
                     SpikingBasicBlock, TimeDistributed, conv, make_norm)
from .neurons import make_neuron

WIDTHS = {"small": 16, "middle": 32, "large": 64}
RESNET_BLOCKS = {"spiking": SpikingBasicBlock, "ds": DSBasicBlock, "ms": MSBasicBlock, "sew": SEWBlock,
                 "lsn": LSNBlock, "dual": DualStreamBlock}
DEFAULT_NEURON = {"type": "mlf"}
BLOCK_DEFAULTS = {  # the settings of each block's paper
    "spiking": dict(neuron=DEFAULT_NEURON, norm="tdbn"),
    "ds": dict(neuron=DEFAULT_NEURON, norm="tdbn"),
    "ms": dict(neuron=DEFAULT_NEURON, norm="tdbn"),
    "sew": dict(neuron={"type": "if"}, norm="bn"),
    "lsn": dict(neuron={"type": "lif", "v_th": 1.0, "decay": 0.5, "surrogate": {"name": "triangle", "width": 1.0}},
                norm="tdbn"),
    "dual": dict(neuron={"type": "if"}, norm="bn"),
}
COMMON_KEYS = {"arch", "in_channels", "classes", "timesteps", "neuron", "levels", "norm"}
ARCH_KEYS = {
    "resnet": COMMON_KEYS | {"block", "depth", "stages", "width", "connect", "join", "zero_init_residual"},
    "vgg": COMMON_KEYS | {"layers", "fc_hidden", "image_size"},
    "sew7b": COMMON_KEYS | {"width", "connect"},
}


def _neuron_factories(config: dict, count: int, default_neuron: dict) -> list:
    """One zero-argument neuron factory per neuron layer, applying per-layer ``levels``."""
    spec = dict(config.get("neuron", default_neuron))
    levels = config.get("levels")
    if levels is None:
        per_layer = [None] * count
    elif isinstance(levels, int):
        per_layer = [levels] * count
    elif isinstance(levels, (list, tuple)) and len(levels) == count and all(isinstance(k, int) for k in levels):
        per_layer = list(levels)
    else:
        raise ValueError(f"levels: expected an int or a list of {count} ints (one per neuron layer), got {levels!r}")
    if levels is not None and spec.get("type") != "mlf":
        raise ValueError(f"levels: only the 'mlf' neuron has levels, neuron.type is {spec.get('type')!r}")
    if any(k is not None and k < 1 for k in per_layer):
        raise ValueError(f"levels: every K must be >= 1, got {levels!r}")
    make_neuron(spec)  # validate once, so a bad neuron entry fails with its key named
    return [(lambda k=k: make_neuron(spec if k is None else {**spec, "levels": k})) for k in per_layer]


def _choice(config: dict, key: str, allowed, default):
    value = config.get(key, default)
    if value not in allowed:
        raise ValueError(f"{key}: expected one of {sorted(allowed) if isinstance(allowed, dict) else list(allowed)}, "
                         f"got {value!r}")
    return value


def _positive_int(config: dict, key: str, default: int) -> int:
    value = config.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{key}: expected a positive int, got {value!r}")
    return value


class SpikingNetwork(nn.Module):
    """Shared input handling: static images are repeated over ``timesteps``; logits are averaged over T."""

    def __init__(self, timesteps: int):
        super().__init__()
        self.timesteps = timesteps

    def to_sequence(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            return x.unsqueeze(0).expand((self.timesteps,) + tuple(x.shape))
        if x.dim() == 5:
            return x
        raise ValueError(f"input: expected [N, C, H, W] or [T, N, C, H, W], got {list(x.shape)}")


class SpikingResNet(SpikingNetwork):
    """ResNet-(6N+2): stem conv-BN-SN, 3 stages of N blocks (widths w, 2w, 4w), global pool, classifier.

    ``stages`` < 3 keeps only the first stages (a smaller network for small inputs; the depth name then
    counts the blocks the full network would have).

    With ``block="ms"`` the stem leaves membranes (no neuron) and a neuron closes the conv stack. With
    ``block="dual"`` the forward returns ``(O_s, O_a)`` in ``stream_mode="dual"`` (training with
    :func:`models.blocks.dual_stream_loss`), ``O_s`` with the AAP removed in ``"fsnn"``, and ``O_a`` (the
    retained accumulation) in ``"dsnn"``.
    """

    STREAM_MODES = ("dual", "fsnn", "dsnn")

    def __init__(self, block: str, depth: int, width: int, in_channels: int, classes: int, timesteps: int,
                 neurons: list, norm: str, block_options: dict, stages: int = 3):
        super().__init__(timesteps)
        blocks_per_stage = (depth - 2) // 6
        self.block_kind = block
        self.stream_mode = "dual"
        stem_neuron, block_neurons = neurons[0], neurons[1:]
        self.stem_conv = conv(in_channels, width, 3)
        self.stem_norm = make_norm(norm, width, stem_neuron().v_th)
        self.stem_neuron = None if block == "ms" else stem_neuron()
        layers, channels, index = [], width, 0
        for stage, stage_width in enumerate((width, 2 * width, 4 * width)[:stages]):
            for b in range(blocks_per_stage):
                stride = 2 if stage > 0 and b == 0 else 1
                layers.append(RESNET_BLOCKS[block](channels, stage_width, stride, neuron=block_neurons[index],
                                                   norm=norm, **block_options))
                channels, index = stage_width, index + 1
        self.blocks = nn.ModuleList(layers)
        self.final_neuron = block_neurons[-1]() if block == "ms" else None
        self.classifier = nn.Linear(channels, classes)

    def set_stream_mode(self, mode: str) -> None:
        """Dual-stream networks: ``"dual"`` (both outputs), ``"fsnn"`` (AAP removed), ``"dsnn"`` (AAP kept)."""
        if self.block_kind != "dual":
            raise ValueError(f"stream_mode: only dual-stream networks have stream modes (block is {self.block_kind!r})")
        if mode not in self.STREAM_MODES:
            raise ValueError(f"stream_mode: expected one of {self.STREAM_MODES}, got {mode!r}")
        self.stream_mode = mode

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Global average pool per timestep, the classifier, then the mean over time."""
        return self.classifier(features.mean((3, 4))).mean(0)

    def forward(self, x: torch.Tensor):
        h = self.stem_norm(self.stem_conv(self.to_sequence(x)))
        if self.stem_neuron is not None:
            h = self.stem_neuron(h)
        if self.block_kind == "dual":
            return self._forward_dual(h)
        for block in self.blocks:
            h = block(h)
        if self.final_neuron is not None:
            h = self.final_neuron(h)
        return self.head(h)

    def _forward_dual(self, spikes: torch.Tensor):
        streams = (spikes, None if self.stream_mode == "fsnn" else spikes)  # s_0 = a_0 = x
        for block in self.blocks:
            streams = block(streams)
        spike_stream, accumulation = streams
        if self.stream_mode == "fsnn":
            return self.head(spike_stream)
        if self.stream_mode == "dsnn":
            return self.head(accumulation)
        return self.head(spike_stream), self.head(accumulation)


class SpikingVGG(SpikingNetwork):
    """Plain network: ``{conv-BN-SN | pool}*`` then ``{fc-SN}*`` and the classifier."""

    def __init__(self, layers: list, fc_hidden: list, image_size: int, in_channels: int, classes: int,
                 timesteps: int, neurons: list, norm: str):
        super().__init__(timesteps)
        modules, channels, side, index = [], in_channels, image_size, 0
        for entry in layers:
            if entry in ("M", "A"):
                pool = nn.MaxPool2d(2) if entry == "M" else nn.AvgPool2d(2)
                modules.append(TimeDistributed(pool))
                side //= 2
                continue
            neuron = neurons[index]
            modules += [conv(channels, entry, 3), make_norm(norm, entry, neuron().v_th), neuron()]
            channels, index = entry, index + 1
        self.features = nn.Sequential(*modules)
        fc, width = [], channels * side * side
        for hidden in fc_hidden:
            fc += [TimeDistributed(nn.Linear(width, hidden)), neurons[index]()]
            width, index = hidden, index + 1
        self.fc = nn.Sequential(*fc)
        self.classifier = TimeDistributed(nn.Linear(width, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(self.to_sequence(x))
        return self.classifier(self.fc(h.flatten(2))).mean(0)


class SEW7BNet(SpikingNetwork):
    """SEW ResNet's 7B-Net for DVS Gesture: ``c{w}k3s1-BN-SN-{SEWBlock(c{w})-MPk2s2}*7-FC{classes}``.

    (The paper uses PLIF neurons; here the neuron is configurable, IF by default.)
    """

    def __init__(self, width: int, in_channels: int, classes: int, timesteps: int, neurons: list, norm: str,
                 connect: str, image_size: int = 128):
        super().__init__(timesteps)
        self.stem = nn.Sequential(conv(in_channels, width, 3), make_norm(norm, width, neurons[0]().v_th), neurons[0]())
        stages = []
        for neuron in neurons[1:]:
            stages += [SEWBlock(width, width, 1, neuron=neuron, norm=norm, connect=connect),
                       TimeDistributed(nn.MaxPool2d(2))]
        self.blocks = nn.Sequential(*stages)
        side = image_size // 2 ** 7
        self.classifier = TimeDistributed(nn.Linear(width * side * side, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(self.to_sequence(x)))
        return self.classifier(h.flatten(2)).mean(0)


def build_network(config: dict) -> nn.Module:
    """Build a network from a YAML-like dict (see the module docstring for the keys).

    Raises
    ------
    ValueError
        With a message that starts with the offending key.
    """
    if not isinstance(config, dict):
        raise ValueError(f"config: expected a dict, got {type(config).__name__}")
    arch = _choice(config, "arch", ARCH_KEYS, None)
    unknown = sorted(set(config) - ARCH_KEYS[arch])
    if unknown:
        raise ValueError(f"{unknown[0]}: not a key of arch {arch!r} (allowed: {sorted(ARCH_KEYS[arch])})")
    timesteps = _positive_int(config, "timesteps", 4)
    if arch == "resnet":
        block = _choice(config, "block", RESNET_BLOCKS, None)
        defaults = BLOCK_DEFAULTS[block]
        depth = config.get("depth", 20)
        if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth: expected 6N + 2 with N >= 1 (8, 14, 20, ...), got {depth!r}")
        width = config.get("width", "small")
        width = WIDTHS.get(width, width) if isinstance(width, str) else width
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width: expected one of {sorted(WIDTHS)} or a positive int, got {config['width']!r}")
        options = {}
        if block == "sew":
            options["connect"] = _choice(config, "connect", CONNECTS, "ADD")
        elif "connect" in config:
            raise ValueError(f"connect: only for block 'sew' (block is {block!r})")
        if block == "dual":
            options["join"] = _choice(config, "join", JOINS, "IAND")
        elif "join" in config:
            raise ValueError(f"join: only for block 'dual' (block is {block!r})")
        if block in ("ms", "dual"):
            options["zero_init_residual"] = bool(config.get("zero_init_residual", block == "ms"))
        elif "zero_init_residual" in config:
            raise ValueError(f"zero_init_residual: only for blocks 'ms' and 'dual' (block is {block!r})")
        stages = _choice(config, "stages", (1, 2, 3), 3)
        neurons = _neuron_factories(config, 1 + stages * (depth - 2) // 6, defaults["neuron"])
        return SpikingResNet(block, depth, width, _positive_int(config, "in_channels", 3),
                             _positive_int(config, "classes", 10), timesteps, neurons,
                             _choice(config, "norm", NORMS, defaults["norm"]), options, stages)
    if arch == "vgg":
        layers = config.get("layers")
        if not isinstance(layers, list) or not any(isinstance(e, int) for e in layers) or \
                any(not (e in ("M", "A") or (isinstance(e, int) and e > 0)) for e in layers):
            raise ValueError(f"layers: expected a list of positive ints and 'M'/'A' pools, got {layers!r}")
        fc_hidden = config.get("fc_hidden", [])
        if not isinstance(fc_hidden, list) or any(not isinstance(e, int) or e < 1 for e in fc_hidden):
            raise ValueError(f"fc_hidden: expected a list of positive ints, got {fc_hidden!r}")
        image_size = _positive_int(config, "image_size", 32)
        if image_size >> sum(e in ("M", "A") for e in layers) < 1:
            raise ValueError(f"image_size: {image_size} is too small for {sum(e in ('M', 'A') for e in layers)} pools")
        count = sum(isinstance(e, int) for e in layers) + len(fc_hidden)
        neurons = _neuron_factories(config, count, DEFAULT_NEURON)
        return SpikingVGG(layers, fc_hidden, image_size, _positive_int(config, "in_channels", 3),
                          _positive_int(config, "classes", 10), timesteps, neurons,
                          _choice(config, "norm", NORMS, "tdbn"))
    width = _positive_int(config, "width", 32)
    neurons = _neuron_factories(config, 8, {"type": "if"})
    return SEW7BNet(width, _positive_int(config, "in_channels", 2), _positive_int(config, "classes", 11), timesteps,
                    neurons, _choice(config, "norm", NORMS, "bn"), _choice(config, "connect", CONNECTS, "ADD"))
