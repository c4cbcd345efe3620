"""Verification: golden model == simulator == RTL, every spike of every layer at every timestep.

The golden model (``models.run_integer_network``) evaluates the quantized stages densely with PyTorch;
the simulator executes the Program's memory tables event by event; the RTL runs the generated Verilog.
Integers are compared with equality. The float model is compared with the golden one only by accuracy
and logit distance, which are reported.

Spikes are compared only from a complete trace. A trace memory too small for the events the network emits
(``memories.trace``) is bad input, not a disagreement: :func:`check_trace_capacity` refuses it with a
:class:`UserError` (exit status 2) naming the sample and the words needed, before any RTL spike is compared
(the simulator keeps every event whatever the trace memory holds, so golden == simulator is checked anyway). An
RTL whose trace overflows where the simulator's did not is a fault of the RTL: the sample's spikes are not
compared, and the overflow is reported as its mismatch.
"""
from __future__ import annotations

import numpy as np
import torch

from models import run_integer_network

from .config import ArchConfig
from .errors import UserError
from .layouts import state_layout, trace_layout
from .program import Program

MAX_REPORTED_MISMATCHES = 10


def emitting_layers(program: Program) -> list:
    """Indices of the stages that emit events (all but the readout), the order of ``golden["spikes"]``."""
    return [i for i, layer in enumerate(program.layers) if layer.fires]


def run_golden(program: Program, arch: ArchConfig, pixels: torch.Tensor) -> dict:
    """The golden model on the Program's integer stages."""
    return run_integer_network(program.integer_stages(), pixels, program.timesteps, arch.membrane_bits,
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
    """Trace words one simulated inference (a ``sim.engine.SimResult``) writes: its emitted events (layer-major:
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
    from models import DigitsNet

    with torch.no_grad():  # the digits network scales its pixels itself; the others take pixels / input_scale
        inputs = pixels if isinstance(net, DigitsNet) else pixels.to(torch.float32) / net.input_scale
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
    model's outputs, which callers reuse for the float-versus-integer comparison.
    """
    if rtl_results is not None:  # the simulator keeps every event; only the RTL's come through its trace memory
        check_trace_capacity(arch, sim_results)
    golden = run_golden(program, arch, pixels)
    mismatches, count = [], {"sim": 0, "rtl": 0}
    cycles_rtl, cycles_rtl_measured, rtl_overflows = [], [], []
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
        "saturations": saturations,
        "trace": {"memory_words": arch.memories.trace,
                  "needed_words": max((emitted_events(r) for r in sim_results), default=0),
                  "rtl_overflowed_samples": rtl_overflows},
    }
    return report, golden
