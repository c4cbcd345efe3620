"""Networks built from YAML-like dicts: ``build_network(config) -> nn.Module``.

Keys (unknown keys are an error)::

    arch:        "resnet" | "vgg" | "sew7b" | "mlp"
    block:       resnet only: "spiking" | "ds" | "ms" | "sew" | "lsn" | "dual", or a list of them: one per stage
                 or one per block (a network that mixes methods, see below)
    depth:       resnet only: 6N + 2 (8, 14, 20, 32, ...)
    stages:      resnet only: 1, 2 or 3 stages of N blocks (default 3: widths w, 2w, 4w)
    width:       resnet: "small" | "middle" | "large" (16/32/64) or an int; sew7b: channels (default 32)
    layers:      vgg only: list of conv widths, "M" (max pool 2) or "A" (avg pool 2)
    fc_hidden:   vgg only: widths of hidden spiking fully-connected layers (default [])
    image_size:  vgg, mlp: input height = width (default 32; mlp: 8), to size the classifier
    hidden:      mlp only: widths of the hidden spiking fully-connected layers (default [], a single layer)
    in_features: mlp only: a flat input vector [N, F] of F features instead of images [N, C, H, W]
    in_channels: input channels (default 3; 2 for sew7b)
    classes:     classifier outputs (default 10; 11 for sew7b)
    timesteps:   T for static inputs [N, C, H, W], repeated over time (default 4)
    neuron:      {"type": "mlf"|"lif"|"if", ...constructor arguments}, or a list of them, one per neuron layer
    levels:      MLF levels K: an int, or a list, one per neuron layer (see below)
    norm:        "tdbn" | "bn"; resnet: also a list, one per stage or per block
    connect:     sew, sew7b: "ADD" | "AND" | "IAND" | "OR" | "XOR"; resnet: also a list (null for non-sew blocks)
    join:        dual: "IF" | "AND" | "IAND" | "OR" | "XOR", or a list, one per stage or per block
    zero_init_residual: ms, dual: zero the last BN of each residual path

Per neuron layer. A ``levels`` or ``neuron`` list has one entry per neuron layer: for VGG one per conv and
hidden fc layer; for the 7B-Net one for the stem and one per SEW block; for ResNets one for the stem and one
per residual block (all neurons of a block share it), or one for the stem and one per stage. A ``levels``
entry may be null (the neuron's own K, for layers whose neuron is not MLF), and for ResNets
``{plain: K, added: K'}``: the MLF paper's hybrid levels (Appendix E), K' for the neuron that sees the
shortcut added (the ``spiking`` block's output neuron) and K for every other neuron.

Mixed networks (resnet). ``block: [ds, sew, lsn]`` gives each stage its own residual kind (a list as long as
``depth`` has blocks gives each block its own). Every block takes the settings of its own paper unless the
configuration says otherwise: its neuron (``BLOCK_DEFAULTS``; the stem takes the first block's), its
normalisation (``norm`` as a list sets them per stage or block), ``connect`` for SEW blocks (a list has null
at the other blocks), ``join`` for dual-stream blocks. How the kinds meet:

- an ``ms`` stage passes membranes: the stem has no neuron when the network starts with one; after a
  spiking stage the stage's first block takes the spikes as they are (``MSBasicBlock(spike_input=True)``);
  a neuron (the last ``ms`` block's) closes the stage before a spiking stage or the classifier, as the
  MS-ResNet paper closes its conv stack;
- a logic join (SEW AND/IAND/OR/XOR, the LSN gate, DST logic joins) needs spikes on its shortcut: one after a
  ``ds`` block or a SEW ADD block (sums), or with MLF neurons of K > 1 (counts), is refused;
- ``dual`` blocks cannot be mixed with other kinds: the AAP's accumulation runs from the stem to the
  classifier (DST Eq. 11).

Inputs are time-major ``[T, N, C, H, W]``, or static ``[N, C, H, W]``; the logits are the classifier's outputs
averaged over time.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .blocks import (CONNECTS, JOINS, NORMS, REAL, SPIKES, DSBasicBlock, DualStreamBlock, LSNBlock, MSBasicBlock,
                     SEWBlock, SpikingBasicBlock, TimeDistributed, block_signals, conv, make_norm, neuron_kind)
from .neurons import make_neuron

WIDTHS = {"small": 16, "middle": 32, "large": 64}
RESNET_BLOCKS = {"spiking": SpikingBasicBlock, "ds": DSBasicBlock, "ms": MSBasicBlock, "sew": SEWBlock,
                 "lsn": LSNBlock, "dual": DualStreamBlock}
DEFAULT_NEURON = {"type": "mlf"}
BLOCK_DEFAULTS = {  # the settings of each block's paper (docs/methods.md)
    "spiking": dict(neuron=DEFAULT_NEURON, norm="tdbn"),
    "ds": dict(neuron=DEFAULT_NEURON, norm="tdbn"),
    # MS-ResNet Table VII: LIF, V_th = 0.5, tau_mem = 0.25, a = 1; its code fires on u > V_th (torch.gt)
    "ms": dict(neuron={"type": "lif", "v_th": 0.5, "decay": 0.25}, norm="tdbn"),
    "sew": dict(neuron={"type": "if"}, norm="bn"),
    # LSN Appendix A.1: LIF, alpha = 0.5, V_th = 1, triangle surrogate; plain BN (the paper names no tdBN)
    "lsn": dict(neuron={"type": "lif", "v_th": 1.0, "decay": 0.5, "surrogate": {"name": "triangle", "width": 1.0}},
                norm="bn"),
    # DST Appendix C.3: arctan surrogate, alpha = 2, "in all experiments"; IF fires on u >= V_th
    "dual": dict(neuron={"type": "if", "surrogate": {"name": "arctan", "alpha": 2.0, "strict": False}}, norm="bn"),
}
COMMON_KEYS = {"arch", "in_channels", "classes", "timesteps", "neuron", "levels", "norm"}
ARCH_KEYS = {
    "resnet": COMMON_KEYS | {"block", "depth", "stages", "width", "connect", "join", "zero_init_residual"},
    "vgg": COMMON_KEYS | {"layers", "fc_hidden", "image_size"},
    "sew7b": COMMON_KEYS | {"width", "connect"},
    "mlp": (COMMON_KEYS - {"norm"}) | {"hidden", "image_size", "in_features"},
}
HYBRID_KEYS = ("plain", "added")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _per_layer(key: str, value, count: int, stage_blocks=None) -> list:
    """``value`` as one entry per neuron layer: a single value for all, or a list of ``count`` entries; for a
    ResNet (``stage_blocks``: blocks per stage) also a list of one entry for the stem and one per stage."""
    if not isinstance(value, (list, tuple)):
        return [value] * count
    if len(value) == count:
        return list(value)
    if stage_blocks is not None and len(value) == 1 + (count - 1) // stage_blocks:
        return [value[0]] + [entry for entry in value[1:] for _ in range(stage_blocks)]
    stages = "" if stage_blocks in (None, 1) else f" or {1 + (count - 1) // stage_blocks} (the stem, then one per stage)"
    raise ValueError(f"{key}: expected one value or a list of {count} entries (one per neuron layer){stages}, "
                     f"got {len(value)}")


def _per_block(key: str, value, stages: int, stage_blocks: int) -> list:
    """``value`` as one entry per residual block: a single value, or a list of one per stage or one per block."""
    if not isinstance(value, (list, tuple)):
        return [value] * (stages * stage_blocks)
    if len(value) == stages:
        return [entry for entry in value for _ in range(stage_blocks)]
    if len(value) == stages * stage_blocks:
        return list(value)
    blocks = "" if stage_blocks == 1 else f" or {stages * stage_blocks} (one per block)"
    raise ValueError(f"{key}: expected one value or a list of {stages} entries (one per stage){blocks}, "
                     f"got {len(value)}")


def _levels_entry(entry, spec: dict, layer: int):
    """``(K, K_added)`` of one ``levels`` entry (None: the neuron's own), validated against its neuron."""
    if entry is None:
        return None, None
    if isinstance(entry, dict):
        if sorted(entry) != sorted(HYBRID_KEYS):
            raise ValueError(f"levels: a hybrid entry has exactly the keys {list(HYBRID_KEYS)}, got {entry!r}")
        plain, added = entry["plain"], entry["added"]
    else:
        plain = added = entry
    if not (_is_int(plain) and _is_int(added)):
        raise ValueError(f"levels: expected an int, null or {{plain: K, added: K}} per neuron layer, got {entry!r}")
    if plain < 1 or added < 1:
        raise ValueError(f"levels: every K must be >= 1, got {entry!r}")
    if spec.get("type") != "mlf":
        raise ValueError(f"levels: only the 'mlf' neuron has levels, the neuron of layer {layer} is {spec.get('type')!r} "
                         f"(give null there)")
    return plain, added


def _neuron_factories(config: dict, default_specs: list, stage_blocks=None) -> list:
    """Per neuron layer, ``(factory, added_factory)``: zero-argument neuron factories applying ``neuron`` and
    ``levels`` (``added_factory`` differs from ``factory`` only for a hybrid ``levels`` entry)."""
    count = len(default_specs)
    specs = default_specs if "neuron" not in config else _per_layer("neuron", config["neuron"], count, stage_blocks)
    for spec in specs:
        make_neuron(spec)  # validate once, so a bad neuron entry fails with its key named
    levels = _per_layer("levels", config.get("levels"), count, stage_blocks)
    if stage_blocks is None and any(isinstance(entry, dict) for entry in levels):
        raise ValueError("levels: hybrid {plain, added} entries are for ResNets (the neuron after the addition)")
    factories = []
    for layer, (spec, entry) in enumerate(zip(specs, levels)):
        plain, added = _levels_entry(entry, spec, layer)
        spec_plain = dict(spec) if plain is None else {**spec, "levels": plain}
        spec_added = dict(spec) if added is None else {**spec, "levels": added}
        factories.append((lambda s=spec_plain: make_neuron(s), lambda s=spec_added: make_neuron(s)))
    return factories


def _choice(config: dict, key: str, allowed, default):
    value = config.get(key, default)
    if isinstance(value, (list, dict, set)) or value not in allowed:
        raise ValueError(f"{key}: expected one of {sorted(allowed) if isinstance(allowed, dict) else list(allowed)}, "
                         f"got {value!r}")
    return value


def _entry_choice(key: str, value, allowed) -> str:
    if isinstance(value, (list, dict, set)) or value not in allowed:
        raise ValueError(f"{key}: expected one of {sorted(allowed) if isinstance(allowed, dict) else list(allowed)}"
                         f" (a value, or a list of them), got {value!r}")
    return value


def _positive_int(config: dict, key: str, default: int) -> int:
    value = config.get(key, default)
    if not _is_int(value) or value < 1:
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
    """ResNet-(6N+2): stem conv-BN-SN, stages of N blocks (widths w, 2w, 4w), global pool, classifier.

    ``kinds`` names each block's kind (keys of ``RESNET_BLOCKS``), ``neurons`` holds per neuron layer (the stem,
    then each block) a pair ``(factory, added_factory)``, ``norms`` and ``options`` one entry per block
    (``norms[0]`` also serves the stem). ``len(kinds) // stages`` blocks make a stage; fewer than 3 stages
    keep only the first (a smaller network for small inputs).

    ``block_kind`` is the blocks' common kind, or ``"mixed"``. Membrane-shortcut (``ms``) blocks pass
    membranes: the stem has no neuron when the first block is one, ``closing_neurons[str(i)]`` turns the
    membranes of block ``i``, the last of an ``ms`` run, into spikes for the spiking block after it, and
    ``final_neuron`` does so before the classifier. Dual-stream networks return ``(O_s, O_a)`` in
    ``stream_mode="dual"`` (training with :func:`spikecore.models.blocks.dual_stream_loss`), ``O_s`` with the AAP
    removed in ``"fsnn"``, and ``O_a`` (the retained accumulation) in ``"dsnn"``.
    """

    STREAM_MODES = ("dual", "fsnn", "dsnn")

    def __init__(self, kinds: list, width: int, in_channels: int, classes: int, timesteps: int, neurons: list,
                 norms: list, options: list, stages: int = 3):
        super().__init__(timesteps)
        blocks_per_stage = len(kinds) // stages
        self.block_kinds = list(kinds)
        self.block_kind = kinds[0] if len(set(kinds)) == 1 else "mixed"
        self.stream_mode = "dual"
        stem_neuron, block_neurons = neurons[0][0], neurons[1:]
        self.stem_conv = conv(in_channels, width, 3)
        self.stem_norm = make_norm(norms[0], width, stem_neuron().v_th)
        self.stem_neuron = None if kinds[0] == "ms" else stem_neuron()
        layers, closing, channels = [], {}, width
        for index, kind in enumerate(kinds):
            stage, stage_width = index // blocks_per_stage, width << (index // blocks_per_stage)
            stride = 2 if stage > 0 and index % blocks_per_stage == 0 else 1
            neuron, added_neuron = block_neurons[index]
            arguments = dict(neuron=neuron, norm=norms[index], **options[index])
            if kind == "spiking":
                arguments["added_neuron"] = added_neuron
            if kind == "ms" and index > 0 and kinds[index - 1] != "ms":
                arguments["spike_input"] = True
            if kind == "ms" and index + 1 < len(kinds) and kinds[index + 1] != "ms":
                closing[str(index)] = neuron()
            layers.append(RESNET_BLOCKS[kind](channels, stage_width, stride, **arguments))
            channels = stage_width
        self.blocks = nn.ModuleList(layers)
        self.closing_neurons = nn.ModuleDict(closing)
        self.final_neuron = block_neurons[-1][0]() if kinds[-1] == "ms" else None
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
        for index, block in enumerate(self.blocks):
            h = block(h)
            if str(index) in self.closing_neurons:
                h = self.closing_neurons[str(index)](h)
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


class SpikingMLP(SpikingNetwork):
    """Fully connected: ``{fc-SN}*`` then the classifier, on images ``[N, C, H, W]`` (flattened in C, H, W
    order) or flat vectors ``[N, F]``; time-major ``[T, N, ...]`` sequences as they are. snnTorch's first
    tutorial network is the one-hidden-layer case."""

    def __init__(self, input_shape: tuple, hidden: list, classes: int, timesteps: int, neurons: list):
        super().__init__(timesteps)
        self.feature_shape = tuple(input_shape)
        width, fc = math.prod(self.feature_shape), []
        for index, size in enumerate(hidden):
            fc += [TimeDistributed(nn.Linear(width, size)), neurons[index]()]
            width = size
        self.fc = nn.Sequential(*fc)
        self.classifier = TimeDistributed(nn.Linear(width, classes))

    def to_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """Static ``[N, F]`` or ``[N, C, H, W]`` (repeated over T), or time-major ``[T, N, ...]`` of them, with
        as many values per sample as the network has inputs."""
        static = x.dim() in (2, 4)
        if x.dim() not in (2, 3, 4, 5) or math.prod(x.shape[1 if static else 2:]) != math.prod(self.feature_shape):
            raise ValueError(f"input: expected [N, {', '.join(map(str, self.feature_shape))}] or a time-major "
                             f"sequence of them, got {list(x.shape)}")
        return x.unsqueeze(0).expand((self.timesteps,) + tuple(x.shape)) if static else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.to_sequence(x).flatten(2)
        return self.classifier(self.fc(h)).mean(0)


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
        return _build_resnet(config, timesteps)
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
        neurons = [factory for factory, _ in _neuron_factories(config, [DEFAULT_NEURON] * count)]
        return SpikingVGG(layers, fc_hidden, image_size, _positive_int(config, "in_channels", 3),
                          _positive_int(config, "classes", 10), timesteps, neurons,
                          _choice(config, "norm", NORMS, "tdbn"))
    if arch == "mlp":
        hidden = config.get("hidden", [])
        if not isinstance(hidden, list) or any(not _is_int(e) or e < 1 for e in hidden):
            raise ValueError(f"hidden: expected a list of positive ints, got {hidden!r}")
        if "in_features" in config and ("in_channels" in config or "image_size" in config):
            raise ValueError("in_features: a flat input has no in_channels or image_size")
        shape = (_positive_int(config, "in_features", 64),) if "in_features" in config else \
            (_positive_int(config, "in_channels", 1), _positive_int(config, "image_size", 8),
             _positive_int(config, "image_size", 8))
        neurons = [factory for factory, _ in _neuron_factories(config, [DEFAULT_NEURON] * len(hidden))]
        return SpikingMLP(shape, hidden, _positive_int(config, "classes", 10), timesteps, neurons)
    width = _positive_int(config, "width", 32)
    neurons = [factory for factory, _ in _neuron_factories(config, [{"type": "if"}] * 8)]
    return SEW7BNet(width, _positive_int(config, "in_channels", 2), _positive_int(config, "classes", 11), timesteps,
                    neurons, _choice(config, "norm", NORMS, "bn"), _choice(config, "connect", CONNECTS, "ADD"))


def _build_resnet(config: dict, timesteps: int) -> SpikingResNet:
    """The ``arch: resnet`` branch of :func:`build_network` (mixed block kinds included)."""
    depth = config.get("depth", 20)
    if not _is_int(depth) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth: expected 6N + 2 with N >= 1 (8, 14, 20, ...), got {depth!r}")
    width = config.get("width", "small")
    width = WIDTHS.get(width, width) if isinstance(width, str) else width
    if not _is_int(width) or width < 1:
        raise ValueError(f"width: expected one of {sorted(WIDTHS)} or a positive int, got {config['width']!r}")
    stages = _choice(config, "stages", (1, 2, 3), 3)
    stage_blocks = (depth - 2) // 6
    kinds = [_entry_choice("block", kind, RESNET_BLOCKS)
             for kind in _per_block("block", config.get("block"), stages, stage_blocks)]
    if "dual" in kinds and set(kinds) != {"dual"}:
        raise ValueError(f"block: 'dual' cannot be mixed with other kinds ({sorted(set(kinds))}): its accumulation "
                         f"stream (the AAP, DST Eq. 11) runs through every block from the stem to the classifier")
    norms = [_entry_choice("norm", BLOCK_DEFAULTS[kind]["norm"] if norm is None else norm, NORMS)
             for kind, norm in zip(kinds, _per_block("norm", config.get("norm"), stages, stage_blocks))]
    options = [{} for _ in kinds]
    for key, kind, allowed, default in (("connect", "sew", CONNECTS, "ADD"), ("join", "dual", JOINS, "IAND")):
        if key in config and kind not in kinds:
            raise ValueError(f"{key}: only for block '{kind}' (block is {config.get('block')!r})")
        for index, value in enumerate(_per_block(key, config.get(key), stages, stage_blocks)):
            if kinds[index] == kind:
                options[index][key] = _entry_choice(key, default if value is None else value, allowed)
            elif value is not None and isinstance(config[key], (list, tuple)):
                raise ValueError(f"{key}: block {index} is {kinds[index]!r}, which has no {key} (give null there)")
    if "zero_init_residual" in config and not {"ms", "dual"} & set(kinds):
        raise ValueError(f"zero_init_residual: only for blocks 'ms' and 'dual' (block is {config.get('block')!r})")
    for index, kind in enumerate(kinds):
        if kind in ("ms", "dual"):
            options[index]["zero_init_residual"] = bool(config.get("zero_init_residual", kind == "ms"))
    default_specs = [BLOCK_DEFAULTS[kinds[0]]["neuron"]] + [BLOCK_DEFAULTS[kind]["neuron"] for kind in kinds]
    neurons = _neuron_factories(config, default_specs, stage_blocks)
    net = SpikingResNet(kinds, width, _positive_int(config, "in_channels", 3), _positive_int(config, "classes", 10),
                        timesteps, neurons, norms, options, stages)
    _check_logic_joins(net)
    return net


def _check_logic_joins(net: SpikingResNet) -> None:
    """Refuse a logic join whose operands are not spikes (it would compute an arithmetic blend, not a logic
    function, and the core's gates take bits)."""
    x = REAL if net.stem_neuron is None else neuron_kind(net.stem_neuron)
    if net.block_kind == "dual":
        x = (x, x)
    for index, (kind, block) in enumerate(zip(net.block_kinds, net.blocks)):
        output, _, operands = block_signals(block, x)
        if any(operand != SPIKES for operand in operands):
            received = x[0] if isinstance(x, tuple) else x
            source = "the stem" if index == 0 else f"block {index - 1} ({net.block_kinds[index - 1]!r})"
            cause = (f"its input from {source} holds {received}" if received != SPIKES else
                     "its neurons have K > 1 (they output counts)")
            raise ValueError(f"block: block {index} ({kind!r}) joins by a logic function, which needs spikes, "
                             f"but {cause}")
        x = output
        if str(index) in net.closing_neurons:
            x = neuron_kind(net.closing_neurons[str(index)])
