"""The ``tables`` engine: the core's work event by event, on the program's memory tables.

The input scan writes region 0 once (an image), or with ``event_input`` at the start of every timestep (that
timestep's frame). Each input event's pointer word, its synapse rows and their weight rows scattered into the
accumulators, then on a stage's last pass the update phase of every group; the arithmetic is
:mod:`spikecore.sim.kernels`', the cycles :mod:`spikecore.sim.schedule`'s. The compiler's range proof keeps
every partial sum of a compiled program in range, so the accumulation is one exact scatter-add; where a pass
could leave the range (a program past the proof), its additions run one at a time in the core's order, each
clamped and counted (``docs/numerics.md``, "Accumulator rule").
"""
from __future__ import annotations

import numpy as np
import torch

from spikecore.accel.contract.config import ArchConfig
from spikecore.accel.contract.layouts import KIND_MAX, KIND_NEURON, KIND_SUM, REGION_INPUT
from spikecore.accel.contract.program import Program
from spikecore.sim.dense import DensePlan
from spikecore.sim.kernels import gate_update, neuron_update, sum_update
from spikecore.sim.results import LayerAccount, SimResult
from spikecore.sim.schedule import (PASS_CYCLES, accumulate_cycles_of, additions, layer_major_accumulate_cycles,
                                    scan_words, setup_cycles_of, update_cycles_of)


class MemoryTables:
    """A program's memory columns as numpy arrays, prepared once per program and shared by its inferences."""

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

    def dense(self, program: Program, arch: ArchConfig) -> DensePlan:
        """The dense engine's plan, built and checked against these tables on first use (per configuration)."""
        if self._dense is None or self._dense.arch != arch:
            self._dense = DensePlan(program, arch, self)
        return self._dense

    def synapse_rows(self, p: int, idx: np.ndarray, val: np.ndarray):
        """The synapse rows that pass ``p``'s input events ``(idx, val)`` visit, in the core's order.

        Event ``e`` reads pointer ``ptr_base + idx_e`` and then its ``count`` synapse rows from ``start``.

        Returns
        -------
        (each event's synapse-row count, each visited row's accumulator row [E], weight word [E, lanes] and
        event value [E])
        """
        ptr = self.desc["ptr_base"][p] + idx
        start, count = self.ptr_start[ptr], self.ptr_count[ptr]
        # the synapse addresses of all events, each event's run start .. start + count - 1 in turn
        offsets = np.repeat(start - np.cumsum(count) + count, count) + np.arange(int(count.sum()))
        return count, self.syn_row[offsets], self.weights[self.syn_wrow[offsets]], np.repeat(val, count)

    @staticmethod
    def scattered(rows: np.ndarray, addends: np.ndarray, shape) -> np.ndarray:
        """``addends [E, lanes]`` summed into an array of ``shape`` by accumulator row; bincount's float64
        sums are exact for these integers."""
        lanes = shape[1]
        flat = (rows[:, None] * lanes + np.arange(lanes)).reshape(-1)
        return np.bincount(flat, weights=addends.reshape(-1), minlength=shape[0] * lanes).reshape(shape) \
            .astype(np.int64)

    def accumulate(self, p: int, idx: np.ndarray, val: np.ndarray, acc: np.ndarray) -> np.ndarray:
        """The accumulate phase of pass ``p`` on input events ``(idx, val)``, unclamped.

        ``acc[row] += val_e * weights[wrow]`` for every synapse row ``(row, wrow)`` of every event ``e``, in
        place on ``acc [rows, lanes]``.

        Returns
        -------
        int64 array: each event's synapse-row count.
        """
        count, rows, weights, values = self.synapse_rows(p, idx, val)
        if len(rows):
            acc += self.scattered(rows, weights * values[:, None], acc.shape)
        return count

    def accumulate_max(self, p: int, idx: np.ndarray, val: np.ndarray, acc: np.ndarray) -> np.ndarray:
        """The accumulate phase of a ``max`` stage's pass ``p`` (a core with ``max_pool``): for every synapse row
        ``(row, wrow)`` of every event ``(i, v)``, ``acc[row, lane] = max(acc[row, lane], v)`` on the lanes
        whose weight ``weights[wrow, lane]`` is nonzero, in place; a comparison never saturates.

        Returns
        -------
        int64 array: each event's synapse-row count.
        """
        lanes = acc.shape[1]
        count, rows, weights, values = self.synapse_rows(p, idx, val)
        if len(rows):
            selected = weights != 0
            values = np.broadcast_to(values[:, None], selected.shape)
            row_of = np.broadcast_to(rows[:, None], selected.shape)
            lane_of = np.broadcast_to(np.arange(lanes), selected.shape)
            np.maximum.at(acc, (row_of[selected], lane_of[selected]), values[selected])
        return count

    def accumulate_clamped(self, p: int, idx: np.ndarray, val: np.ndarray, acc: np.ndarray, acc_bits: int,
                           bitserial: bool):
        """The accumulate phase of pass ``p`` as the core's saturating adders run it (``docs/numerics.md``).

        Every addition is clamped to ``acc_bits`` bits and each clamp of a lane is one saturation event. The
        core adds in a fixed order: the events in turn, each event's synapse rows in turn, and for each row
        ``v`` additions of the weight word (``repeat``) or one addition of ``w << b`` per set bit ``b`` of ``v``,
        lowest bit first (``bitserial``). Where no partial sum can leave the range (the sum of the negative
        and of the positive addends of every accumulator kept within it, as the compiler proves for its
        programs) the order cannot matter and the phase is one exact scatter-add.

        Returns
        -------
        (int64 array: each event's synapse-row count, saturation events)
        """
        low, high = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
        count, rows, weights, values = self.synapse_rows(p, idx, val)
        if not len(rows):
            return count, 0
        contrib = weights * values[:, None]
        rising = self.scattered(rows, np.maximum(contrib, 0), acc.shape)
        falling = self.scattered(rows, np.minimum(contrib, 0), acc.shape)
        if (acc + rising).max() <= high and (acc + falling).min() >= low:
            acc += rising + falling
            return count, 0
        saturations = 0
        for row, w, v in zip(rows, weights, values):
            if bitserial:
                row_sum, bit = acc[row], 0
                while v:
                    if v & 1:
                        exact = row_sum + (w << bit)
                        row_sum = np.clip(exact, low, high)
                        saturations += int(np.count_nonzero(row_sum != exact))
                    v, bit = v >> 1, bit + 1
                acc[row] = row_sum
            else:
                acc[row], clamps = repeated_clamped_addition(acc[row], w, int(v), low, high)
                saturations += clamps
        return count, saturations


