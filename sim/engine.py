"""Execution of a Program's memory tables, bit-exact and cycle-exact with the core.

The simulator reads the same memory columns the core's memories are loaded with (``Program.memories``)
and follows the schedule of ``docs/core.md``: input scan, then per timestep and pass (one per synaptic
source of a stage) the accumulate phase (the input events and their synapse rows) and, on a stage's
last pass, the update phase (one update per group of ``lanes`` neurons, then one emit per nonzero lane).

Two engines compute the same results (``docs/core.md``, "Simulator engines"):

- ``tables``: event by event, as the core does: each input event's pointer, its synapse rows, their
  weight rows scattered into the accumulators (vectorised with numpy; the order-dependence of the
  accumulation is excluded by the compiler's range proof, ``docs/numerics.md``).
- ``dense``: each pass's synapse tables are first *recognised* as the convolution or linear map they
  encode, which is checked against the tables with Freivalds' randomised test (a random integer input
  on every hardware index, including padding lanes, through the tables and through the map must give
  equal integers); the descriptors, event regions and accumulator rows are checked to follow the stage
  graph. The engine then runs stage by stage over all timesteps and a batch of images at once
  (layer-major, like the golden model): exact float32 convolutions where every partial sum is provably
  below 2**24 (float64 otherwise), the update phase on the descriptors' fields and the params memory,
  and the cycle and memory accounts from the pointer counts of the events that occurred. A program
  whose tables fail a check, or a batch where an accumulator would saturate, runs on ``tables``.

``engine="auto"`` (the default) takes ``dense`` wherever its checks pass.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from accel.config import ArchConfig
from accel.layouts import HARDWARE_KIND, KIND_GATE, KIND_NEURON, KIND_SUM, REGION_INPUT
from accel.program import Program
from models.hwexact import (FLOAT32_EXACT, GATE_INPUTS, Source, float32_exact, gate_step, linear_map,
                            neuron_step_int, sum_step, weight_bound)

ENGINES = ("auto", "dense", "tables")


@dataclass
class LayerAccount:
    """Cycle-level account of one layer, summed over timesteps (and samples when aggregated)."""

    name: str
    cycles: int = 0
    accumulate_cycles: int = 0
    update_cycles: int = 0
    input_events: int = 0        # event words read (layer-major: one per input neuron and pass, all timesteps)
    synapse_rows: int = 0        # synapse rows fetched (a synapse and a weight word read each)
    acc_updates: int = 0         # accumulator rows added into (each `lanes` AC operations, `value` times);
                                 # = synapse_rows, except layer-major: one per timestep the input fired in
    ac_ops: int = 0              # lane additions performed (padding lanes included)
    output_events: int = 0
    neuron_updates: int = 0      # groups updated
    state_writes: int = 0        # groups whose membranes were written (neuron stages)
    acc_clears: int = 0          # accumulator rows cleared after an update
    steps: int = 0               # passes run (one descriptor read each)

    def add(self, other: "LayerAccount") -> None:
        for key in _ACCOUNT_FIELDS:
            setattr(self, key, getattr(self, key) + getattr(other, key))


@dataclass
class SimResult:
    """Outputs of one inference: events in hardware indices, logits, cycles, saturations."""

    events: list                  # [layer][t] -> (index array, value array), ascending index (the trace)
    logits: np.ndarray            # int64 [classes]
    state: np.ndarray             # int64 [state_rows, lanes, max_levels]: membranes at the end
    cycles: int
    setup_cycles: int
    layers: list = field(default_factory=list)   # LayerAccount per layer
    saturations: int = 0
    trace_count: int = 0                         # entries the core's trace memory holds after the run
    trace_overflow: bool = False
    engine: str = "tables"                       # the engine that computed it

    def differences(self, other: "SimResult", events: bool = True) -> list:
        """What differs from ``other`` (integers compared with equality): ``[]`` when the results agree on
        logits, final state, cycles, saturations, the trace count, every account and, with ``events``,
        every event."""
        found = [name for name in ("cycles", "setup_cycles", "saturations", "trace_count", "trace_overflow")
                 if getattr(self, name) != getattr(other, name)]
        found += [name for name in ("logits", "state") if not np.array_equal(getattr(self, name), getattr(other, name))]
        found += [f"account of {a.name}" for a, b in zip(self.layers, other.layers) if a != b]
        if events:
            for l, (mine, theirs) in enumerate(zip(self.events, other.events)):
                if len(mine) != len(theirs) or not all(np.array_equal(i1, i2) and np.array_equal(v1, v2)
                                                       for (i1, v1), (i2, v2) in zip(mine, theirs)):
                    found.append(f"events of layer {l}")
        return found

    def spikes(self, layer: int, size: int, timesteps: int) -> np.ndarray:
        """Dense spike counts ``[T, size]`` of a layer in hardware index order."""
        out = np.zeros((timesteps, size), np.int64)
        for t, (idx, val) in enumerate(self.events[layer]):
            out[t, idx] = val
        return out


def _saturate(v: np.ndarray, bits: int):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    clamped = np.clip(v, lo, hi)
    return clamped, int(np.count_nonzero(clamped != v))


def _popcount(v: np.ndarray) -> np.ndarray:
    count = np.zeros_like(v)
    v = v.copy()
    while np.any(v):
        count += v & 1
        v >>= 1
    return count


class _Tables:
    """The program's memory columns as numpy arrays, prepared once per program."""

    def __init__(self, program: Program):
        mem = program.memories
        self.desc = {k: np.asarray(v, np.int64) for k, v in mem["layers"].items()}
        self.ptr_start = np.asarray(mem["pointers"]["start"], np.int64)
        self.ptr_count = np.asarray(mem["pointers"]["count"], np.int64)
        self.syn_row = np.asarray(mem["synapses"]["row"], np.int64)
        self.syn_wrow = np.asarray(mem["synapses"]["wrow"], np.int64)
        self.weights = np.asarray(mem["weights"]["w"], np.int64)
        self.bias = np.asarray(mem["params"]["bias"], np.int64)
        self.thresholds = np.asarray(mem["params"]["threshold"], np.int64)
        # the stage (program layer) of each pass, for the per-layer accounts
        self.pass_stage = [i for i, layer in enumerate(program.layers) for _ in layer.sources]
        self._dense = None

    def dense(self, program: Program, arch: ArchConfig) -> "_DensePlan":
        """The dense engine's plan, built and checked against these tables on first use (per configuration)."""
        if self._dense is None or self._dense.arch != arch:
            self._dense = _DensePlan(program, arch, self)
        return self._dense


