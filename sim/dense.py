"""The ``dense`` engine: a program's passes recognised as the convolutions and linear maps they encode.

Each pass's synapse tables are first *recognised* as the convolution or linear map of its source, with the
weights rearranged to the hardware neuron order, and checked against the tables with Freivalds' randomised test
(a random integer input on every hardware index, including padding lanes, through the tables and through the
map must give equal integers); the descriptors, event regions and accumulator rows are checked to follow the
stage graph. The engine then runs stage by stage over all timesteps and a batch of images at once
(layer-major): exact float32 convolutions where every partial sum is provably below 2**24 (float64
otherwise), the update phase on the descriptors' fields and the params memory, and the cycle and memory
accounts from the pointer counts of the events that occurred (the cycle formula of
:mod:`spikecore.sim.schedule` is linear in them). The arithmetic is :mod:`spikecore.sim.kernels`'. The pixels
are a source like a stage's events: one image, its current computed once and its events counted at every
timestep, or (a core with ``event_input``, frames that change over time) one frame per timestep.

A program whose tables fail a check (:attr:`DensePlan.reason`), or a batch where an accumulator would saturate
(:func:`simulate_dense` returns None), runs on the ``tables`` engine instead.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from spikecore.accel.contract.config import ArchConfig
from spikecore.accel.contract.inputs import is_static
from spikecore.accel.contract.layouts import HARDWARE_KIND, KIND_GATE, KIND_MAX, KIND_NEURON, KIND_SUM, REGION_INPUT
from spikecore.accel.contract.program import Program
from spikecore.sim.kernels import (FLOAT32_EXACT, SynapticMap, float32_holds, gate_update, neuron_update,
                                   sum_update)
from spikecore.sim.results import ACCOUNT_COUNTERS, LayerAccount, SimResult
from spikecore.sim.schedule import (PASS_CYCLES, accumulate_cycles_of, additions, layer_major_accumulate_cycles,
                                    scan_words, setup_cycles_of, update_cycles_of)

if TYPE_CHECKING:  # annotations only: the tables build (and cache) the plan
    from spikecore.sim.tables import MemoryTables


class DensePlan:
    """The dense engine's view of a program, checked against its tables; ``reason`` is None, or why the
    dense engine may not run the program.

    Events stay in the core's hardware layout throughout: a stage's output is ``[T, N, n_hw]`` with
    ``n_hw = positions * padded_channels`` (position-major, channels padded to whole lane groups), which
    is a channels-last image. Each source's weights are rearranged once into that layout (zero rows and
    columns for padding lanes), so convolutions run on channels-last views without any transposition
    and padding lanes get exactly the zero current they get in the core."""

    def __init__(self, program: Program, arch: ArchConfig, tables: MemoryTables):
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

    def _hw_source(self, src) -> SynapticMap:
        """A source's map with its weights rearranged to act on and produce the hardware layout."""
        out_c, out_cb, _ = self._padded(self._stage_of_pass[src.pass_index])
        w = torch.from_numpy(src.weight)
        if src.op == "conv":
            w = torch.nn.functional.pad(w, (0, 0, 0, 0, 0, 0, 0, out_cb - out_c))
            if src.input >= 0:
                in_c, in_cb, _ = self._padded(src.input)
                w = torch.nn.functional.pad(w, (0, 0, 0, 0, 0, in_cb - in_c))
            return SynapticMap("conv", w, src.stride, src.padding)
        w = torch.nn.functional.pad(w, (0, 0, 0, out_cb - out_c))
        if src.input >= 0:  # columns from logical (C, *spatial) order to (position, padded channel) order
            in_c, in_cb, spatial = self._padded(src.input)
            w = w.reshape(len(w), in_c, -1)
            w = torch.nn.functional.pad(w, (0, 0, 0, in_cb - in_c)).transpose(1, 2).reshape(len(w), -1)
        return SynapticMap("linear", w)

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
            if self.arch.event_input:  # the input scan at the start of every timestep writes region 0 again
                regions[REGION_INPUT] = -1
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
            if stage["kind"] == KIND_MAX and self.arch.max_pool and hw_map.window_source is None:
                raise _NotDense(f"{layer.name}: a max stage whose window reads several input channels")
            stage["sources"].append({"pass": src.pass_index, "map": hw_map, "input": src.input,
                                     "count": torch.from_numpy(count.astype(np.float64)),
                                     "rows": int(count.sum())})
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
                self.tables.accumulate(src["pass"], np.arange(n), r, acc)
                current = self.apply(i, src, torch.from_numpy(r).to(torch.float64).view(1, 1, n), 1)
                expected = np.zeros((rows, lanes), np.int64)
                expected[layer.acc_base:layer.acc_base + layer.n_groups] = \
                    current.to(torch.int64).numpy().reshape(-1, lanes)
                if not np.array_equal(acc, expected):
                    raise _NotDense(f"pass {src['pass']} ({layer.name}): the synapse tables do not encode its "
                                    f"{src['map'].op}")

    def apply(self, stage: int, src: dict, events: torch.Tensor, n_images: int,
              maximum: bool = False) -> torch.Tensor:
        """A source's current ``[T', N, n_hw]`` from its input events ``[T', N, n_hw_in]`` (or the pixels
        ``[T', N, n_inputs]``, ``T' = 1`` for an image), in the events' floating dtype; exact under the caller's
        bound. ``maximum``: a ``max`` stage's accumulation (:meth:`SynapticMap.maximum`) instead of the weighted
        sum."""
        steps = events.shape[0]
        flat = events.reshape(steps * n_images, -1)
        source = src["map"]
        if source.op == "linear":
            return source.current(flat).view(steps, n_images, -1)
        if src["input"] < 0:
            images = flat.view((len(flat),) + tuple(self.program.input_shape))
        else:
            _, in_cb, spatial = self._padded(src["input"])
            images = flat.view((len(flat),) + spatial + (in_cb,)).permute(0, 3, 1, 2)   # channels-last view
        out = (source.maximum(images) if maximum else source.current(images)).permute(0, 2, 3, 1)
        return out.reshape(steps, n_images, -1)


