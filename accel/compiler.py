"""The compiler: trained network -> Program, as a list of named passes.

``quantize`` (fold tdBN, fixed point, thresholds, leak as shift) -> ``check_ranges`` (prove that no
accumulator can overflow, that every parameter fits its width) -> ``allocate`` (memory bases, event
regions) -> ``build_tables`` (fan-out pointers, synapse rows, weight rows, parameter rows, layer
descriptors) -> ``check_capacity`` (every table fits its memory).
"""
from __future__ import annotations

import math

import numpy as np

from models import DigitsNet

from .config import ArchConfig
from .errors import UserError
from .layouts import REGION_INPUT, REGION_PING, REGION_PONG, all_layouts
from .program import Program, ProgramLayer
from .quantize import quantize_digits


def _signed_range(bits: int):
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def to_program_layers(net: DigitsNet, arch: ArchConfig) -> list:
    """Pass ``quantize``: integer layers with their logical shapes."""
    int_layers, scales = quantize_digits(net, arch)
    cfg = net.config
    shape = (1, cfg["image_size"], cfg["image_size"])
    out = []
    for i, (layer, scale) in enumerate(zip(int_layers, scales)):
        if layer.op == "conv":
            c_out, _, kh, kw = layer.weight.shape
            oh = (shape[1] + 2 * layer.padding - kh) // layer.stride + 1
            ow = (shape[2] + 2 * layer.padding - kw) // layer.stride + 1
            out_shape, name = (int(c_out), oh, ow), f"conv{i}"
        else:
            out_shape, name = (int(layer.weight.shape[0]),), "classifier"
        out.append(ProgramLayer(
            name=name, op=layer.op, in_shape=tuple(shape), out_shape=out_shape,
            weight=layer.weight.numpy(), bias=layer.bias.numpy(), thresholds=layer.thresholds.numpy(),
            scale=scale.numpy().astype(np.float64), shift=layer.shift, stride=layer.stride,
            padding=layer.padding, fires=layer.fires))
        shape = out_shape
    return out


def check_ranges(layers, arch: ArchConfig, input_max: int, timesteps: int) -> None:
    """Pass ``check_ranges``: widths of every parameter and the accumulator bound of docs/numerics.md."""
    if input_max > (1 << arch.input_bits) - 1:
        raise UserError(f"layer {layers[0].name}: input values up to {input_max} do not fit input_bits = {arch.input_bits}")
    if timesteps > arch.max_timesteps:
        raise UserError(f"program: T = {timesteps} exceeds max_timesteps = {arch.max_timesteps}")
    w_lo, w_hi = _signed_range(arch.weight_bits)
    m_lo, m_hi = _signed_range(arch.membrane_bits)
    acc_hi = _signed_range(arch.acc_bits)[1]
    in_max = input_max
    for layer in layers:
        if layer.levels > arch.max_levels:
            raise UserError(f"layer {layer.name}: {layer.levels} levels exceed max_levels = {arch.max_levels}")
        for what, arr, lo, hi in (("weight", layer.weight, w_lo, w_hi), ("bias", layer.bias, m_lo, m_hi),
                                  ("threshold", layer.thresholds, m_lo, m_hi)):
            if arr.size and (arr.min() < lo or arr.max() > hi):
                bits = arch.weight_bits if what == "weight" else arch.membrane_bits
                raise UserError(f"layer {layer.name}: a {what} in [{arr.min()}, {arr.max()}] overflows {bits} bits")
        bound = int((np.abs(layer.weight).reshape(layer.weight.shape[0], -1).sum(1) * in_max).max())
        if bound > acc_hi:
            raise UserError(f"layer {layer.name}: accumulator bound {bound} (sum |w| * max input {in_max}) "
                            f"overflows acc_bits = {arch.acc_bits}; widen acc_bits or reduce the fan-in")
        in_max = layer.levels


def allocate(layers, arch: ArchConfig, n_inputs: int) -> None:
    """Pass ``allocate``: bases of each layer in the pointer, state, param, weight and synapse memories."""
    lanes = arch.lanes
    ptr = state = param = 0
    in_region, n_in_hw = REGION_INPUT, n_inputs
    for i, layer in enumerate(layers):
        layer.n_blocks = math.ceil(layer.channels / lanes)
        layer.n_groups = layer.positions * layer.n_blocks
        layer.ptr_base, layer.n_inputs_hw = ptr, n_in_hw
        layer.state_base, layer.param_base = state, param
        layer.in_region = in_region
        layer.out_region = REGION_PING if in_region != REGION_PING else REGION_PONG
        ptr += n_in_hw
        state += layer.n_groups
        param += layer.n_blocks
        in_region, n_in_hw = layer.out_region, layer.n_groups * lanes


