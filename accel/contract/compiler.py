"""The compiler: trained network -> Program, as a list of named passes (:data:`PASSES`).

``lower`` (network -> float stage graph, :mod:`spikecore.accel.contract.lowering`) -> ``quantize`` (fold, fixed point,
thresholds, leak as shift, :mod:`spikecore.accel.contract.quantize`) -> ``check_ranges`` (bound every register statically:
accumulators, event values, gate inputs) -> ``allocate`` (one core pass per source, event regions by
liveness, accumulator/state/parameter rows) -> ``build_tables`` (fan-out pointers, synapse rows, shared
weight rows, parameter rows, pass descriptors) -> ``check_capacity`` (every table fits its memory).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from torch import nn

from spikecore.accel.contract.config import ArchConfig
from spikecore.errors import UserError
from spikecore.accel.contract.layouts import HARDWARE_KIND, KIND_NEURON, REGION_INPUT, all_layouts
from spikecore.accel.contract.lowering import PIXELS, lower
from spikecore.accel.contract.program import MEMORY_NAMES, Program, ProgramLayer, ProgramSource
from spikecore.accel.contract.quantize import quantize_graph


def _signed_range(bits: int):
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _fan_in_bound(src: ProgramSource) -> np.ndarray:
    """Per output channel: sum of |w| over one output neuron's inputs."""
    return np.abs(src.weight).reshape(src.weight.shape[0], -1).sum(1)


def value_bounds(layers, input_max: int) -> tuple:
    """Static bounds of every stage: ``(largest event value, largest |accumulator|)`` per stage."""
    values, accs = [], []
    for layer in layers:
        acc = np.zeros(layer.channels)
        for src in layer.sources:
            peak = input_max if src.input == PIXELS else values[src.input]
            acc = acc + (np.full(layer.channels, peak) if layer.kind == "max" else _fan_in_bound(src) * peak)
        if layer.carry is not None:
            acc = acc + accs[layer.carry]
        accs.append(acc)
        if layer.kind == "neuron":
            values.append(layer.levels)
        elif layer.kind == "gate":
            values.append(1)
        elif layer.kind in ("sum", "max"):
            values.append(int((acc + np.maximum(layer.bias, 0)).max()))
        else:
            values.append(0)
    return values, [int(a.max()) for a in accs]


def check_ranges(layers, arch: ArchConfig, input_max: int, timesteps: int) -> None:
    """Pass ``check_ranges``: widths of every parameter and the bounds of docs/numerics.md."""
    if input_max > (1 << arch.input_bits) - 1:
        raise UserError(f"layer {layers[0].name}: input values up to {input_max} do not fit input_bits = {arch.input_bits}")
    if timesteps > arch.max_timesteps:
        raise UserError(f"program: T = {timesteps} exceeds max_timesteps = {arch.max_timesteps}")
    if not layers or layers[-1].kind != "readout" or any(l.kind == "readout" for l in layers[:-1]):
        raise UserError("program: the last layer, and only it, must be the readout (classifier)")
    w_lo, w_hi = _signed_range(arch.weight_bits)
    m_lo, m_hi = _signed_range(arch.membrane_bits)
    acc_hi = _signed_range(arch.acc_bits)[1]
    value_max = (1 << arch.value_bits) - 1
    values, accs = value_bounds(layers, input_max)
    for i, layer in enumerate(layers):
        if layer.levels > arch.max_levels:
            raise UserError(f"layer {layer.name}: {layer.levels} levels exceed max_levels = {arch.max_levels}")
        if not layer.sources:
            raise UserError(f"layer {layer.name}: has no synaptic input")
        for src in layer.sources:
            if src.weight.size and (src.weight.min() < w_lo or src.weight.max() > w_hi):
                raise UserError(f"layer {layer.name}: a weight in [{src.weight.min()}, {src.weight.max()}] "
                                f"overflows {arch.weight_bits} bits")
            if src.input != PIXELS and not 0 <= src.input < i:
                raise UserError(f"layer {layer.name}: reads layer {src.input}, which does not run before it")
        for what, arr in (("bias", layer.bias), ("threshold", layer.thresholds)):
            if arr.size and (arr.min() < m_lo or arr.max() > m_hi):
                raise UserError(f"layer {layer.name}: a {what} in [{arr.min()}, {arr.max()}] overflows "
                                f"{arch.membrane_bits} bits")
        if layer.carry is not None and not (0 <= layer.carry < i and layers[layer.carry].kind == "neuron"):
            raise UserError(f"layer {layer.name}: membrane shortcut from layer {layer.carry}, not an earlier neuron")
        if accs[i] > acc_hi:
            raise UserError(f"layer {layer.name}: accumulator bound {accs[i]} (sum |w| * max input) "
                            f"overflows acc_bits = {arch.acc_bits}; widen acc_bits or reduce the fan-in")
        if layer.kind == "sum" and values[i] > value_max:
            raise UserError(f"layer {layer.name}: sums up to {values[i]} do not fit event values of "
                            f"{arch.value_bits} bits; widen input_bits")
        if layer.kind == "max":
            check_max_stage(layer, arch)
        if layer.kind == "gate":
            if any(src.input == PIXELS or values[src.input] != 1 for src in layer.sources):
                raise UserError(f"layer {layer.name}: a logic join needs binary inputs (neurons with K = 1 or gates)")
            if any(src.weight.min() < 0 for src in layer.sources) or accs[i] >= 8 or layer.truth_table & 1:
                raise UserError(f"layer {layer.name}: gate index out of 0..7, or a table that fires on no input")