def _accumulate(tables: _Tables, p: int, idx: np.ndarray, val: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """The accumulate phase of pass ``p`` on input events ``(idx, val)``: adds every synapse row's weight
    row times the event value into ``acc [rows, lanes]`` in place; returns each event's synapse-row count."""
    lanes = acc.shape[1]
    ptr = tables.desc["ptr_base"][p] + idx
    start, count = tables.ptr_start[ptr], tables.ptr_count[ptr]
    total = int(count.sum())
    if total:
        offsets = np.repeat(start - np.cumsum(count) + count, count) + np.arange(total)
        rows, wrows = tables.syn_row[offsets], tables.syn_wrow[offsets]
        contrib = tables.weights[wrows] * np.repeat(val, count)[:, None]
        # a scatter-add of [rows, lanes]; bincount's float64 sums are exact for these integers
        flat = (rows[:, None] * lanes + np.arange(lanes)).reshape(-1)
        acc += np.bincount(flat, weights=contrib.reshape(-1), minlength=acc.size).reshape(acc.shape) \
            .astype(np.int64)
    return count


def _update(kind: int, x, state_rows, d, p, tables, block, arch: ArchConfig):
    """The update phase of one stage on its currents ``x [G, L]``: ``(values [G*L], saturations)``;
    neuron membranes ``state_rows [G, L, K]`` are updated in place."""
    if kind == KIND_NEURON:
        k = int(d["levels"][p])
        v, sat = _saturate((state_rows[:, :, :k] >> int(d["shift"][p])) + x[:, :, None], arch.membrane_bits)
        fired = v > tables.thresholds[block][:, :, :k]
        state_rows[:, :, :k] = np.where(fired, 0, v)
        return fired.sum(2).reshape(-1), sat
    if kind == KIND_SUM:
        value = np.clip(x, 0, (1 << arch.value_bits) - 1)
        return value.reshape(-1), int(np.count_nonzero(value != x))
    index = np.clip(x, 0, (1 << GATE_INPUTS) - 1)
    return ((int(d["truth_table"][p]) >> index) & 1).reshape(-1), int(np.count_nonzero(index != x))


_ACCOUNT_FIELDS = ("cycles", "accumulate_cycles", "update_cycles", "input_events", "synapse_rows", "acc_updates",
                   "ac_ops", "output_events", "neuron_updates", "state_writes", "acc_clears", "steps")


def update_cycles_of(n_groups: int, arch: ArchConfig, timesteps: int = 1) -> int:
    """Cycles of one pass's update phase before its events: one URD that ends it, and per group and
    timestep (all ``timesteps`` of the pass in the layer-major schedule, else one) ``update_steps`` steps of
    ``update_step_cycles`` (``docs/core.md``)."""
    return 1 + arch.update_step_cycles * arch.update_steps * n_groups * timesteps


def setup_cycles_of(program: Program, arch: ArchConfig) -> int:
    """Cycles of CLEAR (every used state word, ``update_steps`` per row, and accumulator word, ``acc_slots``
    per row, at once) and SCAN (``docs/core.md``)."""
    return program.state_rows * max(arch.update_steps, arch.acc_slots) + program.n_inputs + 1


def layer_major_accumulate_cycles(trains, train_rows, acc_updates, additions):
    """Cycles of a layer-major pass's accumulate phase (``docs/core.md``): per event word (a neuron's train)
    EV, PTR, FAN and the SYN that ends its rows; per synapse row one SYN; per timestep the input fired in a
    read of that timestep's accumulator word and the additions; one EV that finds no event left."""
    return 1 + 4 * trains + train_rows + acc_updates + additions


def _simulate_tables(program: Program, arch: ArchConfig, pixels, tables: _Tables, keep_events: bool) -> SimResult:
    """The ``tables`` engine: one inference, event by event."""
    lanes, levels_max = arch.lanes, arch.max_levels
    d = tables.desc
    n_passes, timesteps = len(tables.pass_stage), program.timesteps
    state_rows = program.state_rows
    acc = np.zeros((state_rows, lanes), np.int64)
    state = np.zeros((state_rows, lanes, levels_max), np.int64)
    pixels = np.asarray(pixels, np.int64).reshape(-1)
    bitserial = arch.multivalue == "bitserial"
    # CLEAR + SCAN
    setup_cycles = setup_cycles_of(program, arch)
    nz = np.nonzero(pixels)[0]
    region_events = {0: (nz, pixels[nz])}
    events = [[] for _ in program.layers]
    # accounts per pass, summed over timesteps; the layer-major schedule's from the trains each pass read and wrote
    passes = [LayerAccount(program.layers[stage].name) for stage in tables.pass_stage]
    trains_in = [np.zeros(0, np.int64) for _ in range(n_passes)]
    trains_out = [np.zeros(0, np.int64) for _ in range(n_passes)]
    saturations = 0
    acc_bits = arch.acc_bits
    for t in range(timesteps):
        for p in range(n_passes):
            stage = tables.pass_stage[p]
            a = LayerAccount(program.layers[stage].name, steps=1)
            idx, val = region_events[int(d["in_region"][p])]
            trains_in[p] = np.union1d(trains_in[p], idx)
            # accumulate phase
            count = _accumulate(tables, p, idx, val, acc)
            total = int(count.sum())
            additions = _popcount(val) if bitserial else val
            acc, sat = _saturate(acc, acc_bits)  # by the compiler's proof this never clamps
            saturations += sat
            a.input_events = len(idx)
            a.synapse_rows = a.acc_updates = total
            a.ac_ops = int((count * additions).sum()) * lanes
            a.accumulate_cycles = 1 + int((4 + count * (2 + additions)).sum())
            a.cycles = 2 + a.accumulate_cycles + 1
            if d["update"][p]:
                kind = int(d["kind"][p])
                n_groups = int(d["n_groups"][p])
                acc_rows = slice(int(d["acc_base"][p]), int(d["acc_base"][p]) + n_groups)
                state_base = int(d["state_base"][p])
                block = d["param_base"][p] + np.arange(n_groups) % d["n_blocks"][p]
                x = acc[acc_rows] + tables.bias[block]                              # [G, L]
                values, sat = _update(kind, x, state[state_base:state_base + n_groups], d, p, tables, block, arch)
                saturations += sat
                if d["clear_acc"][p]:
                    acc[acc_rows] = 0
                    a.acc_clears = n_groups
                out_idx = np.nonzero(values)[0]
                out_val = values[out_idx]
                region_events[int(d["out_region"][p])] = (out_idx, out_val)
                if keep_events:
                    events[stage].append((out_idx, out_val))
                trains_out[p] = np.union1d(trains_out[p], out_idx)
                a.output_events = len(out_idx)
                a.neuron_updates = n_groups
                a.state_writes = n_groups if kind == KIND_NEURON else 0
                a.update_cycles = update_cycles_of(n_groups, arch) + len(out_idx)
                a.cycles += a.update_cycles
            passes[p].add(a)
    accounts = [LayerAccount(layer.name) for layer in program.layers]
    for p, a in enumerate(passes):
        if arch.layer_major:
            ptr = d["ptr_base"][p] + trains_in[p]
            a = _layer_major_account(a, len(trains_in[p]), int(tables.ptr_count[ptr].sum()), len(trains_out[p]),
                                     int(d["n_groups"][p]) if d["update"][p] else None, timesteps, arch)
        accounts[tables.pass_stage[p]].add(a)
    emitted = sum(a.output_events for a in accounts)
    last = program.layers[-1]
    logit_rows = state[last.state_base:last.state_base + last.n_groups, :, 0].reshape(-1)
    logits = logit_rows[last.hw_index(lanes)]
    cycles = setup_cycles + sum(a.cycles for a in accounts)
    return SimResult(events=events, logits=logits, state=state, cycles=cycles, setup_cycles=setup_cycles,
                     layers=accounts, saturations=saturations, trace_count=min(emitted, arch.memories.trace),
                     trace_overflow=emitted > arch.memories.trace, engine="tables")


def _layer_major_account(a, trains, train_rows, trains_out, n_groups, timesteps: int, arch: ArchConfig):
    """The account of one pass in the layer-major schedule from its timestep-major account ``a`` (the
    same work, summed over timesteps), the event words it read (``trains``, with ``train_rows`` synapse
    rows) and wrote (``trains_out``), and its groups (``None`` without an update). Works on integers and on
    numpy arrays of them (one per image)."""
    additions = a.ac_ops // arch.lanes
    out = LayerAccount(a.name, input_events=trains, synapse_rows=train_rows, acc_updates=a.acc_updates,
                       ac_ops=a.ac_ops, neuron_updates=a.neuron_updates, state_writes=a.state_writes,
                       acc_clears=a.acc_clears, steps=a.steps // timesteps)
    out.accumulate_cycles = layer_major_accumulate_cycles(trains, train_rows, a.acc_updates, additions)
    if n_groups is not None:
        out.output_events = trains_out
        out.update_cycles = update_cycles_of(n_groups, arch, timesteps) + trains_out
    out.cycles = 3 + out.accumulate_cycles + out.update_cycles
    return out


def simulate(program: Program, arch: ArchConfig, pixels, tables: _Tables | None = None,
             keep_events: bool = True, engine: str = "auto") -> SimResult:
    """Run one inference of ``program`` on integer ``pixels`` (flat, ``program.n_inputs`` values).

    ``keep_events=False`` is the performance mode: logits, cycles, accounts and saturations only (the
    per-stage event lists, i.e. the full trace, are not kept). ``engine``: one of ``ENGINES`` (module
    docstring)."""
    return simulate_batch(program, arch, np.asarray(pixels).reshape(1, -1), tables=tables,
                          keep_events=keep_events, engine=engine)[0]


class DenseEngineUnsuitable(ValueError):
    """``engine="dense"`` was asked for a program whose tables are not convolutions it can run."""


def simulate_batch(program: Program, arch: ArchConfig, pixels_batch, progress=None, tables: _Tables | None = None,
                   keep_events: bool = True, engine: str = "auto", batch: int = 16) -> list:
    """Simulate several inferences (one per row of ``pixels_batch``), sharing the prepared tables; the
    dense engine takes ``batch`` images at a time. ``progress`` (a tqdm-like object) is advanced per image."""
    if engine not in ENGINES:
        raise ValueError(f"engine: expected one of {ENGINES}, got {engine!r}")
    program.check_arch(arch)
    tables = tables or _Tables(program)
    pixels_batch = np.asarray(pixels_batch, np.int64).reshape(len(pixels_batch), -1)
    plan = tables.dense(program, arch) if engine != "tables" else None
    if engine == "dense" and plan.reason:
        raise DenseEngineUnsuitable(f"the dense engine cannot run this program: {plan.reason}")
    results = []
    for begin in range(0, len(pixels_batch), batch):
        chunk = pixels_batch[begin:begin + batch]
        done = _simulate_dense(plan, chunk, keep_events) if plan is not None and not plan.reason else None
        if done is None:
            done = [_simulate_tables(program, arch, pixels, tables, keep_events) for pixels in chunk]
        results.extend(done)
        if progress is not None:
            progress.update(len(chunk))
    return results


class _DensePlan:
    """The dense engine's view of a program, checked against its tables; ``reason`` is None, or why the
    dense engine may not run the program.

    Events stay in the core's hardware layout throughout: a stage's output is ``[T, N, n_hw]`` with
    ``n_hw = positions * padded_channels`` (position-major, channels padded to whole lane groups), which
    is a channels-last image. Each source's weights are rearranged once into that layout (zero rows and
    columns for padding lanes), so convolutions run on channels-last views without any transposition
    and padding lanes get exactly the zero current they get in the core."""

    def __init__(self, program: Program, arch: ArchConfig, tables: _Tables):
        self.program, self.arch, self.tables = program, arch, tables
        self.reason = None
        try:
            self._check_structure()
            self.stages = [self._stage(i) for i in range(len(program.layers))]
            self._check_synapses()
        except _NotDense as exc:
            self.reason = str(exc)

    def _padded(self, stage: int) -> tuple:
        """``(channels, padded channels, spatial shape)`` of a stage's output."""
        layer = self.program.layers[stage]
        return layer.channels, layer.n_blocks * self.arch.lanes, tuple(layer.out_shape[1:])

    def hw_width(self, stage: int) -> int:
        """Hardware indices of a stage's output (padding lanes included), or of the pixels."""
        return self.program.n_inputs if stage < 0 else self.program.layers[stage].n_groups * self.arch.lanes

    def _hw_source(self, src) -> Source:
        """A source's map with its weights rearranged to act on and produce the hardware layout."""
        out_c, out_cb, _ = self._padded(self._stage_of_pass[src.pass_index])
        w = torch.from_numpy(src.weight)
        if src.op == "conv":
            w = torch.nn.functional.pad(w, (0, 0, 0, 0, 0, 0, 0, out_cb - out_c))
            if src.input >= 0:
                in_c, in_cb, _ = self._padded(src.input)
                w = torch.nn.functional.pad(w, (0, 0, 0, 0, 0, in_cb - in_c))
            return Source(src.input, "conv", w, src.stride, src.padding)
        w = torch.nn.functional.pad(w, (0, 0, 0, out_cb - out_c))
        if src.input >= 0:  # columns from logical (C, *spatial) order to (position, padded channel) order
            in_c, in_cb, spatial = self._padded(src.input)
            w = w.reshape(len(w), in_c, -1)
            w = torch.nn.functional.pad(w, (0, 0, 0, in_cb - in_c)).transpose(1, 2).reshape(len(w), -1)
        return Source(src.input, "linear", w)

    # -- checks ------------------------------------------------------------------------------------------
    def _check_structure(self) -> None:
        """Descriptors, event regions and accumulator rows follow the stage graph, over two timesteps."""
        program, d = self.program, self.tables.desc
        passes = [(i, j) for i, layer in enumerate(program.layers) for j in range(len(layer.sources))]
        self._stage_of_pass = [i for i, _ in passes]
        if len(d["kind"]) < len(passes):
            raise _NotDense("the layers memory holds fewer descriptors than passes")
        carried = {layer.carry: i for i, layer in enumerate(program.layers) if layer.carry is not None}
        regions = {REGION_INPUT: -1}
        holder = np.full(program.state_rows, -2)        # -2: clear; else the stage whose sums the row holds
        for _ in range(2):
            for p, (i, j) in enumerate(passes):
                layer, src = program.layers[i], program.layers[i].sources[j]
                if src.pass_index != p or regions.get(int(d["in_region"][p])) != src.input:
                    raise _NotDense(f"pass {p} ({layer.name}) does not read the events of stage {src.input}")
                if bool(d["update"][p]) != (j == len(layer.sources) - 1):
                    raise _NotDense(f"pass {p} ({layer.name}): update flag not on the stage's last pass")
                if j == 0:
                    rows = holder[layer.acc_base:layer.acc_base + layer.n_groups]
                    expect = -2 if layer.carry is None else layer.carry
                    if len(rows) != layer.n_groups or np.any(rows != expect):
                        raise _NotDense(f"{layer.name}: accumulator rows do not start from its carried sums")
                if j == len(layer.sources) - 1:
                    fields = {"acc_base": layer.acc_base, "n_groups": layer.n_groups, "n_blocks": layer.n_blocks,
                              "clear_acc": int(i not in carried), "kind": HARDWARE_KIND[layer.kind]}
                    for key, value in fields.items():
                        if int(d[key][p]) != value:
                            raise _NotDense(f"pass {p} ({layer.name}): descriptor field {key} is {int(d[key][p])}, "
                                            f"the stage graph needs {value}")
                    if layer.n_groups != layer.positions * layer.n_blocks:
                        raise _NotDense(f"{layer.name}: {layer.n_groups} lane groups for {layer.positions} "
                                        f"positions of {layer.n_blocks} blocks")
                    if i in carried and program.layers[carried[i]].acc_base != layer.acc_base:
                        raise _NotDense(f"{layer.name}: carried into rows other than its own")
                    holder[layer.acc_base:layer.acc_base + layer.n_groups] = -2 if i not in carried else i
                    regions[int(d["out_region"][p])] = i

    def _stage(self, i: int) -> dict:
        layer, d, tables = self.program.layers[i], self.tables.desc, self.tables
        p = layer.update_pass
        n_groups, levels = int(d["n_groups"][p]), int(d["levels"][p])
        block = int(d["param_base"][p]) + np.arange(n_groups) % int(d["n_blocks"][p])
        k = max(levels, 1)
        stage = {"kind": int(d["kind"][p]), "levels": levels, "shift": int(d["shift"][p]),
                 "truth_table": int(d["truth_table"][p]), "state_base": int(d["state_base"][p]),
                 "n_groups": n_groups, "carry": layer.carry, "sources": [],
                 "bias": torch.from_numpy(tables.bias[block].reshape(-1)),
                 "thresholds": torch.from_numpy(np.ascontiguousarray(
                     tables.thresholds[block][:, :, :k].reshape(-1, k).T))}
        for src in layer.sources:
            ptr = int(d["ptr_base"][src.pass_index]) + np.arange(self.hw_width(src.input))
            if ptr[-1] >= len(tables.ptr_count):
                raise _NotDense(f"{layer.name}: pointers beyond the pointers memory")
            count = tables.ptr_count[ptr]
            hw_map = self._hw_source(src)
            stage["sources"].append({"pass": src.pass_index, "map": hw_map, "input": src.input,
                                     "count": torch.from_numpy(count.astype(np.float64)),
                                     "rows": int(count.sum()), "bound": weight_bound(hw_map)})
        return stage

    def _check_synapses(self) -> None:
        """Freivalds' test of every pass: tables(r) == map(r) for a random integer r on every input index
        (padding lanes included)."""
        lanes, rows = self.arch.lanes, self.program.state_rows
        if len(self.tables.syn_row) and int(self.tables.syn_row.max()) >= rows:
            raise _NotDense("synapse rows beyond the accumulator rows in use")
        rng = np.random.default_rng(0)
        for i, stage in enumerate(self.stages):
            layer = self.program.layers[i]
            for src in stage["sources"]:
                n = self.hw_width(src["input"])
                r = rng.integers(1, 1 << 16, n)
                acc = np.zeros((rows, lanes), np.int64)
                _accumulate(self.tables, src["pass"], np.arange(n), r, acc)
                current = self.apply(i, src, torch.from_numpy(r).to(torch.float64).view(1, 1, n), 1)
                expected = np.zeros((rows, lanes), np.int64)
                expected[layer.acc_base:layer.acc_base + layer.n_groups] = \
                    current.to(torch.int64).numpy().reshape(-1, lanes)
                if not np.array_equal(acc, expected):
                    raise _NotDense(f"pass {src['pass']} ({layer.name}): the synapse tables do not encode its "
                                    f"{src['map'].op}")

    def apply(self, stage: int, src: dict, events: torch.Tensor, n_images: int) -> torch.Tensor:
        """A source's current ``[T', N, n_hw]`` from its input events ``[T', N, n_hw_in]`` (or the pixels
        ``[1, N, n_inputs]``), in the events' floating dtype; exact under the caller's bound."""
        steps = events.shape[0]
        flat = events.reshape(steps * n_images, -1)
        source = src["map"]
        if source.op == "linear":
            return linear_map(source, flat).view(steps, n_images, -1)
        if src["input"] < 0:
            images = flat.view((len(flat),) + tuple(self.program.input_shape))
        else:
            _, in_cb, spatial = self._padded(src["input"])
            images = flat.view((len(flat),) + spatial + (in_cb,)).permute(0, 3, 1, 2)   # channels-last view
        out = linear_map(source, images).permute(0, 2, 3, 1)
        return out.reshape(steps, n_images, -1)


class _NotDense(Exception):
    """The dense engine may not run this program (the message says why)."""


class _NeedsTables(Exception):
    """This batch runs on the tables engine: an accumulator would saturate (the tables engine counts the
    clamps exactly as the core does), or a descriptor holds an unknown kind code."""


def _simulate_dense(plan: _DensePlan, pixels: np.ndarray, keep_events: bool):
    """The ``dense`` engine on a batch of images; None where the batch must run on ``tables`` instead."""
    try:
        results = _dense_batch(plan, pixels, keep_events)
    except _NeedsTables:
        return None
    if results is None:  # saturations in a batch: they are counted per image, one image at a time
        singles = [_simulate_dense(plan, pixels[n:n + 1], keep_events) for n in range(len(pixels))]
        return None if any(r is None for r in singles) else [r[0] for r in singles]
    return results


def _dense_batch(plan: _DensePlan, pixels: np.ndarray, keep_events: bool):
    program, arch = plan.program, plan.arch
    n_images, timesteps, lanes = len(pixels), program.timesteps, arch.lanes
    acc_max = (1 << (arch.acc_bits - 1)) - 1
    bitserial = arch.multivalue == "bitserial"
    carried = {layer.carry for layer in program.layers if layer.carry is not None}
    hw_events = {-1: torch.from_numpy(pixels).to(torch.float64)[None]}   # stage -> [T, N, n_hw] (pixels: T' = 1)
    occupied = {}                                                         # stage -> events != 0, as float
    peaks = {-1: int(pixels.max()) if pixels.size else 0}
    carried_sums = {}
    accounts = [{key: np.zeros(n_images, np.int64) for key in _ACCOUNT_FIELDS} for _ in program.layers]
    state = np.zeros((n_images, program.state_rows, lanes, arch.max_levels), np.int64)
    events = [[[] for _ in program.layers] for _ in range(n_images)]
    saturations = 0

    def totals(matrix: torch.Tensor, vector: torch.Tensor, repeat: int) -> np.ndarray:
        """``sum over timesteps of matrix @ vector`` per image, exact (float sums of integers)."""
        return np.rint((matrix.to(vector.dtype) @ vector).numpy()).astype(np.int64).sum(0) * repeat

    for i, stage in enumerate(plan.stages):
        a = accounts[i]
        bound = sum(src["bound"] * peaks[src["input"]] for src in stage["sources"])
        if stage["carry"] is not None:
            bound += carried_sums[stage["carry"]][1]
        dtype = torch.float32 if bound < FLOAT32_EXACT else torch.float64
        acc = carried_sums[stage["carry"]][0].to(dtype) if stage["carry"] is not None else None
        for src in stage["sources"]:
            # accumulate phase: the accounts from the events that occurred and their pointer counts, then the sums
            ev, producer = hw_events[src["input"]], src["input"]
            repeat = timesteps if producer < 0 else 1                 # the pixels are scanned every timestep
            exact = src["rows"] * max(peaks[producer], 1) < FLOAT32_EXACT
            count = src["count"].to(torch.float32) if exact else src["count"]
            if producer not in occupied:
                occupied[producer] = torch.sign(ev)                   # events are non-negative
            n_events = np.rint(occupied[producer].sum(-1).numpy()).astype(np.int64).sum(0) * repeat
            rows = totals(occupied[producer], count, repeat)
            adds = totals(_popcount_tensor(ev) if bitserial else ev, count, repeat)
            a["acc_updates"] += rows
            a["ac_ops"] += adds * lanes
            if arch.layer_major:   # one event word per input neuron that fired at any timestep
                fired = occupied[producer].amax(0)[None]
                trains, train_rows = np.rint(fired.sum(-1).numpy()).astype(np.int64)[0], totals(fired, count, 1)
                cycles = layer_major_accumulate_cycles(trains, train_rows, rows, adds)
                a["input_events"] += trains
                a["synapse_rows"] += train_rows
                a["accumulate_cycles"] += cycles
                a["cycles"] += 3 + cycles
                a["steps"] += 1
            else:
                a["input_events"] += n_events
                a["synapse_rows"] += rows
                a["accumulate_cycles"] += timesteps + 4 * n_events + 2 * rows + adds
                a["cycles"] += 3 * timesteps + timesteps + 4 * n_events + 2 * rows + adds
                a["steps"] += timesteps
            current = plan.apply(i, src, ev.to(dtype), n_images)     # [T or 1, N, n_hw]
            acc = current if acc is None else acc + current
            low, high = torch.aminmax(acc)
            if float(high) > acc_max or float(low) < -acc_max - 1:
                raise _NeedsTables
        acc = acc.expand((timesteps,) + acc.shape[1:])
        if i in carried:
            carried_sums[i] = (acc, bound)
        # update phase (padding lanes have zero sums and their own bias, as in the core)
        bias = stage["bias"]
        exact32 = float32_exact(bound + int(bias.abs().max()), stage["kind"] == KIND_NEURON, arch.membrane_bits,
                                int(stage["thresholds"].abs().max()))
        if exact32:
            x = acc.to(torch.float32) + bias.to(torch.float32)
        else:
            x = acc.to(torch.float64).to(torch.int64) + bias
        out = torch.empty(x.shape, dtype=torch.float32)
        kind, n_groups = stage["kind"], stage["n_groups"]
        if kind == KIND_NEURON:
            levels = stage["levels"]
            u = torch.zeros((levels,) + tuple(x.shape[1:]), dtype=x.dtype)
            thresholds = stage["thresholds"][:levels, None, :].to(x.dtype)
            for t in range(timesteps):
                u, _, sat = neuron_step_int(u, x[t], thresholds, stage["shift"], arch.membrane_bits, out[t])
                saturations += sat
            base = stage["state_base"]
            state[:, base:base + n_groups, :, :levels] = \
                u.to(torch.int64).permute(1, 2, 0).reshape(n_images, n_groups, lanes, levels).numpy()
        elif kind in (KIND_SUM, KIND_GATE):
            value, sat = sum_step(x, arch.value_bits) if kind == KIND_SUM else gate_step(x, stage["truth_table"])
            saturations += sat
            out.copy_(value)
        else:
            raise _NeedsTables  # an unknown kind code: the tables engine reproduces what the core does
        if saturations and n_images > 1:
            return None
        occupied[i] = torch.sign(out)
        if arch.layer_major:   # one event word per neuron that fired at any timestep
            n_out = np.rint(occupied[i].amax(0).sum(-1).numpy()).astype(np.int64)
            update_cycles = update_cycles_of(n_groups, arch, timesteps) + n_out
        else:
            n_out = np.rint(occupied[i].sum(-1).numpy()).astype(np.int64).sum(0)
            update_cycles = timesteps * update_cycles_of(n_groups, arch) + n_out
        a["output_events"] += n_out
        a["neuron_updates"] += n_groups * timesteps
        a["state_writes"] += n_groups * timesteps if kind == KIND_NEURON else 0
        a["acc_clears"] += n_groups * timesteps if i not in carried else 0
        a["update_cycles"] += update_cycles
        a["cycles"] += update_cycles
        hw_events[i] = out
        peaks[i] = int(out.max()) if out.numel() else 0
        if keep_events:
            for n in range(n_images):
                for t in range(timesteps):
                    idx = torch.nonzero(out[t, n]).reshape(-1).numpy()
                    events[n][i].append((idx, out[t, n].numpy()[idx].astype(np.int64)))
    last = program.layers[-1]
    setup_cycles = setup_cycles_of(program, arch)
    results = []
    for n in range(n_images):
        layers = [LayerAccount(layer.name, **{key: int(accounts[l][key][n]) for key in _ACCOUNT_FIELDS})
                  for l, layer in enumerate(program.layers)]
        emitted = sum(layer.output_events for layer in layers)
        logits = state[n, last.state_base:last.state_base + last.n_groups, :, 0].reshape(-1)[last.hw_index(lanes)]
        results.append(SimResult(events=events[n] if keep_events else [[] for _ in program.layers], logits=logits,
                                 state=state[n], cycles=setup_cycles + sum(layer.cycles for layer in layers),
                                 setup_cycles=setup_cycles, layers=layers, saturations=saturations,
                                 trace_count=min(emitted, arch.memories.trace),
                                 trace_overflow=emitted > arch.memories.trace, engine="dense"))
    return results


def _popcount_tensor(v: torch.Tensor) -> torch.Tensor:
    """Set bits of each (non-negative integer) value."""
    v = v.to(torch.int64)
    count = torch.zeros_like(v)
    while bool(v.any()):
        count += v & 1
        v = v >> 1
    return count
