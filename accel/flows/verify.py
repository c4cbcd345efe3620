"""Verification: golden model == simulator == RTL, every spike of every layer at every timestep.

The golden model (``spikecore.models.run_integer_network``) evaluates the quantized stages densely with PyTorch;
the simulator executes the Program's memory tables event by event; the RTL runs the generated Verilog.
Integers are compared with equality. :func:`verify_on_rtl` is the whole check as ``accel verify`` and
:func:`spikecore.api.verify` run it. The float model is compared with the golden one only by accuracy
and logit distance, which are reported.

Spikes are compared only from a complete trace. A trace memory too small for the events the network emits
(``memories.trace``) is bad input, not a disagreement: :func:`check_trace_capacity` refuses it with a
:class:`UserError` (exit status 2) naming the sample and the words needed, before any RTL spike is compared
(the simulator keeps every event whatever the trace memory holds, so golden == simulator is checked anyway). An
RTL whose trace overflows where the simulator's did not is a fault of the RTL: the sample's spikes are not
compared, and the overflow is reported as its mismatch.

Where the RTL disagrees, :func:`first_difference` names the first trace event that differs, in the order the
core emits them, and when: the cycle at which the RTL wrote it (measured: the simulation top's trace monitor
stamps every trace write with the core's ``cycles`` register, ``spikecore.rtl.verilog``), and the cycle at which the
simulator's cycle account places the event expected there (:func:`emission_schedule`, from the schedule of
``docs/core.md``); with waves, the time of that write in the sample's waveform file.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from spikecore.accel.contract.config import ArchConfig
from spikecore.accel.contract.inputs import host_inputs, input_frames
from spikecore.accel.contract.layouts import KIND_MAX, state_layout, trace_layout
from spikecore.accel.contract.program import Program
from spikecore.errors import UserError
from spikecore.models import run_integer_network
from spikecore.sim import schedule

MAX_REPORTED_MISMATCHES = 10


def emitting_layers(program: Program) -> list:
    """Indices of the stages that emit events (all but the readout), the order of ``golden["spikes"]``."""
    return [i for i, layer in enumerate(program.layers) if layer.fires]


def run_golden(program: Program, arch: ArchConfig, pixels: torch.Tensor) -> dict:
    """The golden model on the Program's integer stages: ``pixels`` are images ``[N, *input_shape]`` (or flat)
    or frames ``[N, T, *input_shape]`` (or ``[N, T, n_inputs]``)."""
    frames = input_frames(program, pixels)
    if frames.strides[1] == 0:  # an image: the golden model repeats it over the timesteps itself
        images = torch.from_numpy(np.array(frames[:, 0])).reshape((len(frames),) + tuple(program.input_shape))
    else:
        images = torch.as_tensor(frames).reshape(frames.shape[:2] + tuple(program.input_shape))
    return run_integer_network(program.integer_stages(), images, program.timesteps, arch.membrane_bits,
                               arch.value_bits)


def golden_hw_spikes(program: Program, arch: ArchConfig, golden: dict, sample: int) -> list:
    """Golden spikes of one sample as dense ``[T, n_hw]`` arrays in hardware index order, per emitting layer."""
    out = []
    for l, spikes in zip(emitting_layers(program), golden["spikes"]):
        layer = program.layers[l]
        dense = np.zeros((program.timesteps, layer.n_groups * arch.lanes), np.int64)
        dense[:, layer.hw_index(arch.lanes)] = spikes[:, sample].reshape(program.timesteps, -1).numpy()
        out.append(dense)
    return out


def emitted_events(result) -> int:
    """Trace words one simulated inference (a ``spikecore.sim.engine.SimResult``) writes: its emitted events (layer-major:
    one word per neuron that fired at any timestep)."""
    return sum(account.output_events for account in result.layers)


def check_trace_capacity(arch: ArchConfig, sim_results: list) -> None:
    """Refuse a trace memory too small to hold every event of the simulated inferences.

    Raises
    ------
    UserError
        Naming ``memories.trace``, the first sample whose events overflow it, and the words every sample needs.
    """
    overflowed = [n for n, result in enumerate(sim_results) if result.trace_overflow]
    if overflowed:
        needed = max(emitted_events(result) for result in sim_results)
        raise UserError(f"the trace memory (memories.trace = {arch.memories.trace} words, configuration "
                        f"{arch.name}) overflowed on sample {overflowed[0]} ({len(overflowed)} of {len(sim_results)} "
                        f"samples): verifying every spike needs memories.trace >= {needed}")


def decode_rtl(program: Program, arch: ArchConfig, result: dict) -> dict:
    """Turn the RTL's trace words and state rows into dense spikes and logits.

    Trace words that name a pass which emits nothing, or a neuron or timestep outside its layer (which only
    a faulty core writes), are returned in ``stray``, as ``(pass, timestep, neuron)`` triples (timestep
    ``None`` in the layer-major schedule)."""
    trace = trace_layout(arch).unpack(result["trace"])
    emitting = emitting_layers(program)
    spikes = [np.zeros((program.timesteps, program.layers[l].n_groups * arch.lanes), np.int64) for l in emitting]
    slot = {program.layers[l].update_pass: n for n, l in enumerate(emitting)}
    stray = []
    if arch.layer_major:  # one word per neuron with its value at every timestep
        for p, i, train in zip(trace["layer"], trace["index"], trace["train"]):
            n = slot.get(int(p))
            if n is None or int(i) >= spikes[n].shape[1]:
                stray.append((int(p), None, int(i)))
            else:
                spikes[n][:, int(i)] = train[:program.timesteps]
    else:
        for t, p, i, v in zip(trace["timestep"], trace["layer"], trace["index"], trace["value"]):
            n = slot.get(int(p))
            if n is None or int(t) >= program.timesteps or int(i) >= spikes[n].shape[1]:
                stray.append((int(p), int(t), int(i)))
            else:
                spikes[n][int(t), int(i)] = int(v)
    # a state row of `lanes` neurons is `update_steps` consecutive words
    state = state_layout(arch).unpack(result["state"])["u"].reshape(-1, arch.lanes, arch.max_levels)
    last = program.layers[-1]
    logits = state[last.state_base:last.state_base + last.n_groups, :, 0].reshape(-1)[last.hw_index(arch.lanes)]
    return {"spikes": spikes, "logits": logits, "stray": stray}


def _additions(values: np.ndarray, arch: ArchConfig, kind: int) -> np.ndarray:
    """ACC cycles of an event of each value: the value (``repeat``) or its set bits (``bitserial``); one
    comparison in a pass of a ``max`` stage (descriptor ``kind``) on a core with ``max_pool``."""
    values = np.asarray(values, np.int64)
    if arch.max_pool and kind == KIND_MAX:
        return (values > 0).astype(np.int64)
    if arch.multivalue != "bitserial":
        return values
    return np.array([bin(int(v)).count("1") for v in values.reshape(-1)], np.int64).reshape(values.shape)


def emission_schedule(program: Program, arch: ArchConfig, pixels, sim) -> tuple:
    """Every event the core emits in one inference, in emission order, with the cycle of its trace write as the
    simulator's account places it (the schedule and cycle formula of ``docs/core.md``, walked event by event).

    Parameters
    ----------
    program : accel.program.Program
    arch : accel.config.ArchConfig
    pixels : array-like
        The inference's input: an image (flat, ``program.n_inputs`` values) or its frames ``[T, n_inputs]``
        (a frame per timestep; an image's repeated on a core without ``event_input``).
    sim : sim.engine.SimResult
        The simulator's result for it, with its events.

    Returns
    -------
    events : list of tuple
        ``(pass, timestep, neuron, value, cycle)`` per trace word; in the layer-major schedule ``timestep`` is
        ``None`` and ``value`` the tuple of the neuron's values at every timestep. ``cycle`` counts the busy
        cycles before the trace write, as the core's ``cycles`` register does when it writes the word.
    cycles : int
        The inference's cycles by the same walk (equal to ``sim.cycles``).
    """
    layers = {name: np.asarray(column, np.int64) for name, column in program.memories["layers"].items()}
    pointer_rows = np.asarray(program.memories["pointers"]["count"], np.int64)
    pass_stage = [i for i, layer in enumerate(program.layers) for _ in layer.sources]
    timesteps, lanes, steps = program.timesteps, arch.lanes, arch.update_steps
    step_cycles = schedule.update_step_cycles(steps)
    frames = np.asarray(input_frames(program, np.asarray(pixels)[None])[0], np.int64)
    pixels = frames[0]
    inputs = np.nonzero(pixels)[0]
    if arch.event_input:  # CLEAR, then each timestep's scan before its passes
        cursor = schedule.clear_cycles_of(program, arch)
    else:
        cursor = schedule.setup_cycles_of(program, arch)  # CLEAR, SCAN
    emitted = []

    def stage_events(stage: int, t: int):
        idx, val = sim.events[stage][t] if sim.events[stage] else (np.zeros(0, np.int64), np.zeros(0, np.int64))
        return np.asarray(idx, np.int64), np.asarray(val, np.int64)

    if not arch.layer_major:
        regions = {0: (inputs, pixels[inputs])}
        for t in range(timesteps):
            if arch.event_input:  # region 0 holds frame t's input events
                inputs = np.nonzero(frames[t])[0]
                regions[0] = (inputs, frames[t][inputs])
                cursor += int(schedule.event_scan_cycles_of(len(inputs)))
            for p, stage in enumerate(pass_stage):
                idx, val = regions[int(layers["in_region"][p])]
                rows = pointer_rows[layers["ptr_base"][p] + idx]
                adds = _additions(val, arch, int(layers["kind"][p]))
                cursor += schedule.DESC + schedule.LATCH + schedule.EV + int(
                    (schedule.EVENT_CYCLES + rows * (schedule.SYN + schedule.WRD + schedule.ACC * adds)).sum())
                if layers["update"][p]:
                    out_idx, out_val = stage_events(stage, t)
                    regions[int(layers["out_region"][p])] = (out_idx, out_val)
                    # per update step (group g, step s: neurons g * L + s * U ..): URD[, USUM], UWR, then an EMIT
                    # cycle per nonzero lane, ascending
                    n_steps = int(layers["n_groups"][p]) * steps
                    step_of = out_idx // (lanes // steps)
                    # the k-th event, in step j, follows j + 1 steps' URD..UWR and the k events before it
                    emitted += [(p, t, int(i), int(v), cursor + (int(j) + 1) * step_cycles + k * schedule.EMIT)
                                for k, (i, v, j) in enumerate(zip(out_idx, out_val, step_of))]
                    cursor += n_steps * step_cycles + schedule.EMIT * len(out_idx) + schedule.URD  # the URD ends it
                cursor += schedule.NEXT
        return emitted, cursor
    regions = {0: (inputs, np.repeat(pixels[inputs, None], timesteps, axis=1))}
    for p, stage in enumerate(pass_stage):
        idx, trains = regions[int(layers["in_region"][p])]
        rows = pointer_rows[layers["ptr_base"][p] + idx]
        # per synapse row: SYN, then WRD (first timestep the input fired in) or ARD (later ones) and a(v) ACCs
        per_row = ((trains > 0) * (schedule.WRD + schedule.ACC * _additions(trains, arch, int(layers["kind"][p])))
                   ).sum(axis=1) \
            - ((trains > 0).sum(axis=1) - 1) * (schedule.WRD - schedule.ARD) + schedule.SYN if len(idx) else rows
        cursor += schedule.DESC + schedule.LATCH + schedule.EV + int((schedule.EVENT_CYCLES + rows * per_row).sum())
        if layers["update"][p]:
            dense = np.zeros((timesteps, int(layers["n_groups"][p]) * lanes), np.int64)
            for t in range(timesteps):
                out_idx, out_val = stage_events(stage, t)
                dense[t, out_idx] = out_val
            out_idx = np.nonzero(dense.any(axis=0))[0]
            out_trains = dense[:, out_idx].T
            regions[int(layers["out_region"][p])] = (out_idx, out_trains)
            # per group: URD[, USUM], UWR for every timestep and step, then an EMIT cycle per lane with a train
            n_groups, group_cycles = int(layers["n_groups"][p]), step_cycles * steps * timesteps
            emitted += [(p, None, int(i), tuple(int(v) for v in train),
                         cursor + (int(i) // lanes + 1) * group_cycles + k * schedule.EMIT)
                        for k, (i, train) in enumerate(zip(out_idx, out_trains))]
            cursor += n_groups * group_cycles + schedule.EMIT * len(out_idx) + schedule.URD
        cursor += schedule.NEXT
    return emitted, cursor


def rtl_events(arch: ArchConfig, result: dict) -> list:
    """The RTL's trace of one inference in emission order: ``(pass, timestep, neuron, value)`` per word (as in
    :func:`emission_schedule`: layer-major, ``None`` and the train)."""
    trace = trace_layout(arch).unpack(result["trace"])
    if arch.layer_major:
        return [(int(p), None, int(i), tuple(int(v) for v in train))
                for p, i, train in zip(trace["layer"], trace["index"], trace["train"])]
    return [(int(p), int(t), int(i), int(v))
            for t, p, i, v in zip(trace["timestep"], trace["layer"], trace["index"], trace["value"])]


def first_difference(program: Program, arch: ArchConfig, pixels, sim, rtl: dict, sample: int) -> dict | None:
    """Where one inference's RTL first departs from the simulator, in the order the core works.

    The trace words are compared in emission order; the first that differs (or is missing on one side) is
    reported with the cycle at which each side wrote it: ``rtl_cycle`` measured by the trace monitor,
    ``sim_cycle`` from :func:`emission_schedule`; ``cycle`` is the earlier of the two, the first cycle at
    which the two disagree (both sides agree on every cycle before, as long as the fault left the timing
    alone). With the RTL's waves, ``wave_time_ns`` is the time of that cycle in ``waves_file`` (the trace
    monitor's time of the RTL's write, or the clock's time of the simulator's cycle). When every event agrees
    and only the logits differ, the difference is dated to the last pass's update phase.

    Returns
    -------
    dict or None
        ``None`` if the traces, the logits and the cycle counts agree.
    """
    expected, cycles = emission_schedule(program, arch, pixels, sim)
    got = rtl_events(arch, rtl)
    stamps = rtl["trace_cycles"]
    position = next((k for k, (e, g) in enumerate(zip(expected, got)) if e[:4] != g), min(len(expected), len(got)))
    found = {"sample": sample, "waves_file": rtl.get("waves_file")}

    def event(item) -> dict:
        p, t, neuron, value = item[:4]
        stage = program.layers[[i for i, layer in enumerate(program.layers) for _ in layer.sources][p]]
        return {"pass": p, "layer": stage.name, "timestep": t, "neuron": neuron,
                "value": list(value) if isinstance(value, tuple) else value}

    if position < max(len(expected), len(got)):
        found.update(trace_word=position, expected=None, got=None, sim_cycle=None, rtl_cycle=None)
        if position < len(expected):
            found.update(expected=event(expected[position]), sim_cycle=expected[position][4])
        if position < len(got):
            found.update(got=event(got[position]), rtl_cycle=int(stamps[position]))
    elif not np.array_equal(np.asarray(sim.logits), decode_rtl(program, arch, rtl)["logits"]):
        last = len(program.memories["layers"]["update"]) - 1
        # the readout's membranes are written in the last pass's update phase, before NEXT
        found.update(logits=True, last_pass=last, sim_cycle=cycles - 1, rtl_cycle=int(rtl["cycles"]) - 1)
    elif int(rtl["cycles"]) != cycles:
        found.update(cycles=True, sim_cycle=cycles, rtl_cycle=int(rtl["cycles"]))
    else:
        return None
    known = [c for c in (found["sim_cycle"], found["rtl_cycle"]) if c is not None]
    found["cycle"] = min(known)
    times = rtl.get("trace_times_ns")
    if times and stamps:  # the clock is periodic: time = time of a stamped write + cycles after it * period
        from spikecore.rtl.verilog import SIM_CLOCK_PERIOD_NS

        if found["cycle"] == found["rtl_cycle"] and found.get("trace_word") is not None:
            found["wave_time_ns"] = int(times[position])
        else:
            found["wave_time_ns"] = int(times[0]) + (found["cycle"] - int(stamps[0])) * SIM_CLOCK_PERIOD_NS
    return found


def describe_difference(found: dict) -> str:
    """One line for a person of :func:`first_difference`'s answer."""
    def event(side: dict | None) -> str:
        if side is None:
            return "no event"
        when = "" if side["timestep"] is None else f" timestep {side['timestep']}"
        return f"pass {side['pass']} ({side['layer']}){when} neuron {side['neuron']} value {side['value']}"

    if "trace_word" in found:
        what = (f"trace word {found['trace_word']}: expected {event(found['expected'])} (simulator cycle "
                f"{found['sim_cycle']}), the RTL wrote {event(found['got'])} (cycle {found['rtl_cycle']})")
    elif found.get("logits"):
        what = f"every event agrees, the logits differ (written by pass {found['last_pass']} by cycle {found['sim_cycle']})"
    else:
        what = f"every event and logit agrees, the cycles differ ({found['sim_cycle']} simulated, {found['rtl_cycle']} RTL)"
    line = f"first difference: sample {found['sample']}, {what}; first differing cycle {found['cycle']}"
    if found.get("wave_time_ns") is not None:
        line += f", wave time {found['wave_time_ns']} ns in {found['waves_file']}"
    return line