def check_max_stage(layer, arch: ArchConfig) -> None:
    """A ``max`` stage (max pooling of multi-valued events, ``docs/numerics.md``) needs the core's comparators
    (``max_pool``), one convolution source whose weights are 0 or 1 (they select the window), no bias and no
    membrane shortcut; otherwise :class:`UserError` naming the layer."""
    if not arch.max_pool:
        raise UserError(f"layer {layer.name}: max pooling of multi-valued events needs the comparators of "
                        f"'max_pool: true' in the architecture")
    weights = layer.sources[0].weight if len(layer.sources) == 1 else None
    if weights is None or layer.sources[0].op != "conv" or not np.isin(weights, (0, 1)).all() \
            or np.any(layer.bias != 0) or layer.carry is not None:
        raise UserError(f"layer {layer.name}: a max stage has one convolution source of weights 0 or 1 (its "
                        f"window), no bias and no membrane shortcut")


def _free_region(live: dict, arch: ArchConfig, layer: ProgramLayer) -> int:
    for region in range(1, arch.event_regions):
        if region not in live.values():
            return region
    raise UserError(f"layer {layer.name}: needs {len(live) + 2} event regions at once, the configuration has "
                    f"event_regions = {arch.event_regions}")


def allocate(layers, arch: ArchConfig, n_inputs: int) -> None:
    """Pass ``allocate``: one pass per source; event regions by liveness; memory bases of each stage."""
    lanes = arch.lanes
    last_use = {}
    for i, layer in enumerate(layers):
        for src in layer.sources:
            last_use[src.input] = i
    carried = {layer.carry for layer in layers if layer.carry is not None}
    live = {}                      # producing stage -> region, while a later stage still reads it
    ptr = acc = state = param = passes = 0
    for i, layer in enumerate(layers):
        layer.n_blocks = math.ceil(layer.channels / lanes)
        layer.n_groups = layer.positions * layer.n_blocks
        for src in layer.sources:
            producer = None if src.input == PIXELS else layers[src.input]
            src.pass_index, passes = passes, passes + 1
            src.in_region = REGION_INPUT if producer is None else live[src.input]
            src.n_inputs_hw = n_inputs if producer is None else producer.n_groups * lanes
            src.ptr_base, ptr = ptr, ptr + src.n_inputs_hw
        layer.out_region = _free_region(live, arch, layer)
        live = {p: r for p, r in live.items() if last_use.get(p, -1) > i}
        if i in last_use:
            live[i] = layer.out_region
        if layer.carry is not None:
            layer.acc_base = layers[layer.carry].acc_base
        else:
            layer.acc_base, acc = acc, acc + layer.n_groups
        layer.clear_acc = i not in carried
        if layer.has_state:
            layer.state_base, state = state, state + layer.n_groups
        layer.param_base, param = param, param + layer.n_blocks