def _input_coordinates(prev: ProgramLayer | None, in_shape, lanes: int, n_hw: int):
    """For each hardware input index: logical (channel, y, x) and whether it is a real neuron."""
    idx = np.arange(n_hw)
    if prev is None:  # pixels, logical order
        c, rest = np.divmod(idx, in_shape[1] * in_shape[2])
        y, x = np.divmod(rest, in_shape[2])
        return c, y, x, np.ones(n_hw, bool)
    group, lane = np.divmod(idx, lanes)
    q, block = np.divmod(group, prev.n_blocks)
    c = block * lanes + lane
    if len(prev.out_shape) == 3:
        y, x = np.divmod(q, prev.out_shape[2])
    else:
        y = x = np.zeros_like(q)
    return c, y, x, c < prev.channels


def build_tables(layers, arch: ArchConfig) -> dict:
    """Pass ``build_tables``: memory columns of every memory (see accel/layouts.py)."""
    lanes = arch.lanes
    ptr_start, ptr_count, syn_row, syn_wrow, weight_rows = [], [], [], [], []
    bias_rows, th_rows = [], []
    never = _signed_range(arch.membrane_bits)[1]
    n_syn = n_wrows = 0
    prev = None
    for layer in layers:
        nb, c_out = layer.n_blocks, layer.channels
        # weights as rows of `lanes` output channels; padding lanes are zero
        wpad = np.zeros((nb * lanes,) + layer.weight.shape[1:], dtype=np.int64)
        wpad[:c_out] = layer.weight
        c, y, x, real = _input_coordinates(prev, layer.in_shape, lanes, layer.n_inputs_hw)
        layer.weight_base, layer.syn_base = n_wrows, n_syn
        starts = np.zeros(layer.n_inputs_hw, np.int64)
        counts = np.zeros(layer.n_inputs_hw, np.int64)
        rows, wrows = [], []
        if layer.op == "conv":
            _, c_in, kh, kw = layer.weight.shape
            oh, ow = layer.out_shape[1:]
            # weight row ((ci*KH + ky)*KW + kx)*nb + block holds W[block*L + lane, ci, ky, kx]
            w_rows = wpad.reshape(nb, lanes, c_in, kh, kw).transpose(2, 3, 4, 0, 1).reshape(-1, lanes)
            for i in np.nonzero(real)[0]:
                starts[i] = n_syn + len(rows)
                for ky in range(kh):
                    for kx in range(kw):
                        ny, nx = y[i] + layer.padding - ky, x[i] + layer.padding - kx
                        if ny % layer.stride or nx % layer.stride:
                            continue
                        oy, ox = ny // layer.stride, nx // layer.stride
                        if not (0 <= oy < oh and 0 <= ox < ow):
                            continue
                        for block in range(nb):
                            rows.append(layer.state_base + (oy * ow + ox) * nb + block)
                            wrows.append(layer.weight_base + ((c[i] * kh + ky) * kw + kx) * nb + block)
                counts[i] = n_syn + len(rows) - starts[i]
        else:
            # the input of a linear layer is flattened in logical (C, H, W) order
            if prev is not None and len(prev.out_shape) == 3:
                logical = (c * prev.out_shape[1] + y) * prev.out_shape[2] + x
            else:
                logical = c
            n_real = int(real.sum())
            w_rows = wpad.T.reshape(-1, nb, lanes)  # [N_in, nb, lanes]
            order = np.nonzero(real)[0]
            w_rows = w_rows[logical[order]].reshape(-1, lanes)
            for k, i in enumerate(order):
                starts[i] = n_syn + len(rows)
                for block in range(nb):
                    rows.append(layer.state_base + block)
                    wrows.append(layer.weight_base + k * nb + block)
                counts[i] = nb
            assert len(w_rows) == n_real * nb
        layer.n_weight_rows, layer.n_synapses = len(w_rows), len(rows)
        n_wrows += len(w_rows)
        n_syn += len(rows)
        ptr_start.append(starts), ptr_count.append(counts)
        syn_row.append(np.asarray(rows, np.int64)), syn_wrow.append(np.asarray(wrows, np.int64))
        weight_rows.append(w_rows.astype(np.int64))
        # params: bias and thresholds per channel block
        bias = np.zeros(nb * lanes, np.int64)
        bias[:c_out] = layer.bias
        th = np.full((nb * lanes, arch.max_levels), never, np.int64)
        th[:c_out, :layer.levels] = layer.thresholds.T
        bias_rows.append(bias.reshape(nb, lanes)), th_rows.append(th.reshape(nb, lanes, arch.max_levels))
        prev = layer
    descriptors = {
        "levels": np.array([l.levels for l in layers]),
        "shift": np.array([l.shift for l in layers]),
        "in_region": np.array([l.in_region for l in layers]),
        "out_region": np.array([l.out_region for l in layers]),
        "ptr_base": np.array([l.ptr_base for l in layers]),
        "state_base": np.array([l.state_base for l in layers]),
        "n_groups": np.array([l.n_groups for l in layers]),
        "param_base": np.array([l.param_base for l in layers]),
        "n_blocks": np.array([l.n_blocks for l in layers]),
    }
    return {
        "layers": descriptors,
        "pointers": {"start": np.concatenate(ptr_start), "count": np.concatenate(ptr_count)},
        "synapses": {"row": np.concatenate(syn_row), "wrow": np.concatenate(syn_wrow)},
        "weights": {"w": np.concatenate(weight_rows)},
        "params": {"bias": np.concatenate(bias_rows), "threshold": np.concatenate(th_rows)},
    }