def _locate(program: Program, arch: ArchConfig, layer_index: int, hw_index: int) -> dict:
    layer = program.layers[layer_index]
    group, lane = divmod(hw_index, arch.lanes)
    position, block = divmod(group, layer.n_blocks)
    where = {"neuron": int(hw_index), "channel": int(block * arch.lanes + lane)}
    if len(layer.out_shape) == 3:
        where["y"], where["x"] = (int(v) for v in divmod(position, layer.out_shape[2]))
    return where


def compare(program: Program, arch: ArchConfig, expected_spikes: list, expected_logits, got_spikes: list,
            got_logits, sample: int, implementation: str) -> list:
    """All mismatches of one sample, in (layer, timestep, neuron) order, then the logits."""
    found = []
    for l, exp, got in zip(emitting_layers(program), expected_spikes, got_spikes):
        for t, i in zip(*np.nonzero(exp != got)):
            found.append({"implementation": implementation, "sample": sample, "layer": program.layers[l].name,
                          "layer_index": l, "timestep": int(t), **_locate(program, arch, l, int(i)),
                          "expected": int(exp[t, i]), "got": int(got[t, i])})
    exp_logits, got_logits = np.asarray(expected_logits), np.asarray(got_logits)
    for o in np.nonzero(exp_logits != got_logits)[0]:
        found.append({"implementation": implementation, "sample": sample, "layer": program.layers[-1].name,
                      "layer_index": len(program.layers) - 1, "timestep": program.timesteps - 1, "neuron": int(o),
                      "logit": int(o), "expected": int(exp_logits[o]), "got": int(got_logits[o])})
    return found