def _input_coordinates(producer: ProgramLayer | None, in_shape, lanes: int, n_hw: int):
    """For each hardware input index: logical (channel, y, x) and whether it is a real neuron."""
    idx = np.arange(n_hw)
    if producer is None and len(in_shape) == 1:  # a flat input vector: every input is a channel
        return idx, np.zeros_like(idx), np.zeros_like(idx), np.ones(n_hw, bool)
    if producer is None:  # pixels, logical order
        c, rest = np.divmod(idx, in_shape[1] * in_shape[2])
        y, x = np.divmod(rest, in_shape[2])
        return c, y, x, np.ones(n_hw, bool)
    group, lane = np.divmod(idx, lanes)
    q, block = np.divmod(group, producer.n_blocks)
    c = block * lanes + lane
    if len(producer.out_shape) == 3:
        y, x = np.divmod(q, producer.out_shape[2])
    else:
        y = x = np.zeros_like(q)
    return c, y, x, c < producer.channels


def _source_tables(src: ProgramSource, layer: ProgramLayer, producer, lanes: int):
    """Fan-out of every producer index: ``(starts, counts)`` relative to the source's first synapse, the
    synapse rows ``(acc row, local weight row)`` and the local weight rows ``[R, lanes]``. All-zero weight
    rows (other channel blocks of an identity, for example) get no synapse: the core skips them."""
    nb = layer.n_blocks
    wpad = np.zeros((nb * lanes,) + src.weight.shape[1:], dtype=np.int64)
    wpad[:layer.channels] = src.weight
    c, y, x, real = _input_coordinates(producer, src.in_shape, lanes, src.n_inputs_hw)
    starts = np.zeros(src.n_inputs_hw, np.int64)
    counts = np.zeros(src.n_inputs_hw, np.int64)
    rows, wrows = [], []
    if src.op == "conv":
        _, c_in, kh, kw = src.weight.shape
        oh, ow = layer.out_shape[1:]
        # local weight row ((ci*KH + ky)*KW + kx)*nb + block holds W[block*L + lane, ci, ky, kx]
        w_rows = wpad.reshape(nb, lanes, c_in, kh, kw).transpose(2, 3, 4, 0, 1).reshape(-1, lanes)
        nonzero = np.any(w_rows != 0, axis=1)
        for i in np.nonzero(real)[0]:
            starts[i] = len(rows)
            for ky in range(kh):
                for kx in range(kw):
                    ny, nx = y[i] + src.padding - ky, x[i] + src.padding - kx
                    if ny % src.stride or nx % src.stride:
                        continue
                    oy, ox = ny // src.stride, nx // src.stride
                    if not (0 <= oy < oh and 0 <= ox < ow):
                        continue
                    for block in range(nb):
                        wrow = ((c[i] * kh + ky) * kw + kx) * nb + block
                        if nonzero[wrow]:
                            rows.append(layer.acc_base + (oy * ow + ox) * nb + block)
                            wrows.append(wrow)
            counts[i] = len(rows) - starts[i]
    else:
        # the input of a linear map is flattened in logical (C, H, W) order
        if producer is not None and len(producer.out_shape) == 3:
            logical = (c * producer.out_shape[1] + y) * producer.out_shape[2] + x
        elif producer is None and len(src.in_shape) == 3:
            logical = (c * src.in_shape[1] + y) * src.in_shape[2] + x
        else:
            logical = c
        w_rows = wpad.T.reshape(-1, nb, lanes)  # [N_in, nb, lanes]
        for i in np.nonzero(real)[0]:
            starts[i] = len(rows)
            for block in range(nb):
                if np.any(w_rows[logical[i], block]):
                    rows.append(layer.acc_base + block)
                    wrows.append(logical[i] * nb + block)
            counts[i] = len(rows) - starts[i]
        w_rows = w_rows.reshape(-1, lanes)
    return starts, counts, rows, wrows, w_rows


