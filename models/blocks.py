"""Residual blocks of the seed papers over time-major tensors ``[T, N, C, H, W]``.

Every block takes ``neuron``, a zero-argument callable returning a fresh neuron module (so a network
can give each block its own MLF level count K), and ``norm``, ``"tdbn"`` (the MLF authors' tdBN with
``V_th`` scaling) or ``"bn"`` (PyTorch BatchNorm over ``T * N``, as SEW and SpikingJelly use).

Notation of the docstrings: ``SN`` the block's neuron, ``BN`` the normalisation, ``conv`` a 3x3
convolution (padding 1), ``x`` the block input, ``s`` the residual path's output.
"""
from __future__ import annotations

import torch
from torch import nn

from .neurons import IF, LIF
from .surrogates import triangle
from .tdbn import TdBN


class TimeDistributed(nn.Module):
    """Applies a per-frame module to ``[T, N, ...]`` by folding time into the batch."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, n = x.shape[:2]
        y = self.module(x.reshape((t * n,) + tuple(x.shape[2:])))
        return y.reshape((t, n) + tuple(y.shape[1:]))


def conv(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> TimeDistributed:
    """A bias-free ``kernel_size`` convolution with 'same' padding, time-distributed."""
    return TimeDistributed(nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                                     padding=kernel_size // 2, bias=False))


NORMS = ("tdbn", "bn")


def make_norm(kind: str, channels: int, v_th: float = 0.6) -> nn.Module:
    """``"tdbn"``: :class:`TdBN` normalising to ``N(0, V_th^2)``; ``"bn"``: time-distributed BatchNorm2d."""
    if kind == "tdbn":
        return TdBN(channels, v_th=v_th)
    if kind == "bn":
        return TimeDistributed(nn.BatchNorm2d(channels))
    raise ValueError(f"norm: expected one of {NORMS}, got {kind!r}")


def norm_gain(norm: nn.Module) -> nn.Parameter:
    """The per-channel gain (``gamma``) of a norm made by :func:`make_norm`."""
    return norm.module.weight if isinstance(norm, TimeDistributed) else norm.weight


def zero_norm(norm: nn.Module) -> None:
    """Set a norm's gain and bias to zero, so its output (and the residual path) is exactly zero."""
    inner = norm.module if isinstance(norm, TimeDistributed) else norm
    nn.init.zeros_(inner.weight)
    nn.init.zeros_(inner.bias)


def _neuron_threshold(neuron) -> float:
    return neuron().v_th


class _ConvPath(nn.Module):
    """``BN2(conv2(SN(BN1(conv1(x)))))``: the residual path shared by the spiking ResNet family."""

    def __init__(self, in_channels, out_channels, stride, neuron, norm):
        super().__init__()
        v_th = _neuron_threshold(neuron)
        self.conv1 = conv(in_channels, out_channels, 3, stride)
        self.bn1 = make_norm(norm, out_channels, v_th)
        self.sn1 = neuron()
        self.conv2 = conv(out_channels, out_channels, 3)
        self.bn2 = make_norm(norm, out_channels, v_th)

    def forward(self, x):
        return self.bn2(self.conv2(self.sn1(self.bn1(self.conv1(x)))))


def _projection(in_channels, out_channels, stride, neuron, norm, spiking: bool):
    """The downsample shortcut ``conv1x1 + norm`` (``+ SN`` when ``spiking``), or ``None`` when the shape is
    unchanged and the identity serves."""
    if stride == 1 and in_channels == out_channels:
        return None
    layers = [conv(in_channels, out_channels, 1, stride), make_norm(norm, out_channels, _neuron_threshold(neuron))]
    return nn.Sequential(*(layers + [neuron()] if spiking else layers))