def float_gap(net, program: Program, golden: dict, pixels: torch.Tensor, labels: torch.Tensor) -> dict:
    """Accuracy of the float model and the golden (integer) model, and their mean logit distance."""
    from spikecore.models import DigitsNet

    with torch.no_grad():  # the digits network scales its pixels itself; the others take pixels / input_scale
        inputs = pixels if isinstance(net, DigitsNet) else pixels.to(torch.float32) / net.input_scale
        if inputs.dim() == len(program.input_shape) + 2:  # frames [N, T, ...]: the networks take them time-major
            inputs = inputs.transpose(0, 1)
        float_logits = net(inputs).to(torch.float64)
    scale = float(program.layers[-1].scale[0]) * program.timesteps
    int_logits = golden["logits"].to(torch.float64) / scale
    float_acc = float((float_logits.argmax(1) == labels).double().mean())
    int_acc = float((golden["logits"].argmax(1) == labels).double().mean())
    return {"float_accuracy": float_acc, "hardware_exact_accuracy": int_acc,
            "accuracy_gap_pp": 100.0 * (float_acc - int_acc),
            "logit_mean_abs_diff": float((float_logits - int_logits).abs().mean()),
            "logit_max_abs_diff": float((float_logits - int_logits).abs().max()),
            "prediction_agreement": float((float_logits.argmax(1) == golden["logits"].argmax(1)).double().mean())}