def build_tables(layers, arch: ArchConfig) -> dict:
    """Pass ``build_tables``: memory columns of every memory (see accel/contract/layouts.py).

    Weight rows are shared: identical rows (across positions, layers and sources) are stored once.
    """
    lanes = arch.lanes
    ptr_start, ptr_count, syn_row, syn_wrow, weight_rows = [], [], [], [], []
    bias_rows, th_rows, descriptors = [], [], []
    never = _signed_range(arch.membrane_bits)[1]
    n_syn = n_wrows = 0
    for layer in layers:
        for k, src in enumerate(layer.sources):
            producer = None if src.input == PIXELS else layers[src.input]
            starts, counts, rows, wrows, w_rows = _source_tables(src, layer, producer, lanes)
            src.syn_base, src.n_synapses = n_syn, len(rows)
            ptr_start.append(starts + n_syn), ptr_count.append(counts)
            syn_row.append(np.asarray(rows, np.int64)), syn_wrow.append(np.asarray(wrows, np.int64) + n_wrows)
            weight_rows.append(w_rows.astype(np.int64))
            n_syn += len(rows)
            n_wrows += len(w_rows)
            update = k == len(layer.sources) - 1
            descriptors.append({
                "kind": HARDWARE_KIND[layer.kind], "update": int(update), "clear_acc": int(layer.clear_acc),
                "levels": layer.levels, "shift": layer.shift, "truth_table": layer.truth_table,
                "in_region": src.in_region, "out_region": layer.out_region, "ptr_base": src.ptr_base,
                "acc_base": layer.acc_base, "state_base": layer.state_base, "n_groups": layer.n_groups,
                "param_base": layer.param_base, "n_blocks": layer.n_blocks,
            })
        nb, c_out = layer.n_blocks, layer.channels
        bias = np.zeros(nb * lanes, np.int64)
        bias[:c_out] = layer.bias
        th = np.full((nb * lanes, arch.max_levels), never, np.int64)
        th[:c_out, :layer.levels] = layer.thresholds.T
        bias_rows.append(bias.reshape(nb, lanes)), th_rows.append(th.reshape(nb, lanes, arch.max_levels))
    syn_wrow = np.concatenate(syn_wrow)
    used = np.unique(syn_wrow)
    shared, inverse = np.unique(np.concatenate(weight_rows)[used], axis=0, return_inverse=True)
    remap = np.zeros(n_wrows, np.int64)
    remap[used] = inverse.reshape(-1)
    return {
        "layers": {key: np.array([d[key] for d in descriptors]) for key in descriptors[0]},
        "pointers": {"start": np.concatenate(ptr_start), "count": np.concatenate(ptr_count)},
        "synapses": {"row": np.concatenate(syn_row), "wrow": remap[syn_wrow]},
        "weights": {"w": shared.astype(np.int64).reshape(-1, lanes)},
        "params": {"bias": np.concatenate(bias_rows), "threshold": np.concatenate(th_rows)},
    }