def check_capacity(layers, memories: dict, arch: ArchConfig, n_inputs: int) -> None:
    """Pass ``check_capacity``: a network too large for the configured memories is rejected by name."""
    mem = arch.memories
    need = {
        "layers": len(layers), "pointers": len(memories["pointers"]["start"]),
        "synapses": len(memories["synapses"]["row"]), "weights": len(memories["weights"]["w"]),
        "params": len(memories["params"]["bias"]), "state": sum(l.n_groups for l in layers),
        "inputs": n_inputs,
    }
    for name, used in need.items():
        if used > getattr(mem, name):
            culprit = layers[-1].name
            for layer in layers:  # name the first layer whose tables cross the limit
                end = {"pointers": layer.ptr_base + layer.n_inputs_hw, "synapses": layer.syn_base + layer.n_synapses,
                       "weights": layer.weight_base + layer.n_weight_rows, "params": layer.param_base + layer.n_blocks,
                       "state": layer.state_base + layer.n_groups}.get(name, used)
                if end > getattr(mem, name):
                    culprit = layer.name
                    break
            raise UserError(f"layer {culprit}: the network needs {used} words of memory '{name}' "
                            f"but the configuration has memories.{name} = {getattr(mem, name)}")
    for layer in layers:
        if layer.fires and layer.n_groups * arch.lanes > mem.events:
            raise UserError(f"layer {layer.name}: up to {layer.n_groups * arch.lanes} events per timestep exceed "
                            f"memories.events = {mem.events}")
    if n_inputs > mem.events:
        raise UserError(f"layer {layers[0].name}: {n_inputs} inputs exceed memories.events = {mem.events}")
    max_index = max(max(l.n_inputs_hw for l in layers), max(l.n_groups for l in layers) * arch.lanes)
    if max_index > (1 << arch.neuron_index_bits):
        raise UserError(f"program: neuron index {max_index} does not fit {arch.neuron_index_bits} bits")


def validate_program(program: Program, arch: ArchConfig, source: str) -> None:
    """Check a loaded Program against the configuration: same hardware, every parameter and every memory
    word within its width (a hand-edited or corrupted program is rejected naming the layer or memory)."""
    program.check_arch(arch, source)
    try:
        check_ranges(program.layers, arch, program.input_max, program.timesteps)
    except UserError as exc:
        raise UserError(f"{source}: {exc}") from None
    layouts = all_layouts(arch)
    for name, columns in program.memories.items():
        try:
            layouts[name].pack(**columns)
        except OverflowError as exc:
            raise UserError(f"{source}: memory '{name}': {exc}") from None
        except (KeyError, ValueError) as exc:
            raise UserError(f"{source}: memory '{name}' has malformed columns ({exc})") from None
    check_capacity(program.layers, program.memories, arch, program.n_inputs)


def unsupported_layer(net) -> str:
    """The first layer (in module order) of a non-digits network that the compiler cannot map yet, as
    ``"layer NAME (Type)"``: convolutions, linear layers, tdBN/BN and MLF-family neurons are known; any
    other module (residual blocks, pooling, ...) is not; a network of known layers only is still not a
    supported topology."""
    from torch import nn

    from models.blocks import TimeDistributed
    from models.neurons import MLF
    from models.tdbn import TdBN

    known = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, TdBN, MLF)

    def walk(module, prefix):
        for name, child in module.named_children():
            full = f"{prefix}{name}"
            inner = child.module if isinstance(child, TimeDistributed) else child
            if isinstance(inner, (nn.Sequential, nn.ModuleList)):
                found = walk(inner, f"{full}.")
                if found:
                    return found
            elif not isinstance(inner, known):
                return f"layer {full} ({type(inner).__name__})"
        return None

    return walk(net, "") or f"network {type(net).__name__}"


def compile_network(net: DigitsNet, arch: ArchConfig, meta: dict | None = None) -> Program:
    """Run every pass and return the Program."""
    if not isinstance(net, DigitsNet):
        raise UserError(f"{unsupported_layer(net)}: not supported by the compiler yet "
                        f"(it compiles the digits network only)")
    timesteps = net.config["timesteps"]
    input_max = int(net.input_scale)
    layers = to_program_layers(net, arch)
    check_ranges(layers, arch, input_max, timesteps)
    n_inputs = int(np.prod(layers[0].in_shape))
    allocate(layers, arch, n_inputs)
    memories = build_tables(layers, arch)
    check_capacity(layers, memories, arch, n_inputs)
    return Program(arch_fingerprint=arch.fingerprint(), timesteps=timesteps, input_shape=layers[0].in_shape,
                   input_max=input_max, layers=layers, memories=memories, meta=dict(meta or {}))