def verify(program: Program, arch: ArchConfig, pixels: torch.Tensor, rtl_results: list | None,
           sim_results: list) -> dict:
    """Compare golden, simulator and (if given) RTL on the same images.

    Returns ``(report, golden)``: the report dict (``bit_exact``, ``samples``, ``mismatches``, ``cycles_sim``, ``cycles_rtl``, ...) and the golden
    model's outputs, which callers reuse for the float-versus-integer comparison. ``first_difference`` is
    :func:`first_difference` of the first sample whose RTL departs from the simulator (``None`` if none does).
    """
    if rtl_results is not None:  # the simulator keeps every event; only the RTL's come through its trace memory
        check_trace_capacity(arch, sim_results)
    golden = run_golden(program, arch, pixels)
    mismatches, count = [], {"sim": 0, "rtl": 0}
    cycles_rtl, cycles_rtl_measured, rtl_overflows = [], [], []
    first_rtl_difference = None
    frames = input_frames(program, pixels)
    for n in range(len(pixels)):
        expected = golden_hw_spikes(program, arch, golden, n)
        sim = sim_results[n]
        sim_spikes = [sim.spikes(l, e.shape[1], program.timesteps) for l, e in zip(emitting_layers(program), expected)]
        found = compare(program, arch, expected, golden["logits"][n].numpy(), sim_spikes, sim.logits, n, "sim")
        if rtl_results is not None:
            rtl = decode_rtl(program, arch, rtl_results[n])
            if rtl_results[n]["trace_overflow"]:  # a truncated trace: its missing spikes are not wrong spikes
                rtl_overflows.append(n)
                found_rtl = [{"implementation": "rtl", "sample": n, "trace_overflow": True,
                              "expected": emitted_events(sim), "got": int(rtl_results[n]["trace_count"])}]
                found_rtl += compare(program, arch, [], golden["logits"][n].numpy(), [], rtl["logits"], n,
                                     "rtl")  # the logits only: no layer's spikes
            else:
                found_rtl = compare(program, arch, expected, golden["logits"][n].numpy(), rtl["spikes"],
                                    rtl["logits"], n, "rtl")
            found_rtl += [{"implementation": "rtl", "sample": n, "stray_event": {"pass": p, "timestep": t, "neuron": i}}
                          for p, t, i in rtl["stray"]]
            count["rtl"] += len(found_rtl)
            found += found_rtl
            if first_rtl_difference is None and "trace_cycles" in rtl_results[n]:
                first_rtl_difference = first_difference(program, arch, frames[n], sim, rtl_results[n], n)
            cycles_rtl.append(int(rtl_results[n]["cycles"]))
            cycles_rtl_measured.append(int(rtl_results[n]["cycles_measured"]))
        count["sim"] += sum(1 for f in found if f["implementation"] == "sim")
        mismatches.extend(found[:MAX_REPORTED_MISMATCHES - len(mismatches)])
    cycles_sim = [int(r.cycles) for r in sim_results]
    saturations = {"golden": int(golden["saturations"]), "sim": int(sum(r.saturations for r in sim_results))}
    if rtl_results is not None:
        saturations["rtl"] = int(sum(r["saturations"] for r in rtl_results))
    report = {
        "bit_exact": count["sim"] == 0 and count["rtl"] == 0 and len(set(saturations.values())) == 1,
        "samples": len(pixels),
        "mismatch_count": count,
        "mismatches": mismatches,
        "cycles_sim": cycles_sim,
        "cycles_rtl": cycles_rtl if rtl_results is not None else None,
        "cycles_rtl_measured": cycles_rtl_measured if rtl_results is not None else None,
        "cycle_exact": (rtl_results is not None and cycles_sim == cycles_rtl == cycles_rtl_measured),
        "rtl_checked": rtl_results is not None,
        "first_difference": first_rtl_difference,
        "saturations": saturations,
        "trace": {"memory_words": arch.memories.trace,
                  "needed_words": max((emitted_events(r) for r in sim_results), default=0),
                  "rtl_overflowed_samples": rtl_overflows},
    }
    return report, golden