def check_capacity(layers, memories: dict, arch: ArchConfig, n_inputs: int) -> None:
    """Pass ``check_capacity``: a network too large for the configured memories is rejected by name."""
    mem = arch.memories
    sources = [src for layer in layers for src in layer.sources]
    owner = {id(src): layer for layer in layers for src in layer.sources}
    ends = {  # memory -> [(end of a stage's or pass's use, stage)]
        "layers": [(src.pass_index + 1, owner[id(src)]) for src in sources],
        "pointers": [(src.ptr_base + src.n_inputs_hw, owner[id(src)]) for src in sources],
        "synapses": [(src.syn_base + src.n_synapses, owner[id(src)]) for src in sources],
        "params": [(layer.param_base + layer.n_blocks, layer) for layer in layers],
        "state": [(layer.acc_base + layer.n_groups, layer) for layer in layers]
        + [(layer.state_base + layer.n_groups, layer) for layer in layers if layer.has_state],
    }
    if len(memories["weights"]["w"]) > mem.weights:  # shared rows: find the first pass that crosses the limit
        wrow = np.asarray(memories["synapses"]["wrow"])
        ends["weights"] = [(len(np.unique(wrow[:src.syn_base + src.n_synapses])), owner[id(src)])
                           for src in sources]
    for name, uses in ends.items():
        limit = getattr(mem, name)
        over = [(end, layer) for end, layer in uses if end > limit]
        if over:
            used = max(end for end, _ in uses)
            raise UserError(f"layer {over[0][1].name}: the network needs {used} words of memory '{name}' "
                            f"but the configuration has memories.{name} = {limit}")
    # an event_input core's inputs memory and region 0 hold an inference's input events, checked per input
    # (spikecore.accel.contract.inputs.check_frames): a frame may have more pixels than either
    if n_inputs > mem.inputs and not arch.event_input:
        raise UserError(f"layer {layers[0].name}: {n_inputs} inputs exceed memories.inputs = {mem.inputs}")
    for layer in layers:
        if layer.fires and layer.n_groups * arch.lanes > mem.events:
            raise UserError(f"layer {layer.name}: up to {layer.n_groups * arch.lanes} events per timestep exceed "
                            f"memories.events = {mem.events}")
    if n_inputs > mem.events and not arch.event_input:
        raise UserError(f"layer {layers[0].name}: {n_inputs} inputs exceed memories.events = {mem.events}")
    max_index = max(max(src.n_inputs_hw for src in sources), max(l.n_groups for l in layers) * arch.lanes)
    if max_index > (1 << arch.neuron_index_bits):
        raise UserError(f"program: neuron index {max_index} does not fit {arch.neuron_index_bits} bits")


def validate_program(program: Program, arch: ArchConfig, source: str) -> None:
    """Check a loaded Program against the configuration before anything runs it: same hardware, every
    parameter and every memory word within its width, the layer records laid out for these lanes, every table
    within its memory, and every table entry pointing inside the table it indexes (pointers into the synapse
    table, synapse rows into the weight table and the accumulator rows, pass descriptors into the event
    regions, pointers, accumulator, state and parameter rows), so that the simulator and the core only ever
    read inside their memories.

    Parameters
    ----------
    program : Program
    arch : ArchConfig
    source : str
        The Program directory, for messages.

    Raises
    ------
    UserError
        One line naming the directory, its ``manifest.json`` or ``arrays.npz``, and the layer, memory or field.
    """
    program.check_arch(arch, source)
    try:
        check_ranges(program.layers, arch, program.input_max, program.timesteps)
    except UserError as exc:
        raise UserError(f"{source}: {exc}") from None
    arrays = Path(source) / "arrays.npz"
    _check_columns(program.memories, arch, arrays)
    for layer in program.layers:
        blocks = math.ceil(layer.channels / arch.lanes)
        if (layer.n_blocks, layer.n_groups) != (blocks, layer.positions * blocks):
            raise UserError(f"{Path(source) / 'manifest.json'}: layer {layer.name}: n_blocks = {layer.n_blocks} and "
                            f"n_groups = {layer.n_groups} do not lay out {layer.channels} channels at "
                            f"{layer.positions} positions on {arch.lanes} lanes (expected {blocks} and "
                            f"{layer.positions * blocks})")
    check_capacity(program.layers, program.memories, arch, program.n_inputs)
    _check_references(program, arch, arrays)