def repeated_clamped_addition(start: np.ndarray, w: np.ndarray, v: int, low: int, high: int):
    """``v`` additions of ``w`` to ``start`` (per lane, all in ``[low, high]``), each clamped to ``[low, high]``.

    The sum moves by ``w`` unclamped for ``k = floor(room / |w|)`` additions (``room`` the distance to the bound
    it heads for), then sits on that bound: each of the remaining ``v - k`` additions clamps once.

    Returns
    -------
    (the sums, the number of clamps over all lanes)
    """
    room = np.where(w > 0, high - start, start - low)
    unclamped = np.where(w != 0, room // np.maximum(np.abs(w), 1), v)
    clamps = np.maximum(v - unclamped, 0)
    result = np.where(clamps > 0, np.where(w > 0, high, low), start + v * w)
    return result, int(clamps.sum())


def update_groups(kind: int, x: np.ndarray, state_rows: np.ndarray, levels: int, shift: int, truth_table: int,
                  thresholds: np.ndarray, arch: ArchConfig):
    """The update phase of one stage on its currents ``x [G, L]`` (bias included), by the descriptor's kind.

    Neuron membranes ``state_rows [G, L, max_levels]`` are updated in place (levels beyond ``levels`` stay 0);
    ``thresholds [G, L, max_levels]``. A max stage updates as a sum on a core with ``max_pool``; a kind code
    other than these is a gate, as in the core.

    Returns
    -------
    (values int64 [G * L], saturations)
    """
    current = torch.from_numpy(x)
    if kind == KIND_NEURON:
        u = torch.from_numpy(state_rows[:, :, :levels]).permute(2, 0, 1)          # [K, G, L]
        theta = torch.from_numpy(thresholds[:, :, :levels]).permute(2, 0, 1)
        u_next, counts, saturations = neuron_update(u, current, theta, shift, arch.membrane_bits)
        state_rows[:, :, :levels] = u_next.permute(1, 2, 0).numpy()
        return counts.numpy().reshape(-1), saturations
    if kind == KIND_SUM or (kind == KIND_MAX and arch.max_pool):
        values, saturations = sum_update(current, arch.value_bits)
    else:
        values, saturations = gate_update(current, truth_table)
    return values.to(torch.int64).numpy().reshape(-1), saturations


def scanned(values: np.ndarray) -> tuple:
    """The input scan's events ``(index, value)``: the nonzero values in index order, as region 0 holds them."""
    nz = np.nonzero(values)[0]
    return nz, values[nz]


def simulate_tables(program: Program, arch: ArchConfig, frames, tables: MemoryTables, keep_events: bool) -> SimResult:
    """The ``tables`` engine: one inference of ``program`` on integer ``frames`` ``[T, n_inputs]``, event by event.

    A core without ``event_input`` scans one image (frame 0; the frames are then all equal) into region 0 once;
    a core with it scans frame ``t`` into region 0 at the start of timestep ``t``."""
    lanes, levels_max = arch.lanes, arch.max_levels
    d = tables.desc
    n_passes, timesteps = len(tables.pass_stage), program.timesteps
    state_rows = program.state_rows
    acc = np.zeros((state_rows, lanes), np.int64)
    state = np.zeros((state_rows, lanes, levels_max), np.int64)
    frames = np.asarray(frames, np.int64).reshape(timesteps, -1)
    bitserial = arch.multivalue == "bitserial"
    # CLEAR + SCAN (with event_input: CLEAR, then a scan at the start of every timestep)
    setup_cycles = setup_cycles_of(program, arch, scan_words(frames) if arch.event_input else None)
    region_events = {REGION_INPUT: scanned(frames[0])}
    events = [[] for _ in program.layers]
    # accounts per pass, summed over timesteps; the layer-major schedule's from the trains each pass read and wrote
    passes = [LayerAccount(program.layers[stage].name) for stage in tables.pass_stage]
    trains_in = [np.zeros(0, np.int64) for _ in range(n_passes)]
    trains_out = [np.zeros(0, np.int64) for _ in range(n_passes)]
    saturations = 0
    for t in range(timesteps):
        if arch.event_input:   # region 0's count reset, then frame t's nonzero values appended in index order
            region_events[REGION_INPUT] = scanned(frames[t])
        for p in range(n_passes):
            stage = tables.pass_stage[p]
            a = LayerAccount(program.layers[stage].name, steps=1)
            idx, val = region_events[int(d["in_region"][p])]
            trains_in[p] = np.union1d(trains_in[p], idx)
            maximum = arch.max_pool and int(d["kind"][p]) == KIND_MAX
            if maximum:
                count, sat = tables.accumulate_max(p, idx, val, acc), 0
            else:
                count, sat = tables.accumulate_clamped(p, idx, val, acc, arch.acc_bits, bitserial)
            saturations += sat
            adds = int((count * additions(val, bitserial, maximum)).sum())
            a.input_events = len(idx)
            a.synapse_rows = a.acc_updates = int(count.sum())
            a.ac_ops = adds * lanes
            a.accumulate_cycles = accumulate_cycles_of(len(idx), a.synapse_rows, adds)
            a.cycles = PASS_CYCLES + a.accumulate_cycles
            if d["update"][p]:
                kind = int(d["kind"][p])
                n_groups = int(d["n_groups"][p])
                acc_rows = slice(int(d["acc_base"][p]), int(d["acc_base"][p]) + n_groups)
                state_base = int(d["state_base"][p])
                block = d["param_base"][p] + np.arange(n_groups) % d["n_blocks"][p]
                x = acc[acc_rows] + tables.bias[block]                              # [G, L]
                values, sat = update_groups(kind, x, state[state_base:state_base + n_groups], int(d["levels"][p]),
                                            int(d["shift"][p]), int(d["truth_table"][p]), tables.thresholds[block],
                                            arch)
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
                a.update_cycles = update_cycles_of(n_groups, arch.update_steps, len(out_idx))
                a.cycles += a.update_cycles
            passes[p].add(a)
    accounts = [LayerAccount(layer.name) for layer in program.layers]
    for p, a in enumerate(passes):
        if arch.layer_major:
            ptr = d["ptr_base"][p] + trains_in[p]
            a = layer_major_account(a, len(trains_in[p]), int(tables.ptr_count[ptr].sum()), len(trains_out[p]),
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


def layer_major_account(a: LayerAccount, trains, train_rows, trains_out, n_groups, timesteps: int,
                        arch: ArchConfig) -> LayerAccount:
    """The account of one pass in the layer-major schedule from its timestep-major account ``a``.

    The two schedules do the same work (``a``, summed over timesteps); the layer-major one reads each input's
    event word once (``trains`` words, with ``train_rows`` synapse rows), writes one event word per neuron
    that fired at any timestep (``trains_out``), and runs the pass once: its descriptor, its accumulate
    phase's end and its update phase (``n_groups`` groups, ``None`` without an update) once for all
    ``timesteps``.
    """
    adds = a.ac_ops // arch.lanes
    out = LayerAccount(a.name, input_events=trains, synapse_rows=train_rows, acc_updates=a.acc_updates,
                       ac_ops=a.ac_ops, neuron_updates=a.neuron_updates, state_writes=a.state_writes,
                       acc_clears=a.acc_clears, steps=a.steps // timesteps)
    out.accumulate_cycles = layer_major_accumulate_cycles(trains, train_rows, a.acc_updates, adds)
    if n_groups is not None:
        out.output_events = trains_out
        out.update_cycles = update_cycles_of(n_groups, arch.update_steps, trains_out, timesteps=timesteps)
    out.cycles = PASS_CYCLES + out.accumulate_cycles + out.update_cycles
    return out