class SpikingBasicBlock(nn.Module):
    """Spiking ResNet block, activation *after* the addition (dotted line of Fig. 3 of the MLF paper).

    ``out = SN_added(BN2(conv2(SN(BN1(conv1 x)))) + shortcut(x))``, ``shortcut`` the identity, or
    ``BN(conv1x1(x))`` when the shape changes (Conv-BN without an activation, as in spiking ResNet).
    ``added_neuron`` makes ``SN_added``, the neuron that sees the shortcut added (default: ``neuron``); the
    MLF paper's hybrid levels (Appendix E) give it K = 4 and the residual path's neuron K = 3.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, neuron=None, norm: str = "tdbn",
                 added_neuron=None):
        super().__init__()
        neuron = neuron or LIF
        self.path = _ConvPath(in_channels, out_channels, stride, neuron, norm)
        self.shortcut = _projection(in_channels, out_channels, stride, neuron, norm, spiking=False) or nn.Identity()
        self.sn_out = (added_neuron or neuron)()

    def residual(self, x):
        """The pre-activation of the residual path, ``BN2(conv2(...))``."""
        return self.path(x)

    def join(self, residual, shortcut):
        """``SN(residual + shortcut)``."""
        return self.sn_out(residual + shortcut)

    def forward(self, x):
        return self.join(self.residual(x), self.shortcut(x))


class DSBasicBlock(nn.Module):
    """Spiking dormant-suppressed (DS-ResNet) block: activation *before* the addition.

    ``out = SN(BN2(conv2(SN(BN1(conv1 x))))) + shortcut(x)``, ``shortcut`` the identity, or
    ``SN(tdBN(conv1x1(x)))`` when the shape changes (MLF paper, Sec. 4.2 and Fig. 3). The output is a
    multi-valued spike count (a sum of spike counts), which the next convolution accumulates.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, neuron=None, norm: str = "tdbn"):
        super().__init__()
        neuron = neuron or LIF
        self.path = _ConvPath(in_channels, out_channels, stride, neuron, norm)
        self.sn_out = neuron()
        self.shortcut = _projection(in_channels, out_channels, stride, neuron, norm, spiking=True) or nn.Identity()

    def residual(self, x):
        return self.path(x)

    def join(self, residual, shortcut):
        """``SN(residual) + shortcut``."""
        return self.sn_out(residual) + shortcut

    def forward(self, x):
        return self.join(self.residual(x), self.shortcut(x))


class MSBasicBlock(nn.Module):
    """MS-ResNet block (membrane shortcut): ``out = x + BN2(conv2(SN(BN1(conv1(SN(x))))))``.

    The block passes membrane potentials (real values); each residual path starts with a neuron, so every
    convolution sees spikes. The second BN's gain is zero-initialised (MS-ResNet Sec. V-B), so a new
    block is the identity. When the shape changes the shortcut is ``BN(conv1x1(SN(x)))`` reusing the
    spikes of the path's top neuron. (The authors' code applies ``BN(conv1x1)`` to the membrane ``x`` itself,
    a non-spike convolution that their Sec. V-C leaves out of the energy count; ours keeps it spike-driven,
    which the core needs: it only moves events.)

    ``spike_input=True`` (a membrane-shortcut stage that follows a spiking stage in a mixed network): ``x`` is
    already spikes, so the top neuron is left out, ``SN(x) = x``, and the membrane stream starts from them.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, neuron=None, norm: str = "tdbn",
                 zero_init_residual: bool = True, spike_input: bool = False):
        super().__init__()
        neuron = neuron or LIF
        self.sn_in = None if spike_input else neuron()
        self.path = _ConvPath(in_channels, out_channels, stride, neuron, norm)
        if zero_init_residual:
            nn.init.zeros_(norm_gain(self.path.bn2))
        self.shortcut = _projection(in_channels, out_channels, stride, neuron, norm, spiking=False)

    def forward(self, membrane):
        spikes = membrane if self.sn_in is None else self.sn_in(membrane)
        shortcut = membrane if self.shortcut is None else self.shortcut(spikes)
        return shortcut + self.path(spikes)


def logic_join(connect: str, s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Element-wise join ``g(s, x)`` of residual spikes ``s`` and shortcut ``x`` (DST Table 1, SEW).

    ``ADD: s + x``; ``AND: s x``; ``IAND: (1 - s) x``; ``OR: s + x - s x``; ``XOR: s (1 - x) + x (1 - s)``.
    Written arithmetically so the surrogate gradients flow through both operands.
    """
    if connect == "ADD":
        return s + x
    if connect == "AND":
        return s * x
    if connect == "IAND":
        return (1 - s) * x
    if connect == "OR":
        return s + x - s * x
    if connect == "XOR":
        return s * (1 - x) + x * (1 - s)
    raise ValueError(f"connect: expected one of {CONNECTS}, got {connect!r}")