def _column_shapes(arch: ArchConfig) -> dict:
    """Memory -> column -> the shape of one record as a Program stores it (a params record is a whole channel
    block, which the core's params memory holds as ``update_steps`` words)."""
    shapes = {name: {f.name: f.shape for f in layout.fields} for name, layout in all_layouts(arch).items()
              if name in MEMORY_NAMES}
    shapes["params"] = {"bias": (arch.lanes,), "threshold": (arch.lanes, arch.max_levels)}
    return shapes


def _first(bad: np.ndarray):
    """Index of the first record where ``bad`` is true (over its leading axis), or None."""
    where = np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1)) if bad.size else []
    return int(where[0]) if len(where) else None


def _check_columns(memories: dict, arch: ArchConfig, arrays: Path) -> None:
    """Every memory's columns: the fields of its layout, of their record shape, values within the field's
    width, and no more records than the memory has words (params: channel blocks)."""
    layouts, shapes = all_layouts(arch), _column_shapes(arch)
    for name in MEMORY_NAMES:
        columns, expected = memories[name], shapes[name]
        if sorted(columns) != sorted(expected):
            raise UserError(f"{arrays}: memory '{name}' has the columns {', '.join(sorted(columns))}, this configuration's "
                            f"has {', '.join(sorted(expected))}")
        for column in layouts[name].fields:
            values = columns[column.name]
            if values.shape[1:] != expected[column.name]:
                raise UserError(f"{arrays}: mem.{name}.{column.name} has records of shape {list(values.shape[1:])}, "
                                f"expected {list(expected[column.name])}")
            lo, hi = (-(1 << (column.width - 1)), (1 << (column.width - 1)) - 1) if column.signed \
                else (0, (1 << column.width) - 1)
            outside = (values < lo) | (values > hi)
            record = _first(outside)
            if record is not None:
                value = values[record].reshape(-1)[np.argmax(outside[record].reshape(-1))]
                raise UserError(f"{arrays}: mem.{name}.{column.name}[{record}] = {int(value)} is outside [{lo}, {hi}] "
                                f"({column.width} bits in this configuration)")
        records = len(next(iter(columns.values())))
        depth = getattr(arch.memories, name)
        if records > depth:
            raise UserError(f"{arrays}: memory '{name}' has {records} records, the configuration has "
                            f"memories.{name} = {depth}")


