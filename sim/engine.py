"""Event-driven execution of a Program's memory tables, bit-exact and cycle-exact with the core.

The simulator reads the same memory columns the core's memories are loaded with (``Program.memories``)
and follows the schedule of ``docs/core.md``: input scan, then per timestep and pass (one per synaptic
source of a stage) the accumulate phase (the input events and their synapse rows) and, on a stage's
last pass, the update phase (one update per group of ``lanes`` neurons, then one emit per nonzero lane). Work inside a phase is vectorised with
numpy; the order-dependence of the accumulation is excluded by the compiler's range proof
(``docs/numerics.md``), so the vectorised sum equals the core's sequential one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from accel.config import ArchConfig
from accel.layouts import KIND_NEURON, KIND_SUM
from accel.program import Program
from models.hwexact import GATE_INPUTS


@dataclass
class LayerAccount:
    """Cycle-level account of one layer, summed over timesteps (and samples when aggregated)."""

    name: str
    cycles: int = 0
    accumulate_cycles: int = 0
    update_cycles: int = 0
    input_events: int = 0
    synapse_rows: int = 0        # weight rows added (each is `lanes` AC operations, `value` times)
    ac_ops: int = 0              # lane additions performed (padding lanes included)
    output_events: int = 0
    neuron_updates: int = 0      # groups updated
    state_writes: int = 0        # groups whose membranes were written (neuron stages)
    acc_clears: int = 0          # accumulator rows cleared after an update
    steps: int = 0               # passes run (one descriptor read each)

    def add(self, other: "LayerAccount") -> None:
        for key in ("cycles", "accumulate_cycles", "update_cycles", "input_events", "synapse_rows", "ac_ops",
                    "output_events", "neuron_updates", "state_writes", "acc_clears", "steps"):
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


def simulate(program: Program, arch: ArchConfig, pixels, tables: _Tables | None = None,
             keep_events: bool = True) -> SimResult:
    """Run one inference of ``program`` on integer ``pixels`` (flat, ``program.n_inputs`` values).

    ``keep_events=False`` is the performance mode: logits, cycles, accounts and saturations only (the
    per-stage event lists, i.e. the full trace, are not kept)."""
    program.check_arch(arch)
    tables = tables or _Tables(program)
    lanes, levels_max = arch.lanes, arch.max_levels
    d = tables.desc
    n_passes, timesteps = len(tables.pass_stage), program.timesteps
    state_rows = program.state_rows
    acc = np.zeros((state_rows, lanes), np.int64)
    state = np.zeros((state_rows, lanes, levels_max), np.int64)
    pixels = np.asarray(pixels, np.int64).reshape(-1)
    bitserial = arch.multivalue == "bitserial"
    # CLEAR + SCAN
    setup_cycles = state_rows + program.n_inputs + 1
    nz = np.nonzero(pixels)[0]
    region_events = {0: (nz, pixels[nz])}
    events = [[] for _ in program.layers]
    accounts = [LayerAccount(layer.name) for layer in program.layers]
    emitted, saturations = 0, 0
    acc_bits = arch.acc_bits
    for t in range(timesteps):
        for p in range(n_passes):
            stage = tables.pass_stage[p]
            a = LayerAccount(program.layers[stage].name, steps=1)
            idx, val = region_events[int(d["in_region"][p])]
            # accumulate phase
            ptr = d["ptr_base"][p] + idx
            start, count = tables.ptr_start[ptr], tables.ptr_count[ptr]
            total = int(count.sum())
            additions = _popcount(val) if bitserial else val
            if total:
                offsets = np.repeat(start - np.cumsum(count) + count, count) + np.arange(total)
                rows, wrows = tables.syn_row[offsets], tables.syn_wrow[offsets]
                contrib = tables.weights[wrows] * np.repeat(val, count)[:, None]
                # a scatter-add of [rows, lanes]; bincount's float64 sums are exact for these integers
                flat = (rows[:, None] * lanes + np.arange(lanes)).reshape(-1)
                acc += np.bincount(flat, weights=contrib.reshape(-1), minlength=acc.size).reshape(acc.shape) \
                    .astype(np.int64)
            acc, sat = _saturate(acc, acc_bits)  # by the compiler's proof this never clamps
            saturations += sat
            a.input_events = len(idx)
            a.synapse_rows = total
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
                emitted += len(out_idx)
                a.output_events = len(out_idx)
                a.neuron_updates = n_groups
                a.state_writes = n_groups if kind == KIND_NEURON else 0
                a.update_cycles = 1 + 2 * n_groups + len(out_idx)
                a.cycles += a.update_cycles
            accounts[stage].add(a)
    last = program.layers[-1]
    logit_rows = state[last.state_base:last.state_base + last.n_groups, :, 0].reshape(-1)
    logits = logit_rows[last.hw_index(lanes)]
    cycles = setup_cycles + sum(a.cycles for a in accounts)
    return SimResult(events=events, logits=logits, state=state, cycles=cycles, setup_cycles=setup_cycles,
                     layers=accounts, saturations=saturations, trace_count=min(emitted, arch.memories.trace),
                     trace_overflow=emitted > arch.memories.trace)


def simulate_batch(program: Program, arch: ArchConfig, pixels_batch, progress=None) -> list:
    """Simulate several inferences (one per row of ``pixels_batch``), sharing the prepared tables."""
    tables = _Tables(program)
    results = []
    for pixels in pixels_batch:
        results.append(simulate(program, arch, pixels, tables))
        if progress is not None:
            progress.update(1)
    return results