CONNECTS = ("ADD", "AND", "IAND", "OR", "XOR")


class SEWBlock(nn.Module):
    """SEW ResNet basic block: ``out = g(SN(BN2(conv2(SN(BN1(conv1 x))))), shortcut(x))``.

    ``shortcut`` is the identity or ``SN(BN(conv1x1(x)))`` (SEW adds a neuron to the downsample, so
    the shortcut carries spikes); ``g`` is :func:`logic_join`. Matches SpikingJelly's ``sew_resnet.BasicBlock``
    (its ``sew_function(identity, out)`` has the operands the other way round; IAND is the same map).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, neuron=None, norm: str = "bn",
                 connect: str = "ADD"):
        super().__init__()
        if connect not in CONNECTS:
            raise ValueError(f"connect: expected one of {CONNECTS}, got {connect!r}")
        neuron = neuron or IF
        self.connect = connect
        self.path = _ConvPath(in_channels, out_channels, stride, neuron, norm)
        self.sn2 = neuron()
        self.shortcut = _projection(in_channels, out_channels, stride, neuron, norm, spiking=True) or nn.Identity()

    def forward(self, x):
        return logic_join(self.connect, self.sn2(self.path(x)), self.shortcut(x))

    def extra_repr(self) -> str:
        return f"connect={self.connect}"


def lsn_join(x: torch.Tensor, excitatory: torch.Tensor, inhibitory: torch.Tensor) -> torch.Tensor:
    """The LSN gate ``X' = (NOT(E XOR I) AND X) OR (E AND NOT I)``, in its differentiable form (Eq. 8).

    ``X' = (1 - (E + I - 2 E I)) X + (E - E I)``: when ``E == I`` the input passes unchanged (identity),
    ``E=1, I=0`` sets the output to 1 and ``E=0, I=1`` clears it.
    """
    return (1 - (excitatory + inhibitory - 2 * excitatory * inhibitory)) * x + (excitatory - excitatory * inhibitory)


def lsn_neuron() -> LIF:
    """The LSN paper's neuron: LIF with ``alpha = 0.5``, ``V_th = 1``, triangle surrogate (Appendix A.1)."""
    return LIF(v_th=1.0, decay=0.5, surrogate=triangle(1.0))