def _check_references(program: Program, arch: ArchConfig, arrays: Path) -> None:
    """Every table entry points inside the table it indexes (see :func:`validate_program`)."""
    mem, lanes, state_rows = program.memories, arch.lanes, program.state_rows
    rows = {name: len(next(iter(mem[name].values()))) for name in MEMORY_NAMES}
    start, count = mem["pointers"]["start"], mem["pointers"]["count"]
    bad = _first(start + count > rows["synapses"])
    if bad is not None:
        raise UserError(f"{arrays}: mem.pointers.start[{bad}] = {int(start[bad])} with count {int(count[bad])} points "
                        f"past the end of the synapses table ({rows['synapses']} rows)")
    for column, limit, what in (("wrow", rows["weights"], "the weights table"),
                                ("row", state_rows, "the accumulator rows the program uses")):
        values = mem["synapses"][column]
        bad = _first(values >= limit)
        if bad is not None:
            raise UserError(f"{arrays}: mem.synapses.{column}[{bad}] = {int(values[bad])} points past the end of "
                            f"{what} ({limit} rows)")
    passes = [(layer, j) for layer in program.layers for j in range(len(layer.sources))]
    if rows["layers"] != len(passes):
        raise UserError(f"{arrays}: memory 'layers' holds {rows['layers']} pass descriptors, the program's layers have "
                        f"{len(passes)} passes")
    field = {key: [int(v) for v in values] for key, values in mem["layers"].items()}  # one value per pass

    def fail(key: str, p: int, message: str) -> UserError:
        layer = passes[p][0]
        return UserError(f"{arrays}: mem.layers.{key}[{p}] = {field[key][p]} (pass {p}, layer {layer.name}): {message}")

    # the events a pass reads: of the input region at first, then of the last pass that wrote its region
    last_writer = {field["out_region"][p]: p for p in range(len(passes)) if field["update"][p]}
    written = {}
    for p, (layer, j) in enumerate(passes):
        if field["update"][p] != int(j == len(layer.sources) - 1):
            raise fail("update", p, "only the last pass of a layer updates it")
        for key in ("in_region", "out_region"):
            if field[key][p] >= arch.event_regions:
                raise fail(key, p, f"there are event_regions = {arch.event_regions} regions")
        region = field["in_region"][p]
        if region in written:
            writers = [written[region]]
        elif region == REGION_INPUT:
            writers = [None] + ([last_writer[region]] if region in last_writer else [])
        else:
            raise fail("in_region", p, "no earlier pass writes this event region")
        for writer in writers:
            width = program.n_inputs if writer is None else field["n_groups"][writer] * lanes
            if field["ptr_base"][p] + width > rows["pointers"]:
                raise fail("ptr_base", p, f"the pointers of its {width} input neurons run past the end of the "
                                          f"pointers table ({rows['pointers']} rows)")
        if not field["update"][p]:
            continue
        written[field["out_region"][p]] = p
        groups = field["n_groups"][p]
        checks = [("levels", field["levels"][p] <= arch.max_levels, f"max_levels is {arch.max_levels}"),
                  ("n_blocks", field["n_blocks"][p] >= 1, "an update reads at least one channel block"),
                  ("acc_base", field["acc_base"][p] + groups <= state_rows,
                   f"its {groups} accumulator rows run past the {state_rows} rows the program uses"),
                  ("state_base", field["kind"][p] != KIND_NEURON or field["state_base"][p] + groups <= state_rows,
                   f"its {groups} state rows run past the {state_rows} rows the program uses"),
                  ("param_base", field["param_base"][p] + min(field["n_blocks"][p], groups) <= rows["params"],
                   f"its parameter rows run past the end of the params table ({rows['params']} rows)")]
        for key, good, message in checks:
            if not good:
                raise fail(key, p, message)


@dataclass
class Compilation:
    """What the passes read and write: the inputs first, then each pass's result in pass order."""

    net: nn.Module | None
    arch: ArchConfig
    input_shape: tuple
    input_divisor: float
    input_max: int
    meta: dict = field(default_factory=dict)
    graph: object = None            # lower: the float stage graph
    layers: list | None = None      # quantize: the Program's stages, memory layout still empty
    timesteps: int | None = None
    memories: dict | None = None    # build_tables: the memory columns


def lower_pass(c: Compilation) -> None:
    c.graph = lower(c.net, c.input_shape, c.input_divisor)
    c.timesteps = c.graph.timesteps


def quantize_pass(c: Compilation) -> None:
    stages, scales = quantize_graph(c.graph, c.arch)
    c.layers = []
    for stage, scale in zip(stages, scales):
        sources = [ProgramSource(input=src.input, op=src.op, weight=src.weight.numpy(),
                                 in_shape=tuple(c.graph.shape_of(src.input)), stride=src.stride, padding=src.padding)
                   for src in stage.sources]
        c.layers.append(ProgramLayer(name=stage.name, kind=stage.kind, sources=sources, out_shape=stage.out_shape,
                                     bias=stage.bias.numpy(), thresholds=stage.thresholds.numpy(),
                                     scale=scale.numpy().astype(np.float64), shift=stage.shift,
                                     truth_table=stage.truth_table, carry=stage.carry))


def check_ranges_pass(c: Compilation) -> None:
    check_ranges(c.layers, c.arch, c.input_max, c.timesteps)


def allocate_pass(c: Compilation) -> None:
    allocate(c.layers, c.arch, int(np.prod(c.input_shape)))


def build_tables_pass(c: Compilation) -> None:
    c.memories = build_tables(c.layers, c.arch)


