"""Event-driven execution of a Program's memory tables, bit-exact and cycle-exact with the core.

The simulator reads the same memory columns the core's memories are loaded with (``Program.memories``)
and follows the schedule of ``docs/core.md``: input scan, then per timestep and layer the accumulate
phase (one pass over the input events and their synapse rows) and the update phase (one neuron update
per group of ``lanes`` neurons, then one emit per nonzero lane). Work inside a phase is vectorised with
numpy; the order-dependence of the accumulation is excluded by the compiler's range proof
(``docs/numerics.md``), so the vectorised sum equals the core's sequential one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from accel.config import ArchConfig
from accel.program import Program


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
    steps: int = 0               # timesteps run (one descriptor read each)

    def add(self, other: "LayerAccount") -> None:
        for key in ("cycles", "accumulate_cycles", "update_cycles", "input_events", "synapse_rows", "ac_ops",
                    "output_events", "neuron_updates", "steps"):
            setattr(self, key, getattr(self, key) + getattr(other, key))


@dataclass
class SimResult:
    """Outputs of one inference: events in hardware indices, logits, cycles, saturations."""

    events: list                  # [layer][t] -> (index array, value array), ascending index
    logits: np.ndarray            # int64 [classes]
    state: np.ndarray             # int64 [state_rows, lanes, max_levels]: membranes at the end
    cycles: int
    setup_cycles: int
    layers: list = field(default_factory=list)   # LayerAccount per layer
    saturations: int = 0
    trace: list = field(default_factory=list)    # (t, layer, index, value) in emission order
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


def simulate(program: Program, arch: ArchConfig, pixels, tables: _Tables | None = None) -> SimResult:
    """Run one inference of ``program`` on integer ``pixels`` (flat, ``program.n_inputs`` values)."""
    program.check_arch(arch)
    tables = tables or _Tables(program)
    lanes, levels_max = arch.lanes, arch.max_levels
    d = tables.desc
    n_layers, timesteps = len(program.layers), program.timesteps
    state_rows = program.state_rows
    acc = np.zeros((state_rows, lanes), np.int64)
    state = np.zeros((state_rows, lanes, levels_max), np.int64)
    pixels = np.asarray(pixels, np.int64).reshape(-1)
    # CLEAR + SCAN
    setup_cycles = state_rows + program.n_inputs + 1
    nz = np.nonzero(pixels)[0]
    region_events = {0: (nz, pixels[nz])}
    events = [[] for _ in range(n_layers)]
    accounts = [LayerAccount(layer.name) for layer in program.layers]
    trace, trace_overflow, saturations = [], False, 0
    acc_bits, mem_bits = arch.acc_bits, arch.membrane_bits
    for t in range(timesteps):
        for l in range(n_layers):
            a = LayerAccount(program.layers[l].name, steps=1)
            idx, val = region_events[int(d["in_region"][l])]
            # accumulate phase
            ptr = d["ptr_base"][l] + idx
            start, count = tables.ptr_start[ptr], tables.ptr_count[ptr]
            total = int(count.sum())
            if total:
                offsets = np.repeat(start - np.cumsum(count) + count, count) + np.arange(total)
                rows, wrows = tables.syn_row[offsets], tables.syn_wrow[offsets]
                values = np.repeat(val, count)
                contrib = tables.weights[wrows] * values[:, None]
                np.add.at(acc, rows, contrib)
            acc, sat = _saturate(acc, acc_bits)  # by the compiler's proof this never clamps
            saturations += sat
            a.input_events = len(idx)
            a.synapse_rows = total
            a.ac_ops = int((count * val).sum()) * lanes
            a.accumulate_cycles = 1 + int((4 + count * 2 + count * val).sum())
            # update phase
            base, n_groups = int(d["state_base"][l]), int(d["n_groups"][l])
            rows = slice(base, base + n_groups)
            block = d["param_base"][l] + np.arange(n_groups) % d["n_blocks"][l]
            k = int(d["levels"][l])
            x = acc[rows] + tables.bias[block]                                  # [G, L]
            v, sat = _saturate((state[rows, :, :k] >> int(d["shift"][l])) + x[:, :, None], mem_bits)
            saturations += sat
            fired = v > tables.thresholds[block][:, :, :k]
            state[rows, :, :k] = np.where(fired, 0, v)
            acc[rows] = 0
            counts = fired.sum(2).reshape(-1)                                  # [G*L], index = g*L + lane
            out_idx = np.nonzero(counts)[0]
            out_val = counts[out_idx]
            region_events[int(d["out_region"][l])] = (out_idx, out_val)
            events[l].append((out_idx, out_val))
            a.output_events = len(out_idx)
            a.neuron_updates = n_groups
            a.update_cycles = 1 + 2 * n_groups + len(out_idx)
            a.cycles = 2 + a.accumulate_cycles + a.update_cycles + 1
            accounts[l].add(a)
            for i, value in zip(out_idx.tolist(), out_val.tolist()):
                if len(trace) < arch.memories.trace:
                    trace.append((t, l, i, value))
                else:
                    trace_overflow = True
    last = program.layers[-1]
    logit_rows = state[last.state_base:last.state_base + last.n_groups, :, 0].reshape(-1)
    logits = logit_rows[last.hw_index(lanes)]
    cycles = setup_cycles + sum(a.cycles for a in accounts)
    return SimResult(events=events, logits=logits, state=state, cycles=cycles, setup_cycles=setup_cycles,
                     layers=accounts, saturations=saturations, trace=trace, trace_overflow=trace_overflow)


def simulate_batch(program: Program, arch: ArchConfig, pixels_batch, progress=None) -> list:
    """Simulate several inferences (one per row of ``pixels_batch``), sharing the prepared tables."""
    tables = _Tables(program)
    results = []
    for pixels in pixels_batch:
        results.append(simulate(program, arch, pixels, tables))
        if progress is not None:
            progress.update(1)
    return results