class LSNBlock(nn.Module):
    """Logic spiking network block: excitatory and inhibitory branches joined by :func:`lsn_join`.

    Each branch is ``SN(BN(conv(SN(BN(conv(x))))))`` with its own weights (the paper's two-branch block with
    the parameter count of 2 convolutions per branch). When the shape changes, ``x`` goes through
    ``SN(BN(conv1x1(x)))`` first so the gate still sees spikes (a choice of ours; the paper shows no
    downsample block).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, neuron=None, norm: str = "tdbn"):
        super().__init__()
        neuron = neuron or lsn_neuron
        self.excitatory = nn.Sequential(_ConvPath(in_channels, out_channels, stride, neuron, norm), neuron())
        self.inhibitory = nn.Sequential(_ConvPath(in_channels, out_channels, stride, neuron, norm), neuron())
        self.shortcut = _projection(in_channels, out_channels, stride, neuron, norm, spiking=True) or nn.Identity()

    def forward(self, x):
        return lsn_join(self.shortcut(x), self.excitatory(x), self.inhibitory(x))


JOINS = ("IF",) + CONNECTS[1:]  # ADD would make the spike stream non-binary: not a full-spike join


class DualStreamBlock(nn.Module):
    """Dual-stream block (DST, Eqs. 10-11): a full-spike stream ``o`` and the accumulation stream ``a``.

    ``s = SN(BN2(conv2(SN(BN1(conv1 o)))))`` and::

        o' = IF(s + shortcut(o))        join = "IF"   (spiking ResNet with an IF neuron on the residual)
        o' = g(s, shortcut(o))          join in AND, IAND, OR, XOR   (SEW logic residual)
        a' = s + shortcut_a(a)          (the Auxiliary Accumulation Pathway, AAP)

    ``forward((o, a))`` returns ``(o', a')``; pass ``a = None`` (FSNN mode) to skip the AAP. When the shape
    changes, ``shortcut`` is ``BN(conv1x1)`` for the IF join and ``SN(BN(conv1x1))`` for the logic joins
    (SEW), and ``shortcut_a`` is ``BN(conv1x1)`` on the multi-valued accumulation (MAC operations; DST
    Fig. 2b). ``zero_init_residual`` zeroes the last BN's gain and bias so ``s = 0``: then ``a' = a`` and
    ``o' = o`` (IAND, OR, XOR, and IF with ``0 < V_th <= 1``), the identity mapping of DST Sec. 4.2.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, neuron=None, norm: str = "bn",
                 join: str = "IAND", residual_neuron=None, zero_init_residual: bool = False):
        super().__init__()
        if join not in JOINS:
            raise ValueError(f"join: expected one of {JOINS}, got {join!r}")
        neuron = neuron or IF
        self.join = join
        self.path = _ConvPath(in_channels, out_channels, stride, neuron, norm)
        self.sn2 = neuron()
        if zero_init_residual:
            zero_norm(self.path.bn2)
        self.residual_neuron = (residual_neuron or IF)() if join == "IF" else None
        self.shortcut = (_projection(in_channels, out_channels, stride, neuron, norm, spiking=join != "IF")
                         or nn.Identity())
        self.shortcut_a = _projection(in_channels, out_channels, stride, neuron, norm, spiking=False) or nn.Identity()

    def forward(self, streams):
        o, a = streams
        s = self.sn2(self.path(o))
        shortcut = self.shortcut(o)
        o_next = self.residual_neuron(s + shortcut) if self.join == "IF" else logic_join(self.join, s, shortcut)
        a_next = None if a is None else s + self.shortcut_a(a)
        return o_next, a_next

    def extra_repr(self) -> str:
        return f"join={self.join}"


def dual_stream_loss(spike_logits, accumulation_logits, target, criterion=nn.functional.cross_entropy):
    """DST Eq. 12: ``L = L_c(O_s, y) + L_c(O_a, y)`` with one objective for both streams."""
    return criterion(spike_logits, target) + criterion(accumulation_logits, target)


# ---- what flows between layers --------------------------------------------------------------------------
# A synaptic layer's cost and a logic join's meaning depend on the kind of values it receives, which is a
# property of the network's structure (not of the values a batch happens to hold):
SPIKES = "spikes"   # binary 0/1 (a one-level neuron, a logic join of spikes)
COUNTS = "counts"   # non-negative integers (MLF spike counts 0..K, sums of spikes and counts)
REAL = "real"       # anything else (pixels, membranes, BN outputs, pooled features)


def neuron_kind(neuron) -> str:
    """``SPIKES`` for a one-level neuron, ``COUNTS`` for an MLF neuron with K > 1."""
    return SPIKES if neuron.levels == 1 else COUNTS


def sum_kind(*kinds: str) -> str:
    """The kind of a sum: counts when every term is spikes or counts, else real."""
    return COUNTS if all(k in (SPIKES, COUNTS) for k in kinds) else REAL