class _NotDense(Exception):
    """The dense engine may not run this program (the message says why)."""


class _NeedsTables(Exception):
    """This batch runs on the tables engine: a partial sum of an accumulator might leave its range (the tables
    engine then adds in the core's order, clamping and counting as the core does), or a descriptor holds an
    unknown kind code."""


def simulate_dense(plan: DensePlan, frames: np.ndarray, keep_events: bool):
    """The ``dense`` engine on a batch of frames ``[N, T, n_inputs]`` (all equal over time on a core without
    ``event_input``): a :class:`SimResult` per inference, or None where the batch must run on ``tables``
    instead."""
    try:
        results = _dense_batch(plan, frames, keep_events)
    except _NeedsTables:
        return None
    if results is None:  # saturations in a batch: they are counted per image, one image at a time
        singles = [simulate_dense(plan, frames[n:n + 1], keep_events) for n in range(len(frames))]
        return None if any(r is None for r in singles) else [r[0] for r in singles]
    return results


def _dense_batch(plan: DensePlan, frames: np.ndarray, keep_events: bool):
    """The ``dense`` engine on one batch; None where a batch of several images saturated (the saturations are
    then counted image by image). Raises ``_NeedsTables`` where the batch must run on ``tables``."""
    program, arch = plan.program, plan.arch
    n_images, timesteps, lanes = len(frames), program.timesteps, arch.lanes
    acc_max = (1 << (arch.acc_bits - 1)) - 1
    bitserial = arch.multivalue == "bitserial"
    carried = {layer.carry for layer in program.layers if layer.carry is not None}
    # the pixels as a source's events [T', N, n_inputs]: T' = 1 where every frame is the image's (its events
    # count at every timestep), else T' = T (a core with event_input scans frame t at timestep t)
    frames = np.asarray(frames, np.int64)
    pixels = frames[:, :1] if is_static(frames) else frames
    hw_events = {-1: torch.from_numpy(np.array(pixels.transpose(1, 0, 2))).to(torch.float64)}
    occupied = {}                                                         # stage -> events != 0, as float
    peaks = {-1: int(pixels.max()) if pixels.size else 0}
    carried_sums = {}
    accounts = [{key: np.zeros(n_images, np.int64) for key in ACCOUNT_COUNTERS} for _ in program.layers]
    state = np.zeros((n_images, program.state_rows, lanes, arch.max_levels), np.int64)
    events = [[[] for _ in program.layers] for _ in range(n_images)]
    saturations = 0

    def totals(matrix: torch.Tensor, vector: torch.Tensor, repeat: int) -> np.ndarray:
        """``sum over timesteps of matrix @ vector`` per image, exact (float sums of integers)."""
        return np.rint((matrix.to(vector.dtype) @ vector).numpy()).astype(np.int64).sum(0) * repeat

    for i, stage in enumerate(plan.stages):
        a = accounts[i]
        bound = sum(src["map"].bound * peaks[src["input"]] for src in stage["sources"])
        if stage["carry"] is not None:
            bound += carried_sums[stage["carry"]][1]
        maximum = stage["kind"] == KIND_MAX and arch.max_pool
        if bound > acc_max and not maximum:  # a partial sum might clamp, which depends on the order of the additions
            raise _NeedsTables
        dtype = torch.float32 if bound < FLOAT32_EXACT else torch.float64
        acc = carried_sums[stage["carry"]][0].to(dtype) if stage["carry"] is not None else None
        for src in stage["sources"]:
            # accumulate phase: the accounts from the events that occurred and their pointer counts, then the sums
            ev, producer = hw_events[src["input"]], src["input"]
            repeat = timesteps // len(ev)                              # an image's events count at every timestep
            exact = src["rows"] * max(peaks[producer], 1) < FLOAT32_EXACT
            count = src["count"].to(torch.float32) if exact else src["count"]
            if producer not in occupied:
                occupied[producer] = torch.sign(ev)                   # events are non-negative
            n_events = np.rint(occupied[producer].sum(-1).numpy()).astype(np.int64).sum(0) * repeat
            rows = totals(occupied[producer], count, repeat)
            adds = totals(additions(ev, bitserial, maximum), count, repeat)
            a["acc_updates"] += rows
            a["ac_ops"] += adds * lanes
            if arch.layer_major:   # one event word per input neuron that fired at any timestep
                fired = occupied[producer].amax(0)[None]
                trains, train_rows = np.rint(fired.sum(-1).numpy()).astype(np.int64)[0], totals(fired, count, 1)
                cycles = layer_major_accumulate_cycles(trains, train_rows, rows, adds)
                a["input_events"] += trains
                a["synapse_rows"] += train_rows
                a["accumulate_cycles"] += cycles
                a["cycles"] += PASS_CYCLES + cycles
                a["steps"] += 1
            else:
                a["input_events"] += n_events
                a["synapse_rows"] += rows
                cycles = accumulate_cycles_of(n_events, rows, adds, phases=timesteps)
                a["accumulate_cycles"] += cycles
                a["cycles"] += PASS_CYCLES * timesteps + cycles
                a["steps"] += timesteps
            current = plan.apply(i, src, ev.to(dtype), n_images, maximum)     # [T or 1, N, n_hw]
            acc = current if acc is None else acc + current
        acc = acc.expand((timesteps,) + acc.shape[1:])
        if i in carried:
            carried_sums[i] = (acc, bound)
        # update phase (padding lanes have zero sums and their own bias, as in the core)
        bias = stage["bias"]
        exact32 = float32_holds(bound + int(bias.abs().max()), stage["kind"] == KIND_NEURON, arch.membrane_bits,
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
                u, _, sat = neuron_update(u, x[t], thresholds, stage["shift"], arch.membrane_bits, out[t])
                saturations += sat
            base = stage["state_base"]
            state[:, base:base + n_groups, :, :levels] = \
                u.to(torch.int64).permute(1, 2, 0).reshape(n_images, n_groups, lanes, levels).numpy()
        elif kind in (KIND_SUM, KIND_GATE) or maximum:   # a max stage updates as a sum
            value, sat = gate_update(x, stage["truth_table"]) if kind == KIND_GATE else sum_update(x, arch.value_bits)
            saturations += sat
            out.copy_(value)
        else:
            raise _NeedsTables  # an unknown kind code: the tables engine reproduces what the core does
        if saturations and n_images > 1:
            return None
        occupied[i] = torch.sign(out)
        if arch.layer_major:   # one event word per neuron that fired at any timestep
            n_out = np.rint(occupied[i].amax(0).sum(-1).numpy()).astype(np.int64)
            update_cycles = update_cycles_of(n_groups, arch.update_steps, n_out, timesteps=timesteps)
        else:
            n_out = np.rint(occupied[i].sum(-1).numpy()).astype(np.int64).sum(0)
            update_cycles = update_cycles_of(n_groups, arch.update_steps, n_out, phases=timesteps)
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
    words = scan_words(frames) if arch.event_input else np.zeros((n_images, timesteps), np.int64)
    results = []
    for n in range(n_images):
        setup_cycles = setup_cycles_of(program, arch, words[n])
        layers = [LayerAccount(layer.name, **{key: int(accounts[l][key][n]) for key in ACCOUNT_COUNTERS})
                  for l, layer in enumerate(program.layers)]
        emitted = sum(layer.output_events for layer in layers)
        logits = state[n, last.state_base:last.state_base + last.n_groups, :, 0].reshape(-1)[last.hw_index(lanes)]
        results.append(SimResult(events=events[n] if keep_events else [[] for _ in program.layers], logits=logits,
                                 state=state[n], cycles=setup_cycles + sum(layer.cycles for layer in layers),
                                 setup_cycles=setup_cycles, layers=layers, saturations=saturations,
                                 trace_count=min(emitted, arch.memories.trace),
                                 trace_overflow=emitted > arch.memories.trace, engine="dense"))
    return results