def check_capacity_pass(c: Compilation) -> None:
    check_capacity(c.layers, c.memories, c.arch, int(np.prod(c.input_shape)))


@dataclass(frozen=True)
class Pass:
    """One named step of the compiler."""

    name: str
    run: Callable[[Compilation], None]
    summary: str


#: The compiler's passes in order (docs/api.md lists them); a Program is what the last one leaves.
PASSES = (
    Pass("lower", lower_pass, "network -> float stage graph (spikecore.accel.contract.lowering)"),
    Pass("quantize", quantize_pass, "fold, fixed point, thresholds, leak as shift (spikecore.accel.contract.quantize)"),
    Pass("check_ranges", check_ranges_pass, "bound every register statically: accumulators, event values, gate inputs"),
    Pass("allocate", allocate_pass, "one core pass per source, event regions by liveness, state and parameter rows"),
    Pass("build_tables", build_tables_pass, "fan-out pointers, synapse rows, shared weight rows, parameter rows"),
    Pass("check_capacity", check_capacity_pass, "every table fits its memory"),
)
#: The passes after quantization: what a hand-built list of integer stages goes through.
HARDWARE_PASSES = PASSES[2:]


def run_passes(c: Compilation, passes=PASSES) -> Program:
    """Run ``passes`` on ``c`` in order and return the Program."""
    for step in passes:
        step.run(c)
    return Program(arch_fingerprint=c.arch.fingerprint(), timesteps=c.timesteps, input_shape=tuple(c.input_shape),
                   input_max=c.input_max, layers=c.layers, memories=c.memories, meta=dict(c.meta))


def compile_stages(layers, arch: ArchConfig, timesteps: int, input_shape, input_max: int,
                   meta: dict | None = None) -> Program:
    """The hardware passes (:data:`HARDWARE_PASSES`) on quantized stages built by hand."""
    c = Compilation(None, arch, tuple(input_shape), float(input_max), input_max, dict(meta or {}), layers=layers,
                    timesteps=timesteps)
    return run_passes(c, HARDWARE_PASSES)


def compile_network(net: nn.Module, arch: ArchConfig, meta: dict | None = None, input_shape=None,
                    input_max: int | None = None) -> Program:
    """Run every pass (:data:`PASSES`) and return the Program.

    ``input_shape`` (default: the network's ``input_shape``) is the integer pixel image ``(C, H, W)``;
    the network sees ``pixels / input_scale`` (``net.input_scale``, the largest pixel value unless
    ``input_max`` says otherwise). A network trained on event frames (``net.input_encoding == "events"``)
    needs a core with ``event_input``; its counts range up to ``2**input_bits - 1`` and the Program's
    ``meta["input"]`` records how its frames are binned.
    """
    divisor = float(getattr(net, "input_scale", 1.0))
    if input_shape is None and getattr(net, "input_refused", None):
        raise UserError(f"network {type(net).__name__}: {net.input_refused}")
    if input_shape is None and not hasattr(net, "input_shape"):
        raise UserError(f"network {type(net).__name__}: its integer input is unknown (networks trained on the "
                        f"digits pixels compile; give input_shape and input_scale for others)")
    input_shape = tuple(input_shape or net.input_shape)
    meta = dict(meta or {})
    if getattr(net, "input_encoding", None) == "events":
        if not arch.event_input:
            raise UserError(f"network {type(net).__name__}: trained on event frames (a different frame each "
                            f"timestep), which need a core with 'event_input: true'; architecture {arch.name} "
                            f"scans one image")
        # the counts enter as they are, clipped at the core's input range (docs/numerics.md, "Event input")
        input_max = (1 << arch.input_bits) - 1 if input_max is None else int(input_max)
        meta["input"] = {"encoding": "events", "dataset": getattr(net, "input_dataset", None)}
    input_max = int(divisor) if input_max is None else int(input_max)
    return run_passes(Compilation(net, arch, input_shape, divisor, input_max, meta))