def logic_kind(*kinds: str) -> str:
    """The kind of a logic join: spikes when every operand is spikes (else the arithmetic form is real)."""
    return SPIKES if all(k == SPIKES for k in kinds) else REAL


def _path_layers(path: _ConvPath, x: str) -> list:
    return [(path.conv1.module, x), (path.conv2.module, neuron_kind(path.sn1))]


def _shortcut_signal(shortcut, x: str):
    """``(kind of the shortcut's output, [(layer, input kind)])`` of an identity or projection shortcut."""
    if shortcut is None or isinstance(shortcut, nn.Identity):
        return x, []
    return (neuron_kind(shortcut[2]) if len(shortcut) == 3 else REAL), [(shortcut[0].module, x)]


RESIDUAL_BLOCKS = (SpikingBasicBlock, DSBasicBlock, MSBasicBlock, SEWBlock, LSNBlock, DualStreamBlock)


def block_signals(block: nn.Module, x):
    """How the kinds of values flow through one residual block.

    Parameters
    ----------
    block : one of the blocks of this module
    x : str, or ``(o, a)`` for a :class:`DualStreamBlock` (``a`` None without the AAP)
        The kind of the block's input.

    Returns
    -------
    output : str, or ``(o', a')`` for a dual-stream block
        The kind of the block's output.
    layers : list of ``(nn.Conv2d, str)``
        Every convolution of the block with the kind of its input.
    join_operands : list of str
        The kinds entering the block's logic join (SEW AND/IAND/OR/XOR, the LSN gate, DST logic joins);
        empty for arithmetic joins. A logic join is only a logic function when they are all ``SPIKES``.
    """
    if isinstance(block, SpikingBasicBlock):
        shortcut, projection = _shortcut_signal(block.shortcut, x)
        return neuron_kind(block.sn_out), _path_layers(block.path, x) + projection, []
    if isinstance(block, DSBasicBlock):
        shortcut, projection = _shortcut_signal(block.shortcut, x)
        return sum_kind(neuron_kind(block.sn_out), shortcut), _path_layers(block.path, x) + projection, []
    if isinstance(block, MSBasicBlock):
        spikes = x if block.sn_in is None else neuron_kind(block.sn_in)
        _, projection = _shortcut_signal(block.shortcut, spikes)
        return REAL, _path_layers(block.path, spikes) + projection, []
    if isinstance(block, SEWBlock):
        shortcut, projection = _shortcut_signal(block.shortcut, x)
        s = neuron_kind(block.sn2)
        layers = _path_layers(block.path, x) + projection
        if block.connect == "ADD":
            return sum_kind(s, shortcut), layers, []
        return logic_kind(s, shortcut), layers, [s, shortcut]
    if isinstance(block, LSNBlock):
        shortcut, projection = _shortcut_signal(block.shortcut, x)
        operands = [shortcut, neuron_kind(block.excitatory[1]), neuron_kind(block.inhibitory[1])]
        layers = _path_layers(block.excitatory[0], x) + _path_layers(block.inhibitory[0], x) + projection
        return logic_kind(*operands), layers, operands
    if isinstance(block, DualStreamBlock):
        o, a = x
        shortcut, projection = _shortcut_signal(block.shortcut, o)
        s = neuron_kind(block.sn2)
        layers = _path_layers(block.path, o) + projection
        if block.join == "IF":
            o_next, operands = neuron_kind(block.residual_neuron), []
        else:
            o_next, operands = logic_kind(s, shortcut), [s, shortcut]
        if a is None:
            return (o_next, None), layers, operands
        a_shortcut, a_projection = _shortcut_signal(block.shortcut_a, a)
        return (o_next, sum_kind(s, a_shortcut)), layers + a_projection, operands
    raise ValueError(f"block: {type(block).__name__} is not a block of models.blocks")