def rtl_cache_dir() -> Path:
    """Where generated and compiled cores are cached (``rtl/`` under :func:`spikecore.accel.flows.outputs.cache_root`)."""
    from spikecore.accel.flows.outputs import cache_root

    return cache_root() / "rtl"


def rtl_cycle_limit(sim_results: list) -> int:
    """The busy cycles an RTL inference may take before it counts as hung: twice the simulator's longest
    inference of the batch, and 1000 more (a core that follows the schedule takes exactly the simulator's)."""
    return 2 * max(int(result.cycles) for result in sim_results) + 1000


def run_rtl(program, arch, pixels, simulator: str, flip_bits=(), waves=None, progress=None, coverage=False,
            cycle_limit=None) -> list:
    """Run ``pixels`` through the generated core under ``simulator`` (cached build under :func:`rtl_cache_dir`).

    ``flip_bits`` are ``(memory, word, bit)`` faults injected into the loaded memory image; ``waves`` a folder
    for one FST file per image (``docs/waves.md``); ``progress`` a bar advanced per finished image; with
    ``coverage`` each result has its functional coverage counters (``spikecore.rtl.coverage``); past
    ``cycle_limit`` busy cycles an inference raises ``spikecore.rtl.runner.CoreHang``.
    Returns the runner's raw result per image (decoded by :func:`decode_rtl`).
    """
    from spikecore.rtl.runner import run_inferences

    image = program.memory_image(arch)
    for memory, word, bit in flip_bits:
        if not 0 <= word < len(image[memory]):
            raise UserError(f"--flip-bit: word {word} is outside memory '{memory}' (0..{len(image[memory]) - 1})")
        image[memory][word] ^= 1 << bit
    inputs = host_inputs(program, arch, input_frames(program, pixels))
    return run_inferences(image, inputs, arch, rtl_cache_dir(), simulator=simulator, waves=waves, progress=progress,
                          coverage=coverage, cycle_limit=cycle_limit)


def verify_on_rtl(program: Program, arch: ArchConfig, pixels, simulator: str, net=None, labels=None,
                  flip_bits=(), progress=True, waves=None, coverage=None) -> dict:
    """Golden model, simulator and RTL on ``pixels``: the ``accel verify`` report, without its header.

    The simulator runs first (its trace count is checked against the core's trace capacity before the RTL
    runs for nothing; its cycles bound the RTL's, :func:`rtl_cycle_limit`: a hung core raises
    ``spikecore.rtl.runner.CoreHang`` instead of running forever); with ``net`` (the float network) and ``labels`` the report adds the float vs
    integer accuracy gap. With ``coverage`` (a folder, or a ``.json`` file), the RTL counts its functional
    coverage, written there as JSON and Markdown (``docs/coverage.md``); the report's ``coverage`` then gives
    the files, the summary line and the holes.
    """
    from tqdm import tqdm

    from spikecore.accel.flows.simulation import simulate_images

    sim_results = simulate_images(program, arch, pixels, progress)
    check_trace_capacity(arch, sim_results)
    start = time.perf_counter()
    # one step per completed inference (the build, when there is one, announces itself above the bar)
    with tqdm(total=len(pixels), desc=f"rtl ({simulator})", unit="img", disable=not progress) as bar:
        rtl_results = run_rtl(program, arch, pixels, simulator, flip_bits, waves, bar if progress else None,
                              coverage is not None, rtl_cycle_limit(sim_results))
    rtl_seconds = time.perf_counter() - start
    report, golden = verify(program, arch, pixels, rtl_results, sim_results)
    report.update(simulator=simulator, rtl_seconds=rtl_seconds, flipped_bits=[list(f) for f in flip_bits],
                  waves=None if waves is None else [result["waves_file"] for result in rtl_results])
    if net is not None and labels is not None:
        report["float_vs_integer"] = float_gap(net, program, golden, pixels, labels)
    if coverage is not None:
        from spikecore.rtl import coverage as functional

        found = functional.report(functional.collect(arch, [result["coverage"] for result in rtl_results]))
        json_path, markdown_path, png_path = functional.write_report(found, coverage)
        report["coverage"] = {"report": str(json_path), "markdown": str(markdown_path), "plot": str(png_path),
                              "summary": found["summary"],
                              "percent": found["percent"], "holes": found["holes"], "unexpected": found["unexpected"]}
    return report
