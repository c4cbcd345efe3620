"""The whole core on a tiny hand-built program, in Amaranth's simulator and as Verilog under Icarus.

Program (small arch, 4 lanes, 2 levels): layer 0 is linear 6 pixels -> 8 neurons (2 groups), K = 2,
shift 2; layer 1 is the classifier 8 -> 4 (1 group), K = 1, shift 0, threshold 2^(M-1) - 1. The
accumulator is deliberately narrow so that some inputs saturate it (the hardware defines that case), and
the membranes narrow enough for logits to saturate. The inline reference below evaluates the program in
the core's order with ``spikecore.models.hwexact.neuron_step_int`` and charges cycles by the docs/core.md formula.
"""
import re
import subprocess

import numpy as np
import pytest
import torch
from amaranth.sim import Simulator

from spikecore.accel.contract.config import arch_from_dict, default_arch
from spikecore.accel.contract.layouts import KIND_NEURON, REGION_INPUT, all_layouts
from spikecore.models.hwexact import neuron_step_int
from spikecore.rtl.core import Core
from spikecore.rtl.hostmap import HOST_MAP
from spikecore.rtl.runner import run_inferences
from spikecore.rtl.verilog import generate

TIMESTEPS = 3
N_INPUTS, HIDDEN, CLASSES = 6, 8, 4


def tiny_arch(trace_depth=64):
    return arch_from_dict({
        "name": "tiny", "lanes": 4, "weight_bits": 8, "acc_bits": 10, "membrane_bits": 12, "input_bits": 4,
        "max_levels": 2, "max_timesteps": 4,
        "memories": {"layers": 2, "pointers": 16, "synapses": 32, "weights": 32, "params": 4, "state": 4,
                     "events": 16, "inputs": 8, "trace": trace_depth},
    })


def build_network(arch, seed=5):
    """Random integer weights; some weight rows are all zero and get no synapse row (count 0 or 1)."""
    rng = np.random.default_rng(seed)
    lanes, m_hi = arch.lanes, (1 << (arch.membrane_bits - 1)) - 1
    w0 = rng.integers(-22, 23, (HIDDEN, N_INPUTS))
    w0[lanes:, 1] = 0                 # input 1 reaches only group 0
    w0[:, 4] = 0                      # input 4 reaches nothing
    w1 = rng.integers(-60, 61, (CLASSES, HIDDEN))
    w1[:, 6] = 0                      # hidden neuron 6 reaches nothing
    return {
        "layers": [
            {"w": w0, "bias": rng.integers(-20, 21, HIDDEN), "levels": 2, "shift": 2,
             "theta": np.stack([rng.integers(60, 120, HIDDEN), rng.integers(200, 400, HIDDEN)])},
            {"w": w1, "bias": rng.integers(-30, 31, CLASSES), "levels": 1, "shift": 0,
             "theta": np.full((1, CLASSES), m_hi)},
        ],
    }


def compile_program(arch, network):
    """Pack the network into memory images: one weight row per (input, group) with any nonzero weight."""
    layouts = all_layouts(arch)
    lanes, max_levels = arch.lanes, arch.max_levels
    regions = [(REGION_INPUT, 1), (1, 2)]
    descriptors, pointers, synapses, weights, params = [], [], [], [], []
    fanout = []                                       # per layer: synapse rows of each input
    state_base = 0
    for number, layer in enumerate(network["layers"]):
        w = layer["w"]
        n_out, n_in = w.shape
        n_groups = -(-n_out // lanes)
        descriptors.append({
            "kind": KIND_NEURON, "update": 1, "clear_acc": 1, "truth_table": 0,
            "levels": layer["levels"], "shift": layer["shift"], "in_region": regions[number][0],
            "out_region": regions[number][1], "ptr_base": len(pointers), "acc_base": state_base,
            "state_base": state_base,
            "n_groups": n_groups, "param_base": len(params), "n_blocks": n_groups,
        })
        counts = []
        for i in range(n_in):
            start = len(synapses)
            for g in range(n_groups):
                row = np.zeros(lanes, dtype=np.int64)
                row[:min(lanes, n_out - g * lanes)] = w[g * lanes:(g + 1) * lanes, i]
                if row.any():
                    synapses.append((state_base + g, len(weights)))
                    weights.append(row)
            pointers.append((start, len(synapses) - start))
            counts.append(len(synapses) - start)
        fanout.append(counts)
        for g in range(n_groups):
            bias = np.zeros(lanes, dtype=np.int64)
            theta = np.zeros((lanes, max_levels), dtype=np.int64)
            outputs = slice(g * lanes, min((g + 1) * lanes, n_out))
            bias[:outputs.stop - outputs.start] = layer["bias"][outputs]
            theta[:outputs.stop - outputs.start, :layer["levels"]] = layer["theta"][:, outputs].T
            params.append((bias, theta))
        state_base += n_groups
    column = lambda rows, key: [r[key] for r in rows]
    image = {
        "layers": layouts["layers"].pack(**{f.name: column(descriptors, f.name) for f in layouts["layers"].fields}),
        "pointers": layouts["pointers"].pack(start=[p[0] for p in pointers], count=[p[1] for p in pointers]),
        "synapses": layouts["synapses"].pack(row=[s[0] for s in synapses], wrow=[s[1] for s in synapses]),
        "weights": layouts["weights"].pack(w=np.array(weights)),
        "params": layouts["params"].pack(bias=np.array([p[0] for p in params]),
                                         threshold=np.array([p[1] for p in params])),
        "registers": {"n_layers": len(descriptors), "timesteps": TIMESTEPS, "n_inputs": N_INPUTS,
                      "state_rows": state_base},
    }
    return image, fanout


def saturating_accumulate(weight_matrix, events, acc_bits):
    """The core's accumulation: events ascending, v additions of the weight column, each clamped."""
    lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    acc = np.zeros(weight_matrix.shape[0], dtype=np.int64)
    saturations = 0
    for index, value in events:
        for _ in range(value):
            total = acc + weight_matrix[:, index]
            # Rows of all-zero weights have no synapse row; adding 0 never clamps, so this is the same.
            acc = np.clip(total, lo, hi)
            saturations += int((acc != total).sum())
    return acc, saturations


def reference(arch, network, fanout, image, pixels):
    """Expected trace, state rows, saturations and cycles of one inference on ``pixels``: an image, the same at
    every timestep, or (a core with ``event_input``) frames ``[T, n_inputs]``, frame ``t`` scanned at the start
    of timestep ``t`` in ``w_t + 2`` cycles (``docs/core.md``, "Event input")."""
    layouts = all_layouts(arch)
    lanes, max_levels, bits = arch.lanes, arch.max_levels, arch.membrane_bits
    registers = image["registers"]
    timesteps = registers["timesteps"]
    frames = np.broadcast_to(np.asarray(pixels, np.int64).reshape(-1, N_INPUTS), (timesteps, N_INPUTS))
    membranes = [np.zeros((layer["levels"], layer["w"].shape[0]), dtype=np.int64) for layer in network["layers"]]
    trace, saturations = [], 0
    steps = arch.update_steps                                           # S; A = 1
    step_cycles = 2 if steps == 1 else 3                                # URD, (USUM,) UWR
    cycles = registers["state_rows"] * steps                            # CLEAR
    if not arch.event_input:
        cycles += registers["n_inputs"] + 1                             # SCAN, once
    for t in range(timesteps):
        events = [(i, int(p)) for i, p in enumerate(frames[t]) if p != 0]
        if arch.event_input:
            cycles += len(events) + 2                                   # SCAN of timestep t
        for number, layer in enumerate(network["layers"]):
            n_out = layer["w"].shape[0]
            acc, acc_saturations = saturating_accumulate(layer["w"], events, arch.acc_bits)
            x = torch.tensor(acc + layer["bias"])
            u, count, neuron_saturations = neuron_step_int(
                torch.tensor(membranes[number]), x, torch.tensor(layer["theta"]), layer["shift"], bits)
            membranes[number] = u.numpy()
            saturations += acc_saturations + neuron_saturations
            count = count.numpy()
            n_groups = -(-n_out // lanes)
            cycles += 2 + 1 + sum(4 + fanout[number][i] * (2 + v) for i, v in events) + 1
            cycles += sum(step_cycles * steps + int(np.count_nonzero(count[g * lanes:(g + 1) * lanes]))
                          for g in range(n_groups)) + 1
            events = [(o, int(c)) for o, c in enumerate(count) if c]
            trace += [(t, number, o, c) for o, c in events]
    state_u = []
    for number, layer in enumerate(network["layers"]):
        n_out = layer["w"].shape[0]
        for g in range(-(-n_out // lanes)):
            row = np.zeros((lanes, max_levels), dtype=np.int64)
            outputs = slice(g * lanes, min((g + 1) * lanes, n_out))
            row[:outputs.stop - outputs.start, :layer["levels"]] = membranes[number][:, outputs].T
            state_u.append(row)
    trace_words = layouts["trace"].pack(timestep=[e[0] for e in trace], layer=[e[1] for e in trace],
                                        index=[e[2] for e in trace], value=[e[3] for e in trace])
    return {
        "trace": trace_words[:arch.memories.trace],
        "trace_overflow": int(len(trace) > arch.memories.trace),
        "saturations": saturations,
        "state": layouts["state"].pack(u=np.array(state_u)),
        "cycles": cycles,
        "logits": membranes[-1][0].tolist(),
    }


def random_inputs(seed, count):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 16, N_INPUTS) * (rng.random(N_INPUTS) < 0.7) for _ in range(count)]
    images.append(np.array([1, 0, 2, 0, 3, 1]))       # small pixels: no accumulator saturation
    return [[int(p) for p in image] for image in images]


def simulate_amaranth(arch, image, inputs):
    """Drive the host interface of ``spikecore.rtl.core.Core`` in Amaranth's simulator, as the cocotb harness does."""
    dut = Core(arch)
    results = []

    async def testbench(ctx):
        async def write(select, address, value):
            ctx.set(dut.host_sel, select)
            ctx.set(dut.host_addr, address)
            ctx.set(dut.host_wdata, value)
            ctx.set(dut.host_we, 1)
            await ctx.tick()
            ctx.set(dut.host_we, 0)

        async def read(select, address):
            ctx.set(dut.host_sel, select)
            ctx.set(dut.host_addr, address)
            await ctx.tick()
            return ctx.get(dut.host_rdata)

        for name in ("layers", "pointers", "synapses", "weights", "params"):
            for address, word in enumerate(image[name]):
                await write(HOST_MAP.select(name), address, word)
        for name, value in image["registers"].items():
            await write(HOST_MAP.control_select, HOST_MAP.address(name), value)
        for pixels in inputs:
            for address, pixel in enumerate(pixels):
                await write(HOST_MAP.select("inputs"), address, pixel)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            measured = 0
            while not ctx.get(dut.done):
                assert ctx.get(dut.busy)
                await ctx.tick()
                measured += 1
            assert not ctx.get(dut.busy)
            registers = {name: await read(HOST_MAP.control_select, HOST_MAP.address(name))
                         for name in ("cycles", "trace_count", "trace_overflow", "saturations")}
            results.append({
                "cycles": registers["cycles"], "cycles_measured": measured,
                "trace": [await read(HOST_MAP.select("trace"), a) for a in range(registers["trace_count"])],
                "trace_overflow": registers["trace_overflow"], "saturations": registers["saturations"],
                "state": [await read(HOST_MAP.select("state"), r) for r in range(image["registers"]["state_rows"])],
            })

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return results


def check_results(arch, network, fanout, image, inputs, results):
    layouts = all_layouts(arch)
    assert len(results) == len(inputs)
    total_saturations = total_events = 0
    for pixels, got in zip(inputs, results):
        expected = reference(arch, network, fanout, image, pixels)
        assert got["cycles"] == expected["cycles"], pixels
        assert got["cycles_measured"] == expected["cycles"], pixels
        assert got["trace"] == expected["trace"], pixels
        assert got["trace_overflow"] == expected["trace_overflow"], pixels
        assert got["saturations"] == expected["saturations"], pixels
        assert got["state"] == expected["state"], pixels
        logits = layouts["state"].unpack(got["state"][-1:])["u"][0, :CLASSES, 0].tolist()
        assert logits == expected["logits"]
        total_saturations += expected["saturations"]
        total_events += len(expected["trace"])
    # The inputs must exercise spikes and saturation, else the comparison above proves little.
    assert total_events > 0 and total_saturations > 0
    assert any(reference(arch, network, fanout, image, p)["saturations"] == 0 for p in inputs)


def test_core_in_amaranth_simulation_matches_reference():
    arch = tiny_arch()
    network = build_network(arch)
    image, fanout = compile_program(arch, network)
    inputs = random_inputs(11, 3)
    check_results(arch, network, fanout, image, inputs, simulate_amaranth(arch, image, inputs))


def test_core_trace_overflow_in_amaranth_simulation():
    arch = tiny_arch(trace_depth=4)
    network = build_network(arch)
    image, fanout = compile_program(arch, network)
    inputs = [[15, 15, 15, 0, 15, 15]]
    expected = reference(arch, network, fanout, image, inputs[0])
    assert expected["trace_overflow"] == 1
    check_results(arch, network, fanout, image, inputs + random_inputs(3, 1),
                  simulate_amaranth(arch, image, inputs + random_inputs(3, 1)))


def test_core_verilog_under_icarus_matches_reference(tmp_path):
    arch = tiny_arch()
    network = build_network(arch)
    image, fanout = compile_program(arch, network)
    inputs = random_inputs(12, 3)
    check_results(arch, network, fanout, image, inputs, run_inferences(image, inputs, arch, tmp_path))


def test_runner_reports_image_too_large(tmp_path):
    arch = tiny_arch()
    image, _ = compile_program(arch, build_network(arch))
    image = dict(image, weights=[0] * (arch.memories.weights + 1))
    with pytest.raises(ValueError, match=r"image\['weights'\] has 33 words, the 'weights' memory holds 32"):
        run_inferences(image, [[0] * N_INPUTS], arch, tmp_path)


def test_runner_raises_with_log_tail_when_the_harness_fails(tmp_path):
    arch = tiny_arch()
    image, _ = compile_program(arch, build_network(arch))
    image = dict(image, weights=[1 << 900])            # wider than host_wdata: the harness cannot drive it
    with pytest.raises(RuntimeError, match=r"(?s)RTL simulation under icarus failed.*log tail.*out of range"):
        run_inferences(image, [[0] * N_INPUTS], arch, tmp_path, backdoor=False)


@pytest.mark.parametrize("backdoor", [False, True])
def test_every_word_the_host_writes_is_read_back(tmp_path, backdoor):
    """Planted errors: a pointer word and a pixel wider than their memories lose their top bit in the RAM, and
    the read-back after loading names them; the right words pass it (the other tests here)."""
    from spikecore.rtl.runner import HostReadBack
    arch = tiny_arch()
    image, _ = compile_program(arch, build_network(arch))
    widths = {name: layout.width for name, layout in all_layouts(arch).items()}
    assert widths["pointers"] < HOST_MAP.data_bits(arch) and widths["inputs"] < HOST_MAP.data_bits(arch)
    if not backdoor:  # the program goes over the bus only without the backdoor
        wide = dict(image, pointers=[image["pointers"][0] | (1 << widths["pointers"])] + image["pointers"][1:])
        with pytest.raises(HostReadBack, match=r"pointers word 0 reads 0x[0-9a-f]+, 0x[0-9a-f]+ was written"):
            run_inferences(wide, [[0] * N_INPUTS], arch, tmp_path, backdoor=False)
    pixels = [[1] * N_INPUTS, [0, 1 << arch.input_bits] + [0] * (N_INPUTS - 2)]
    with pytest.raises(HostReadBack, match=r"inputs word 1 reads 0x0, 0x10 was written"):
        run_inferences(image, pixels, arch, tmp_path, backdoor=backdoor)


def test_default_arch_verilog_is_deterministic_and_compiles(tmp_path):
    first = generate(default_arch(), tmp_path / "a")
    second = generate(default_arch(), tmp_path / "b")
    text = first.read_text()
    assert first.name == "core.v" and text == second.read_text()
    assert "module core(" in text
    for port in ("clk", "rst", "host_sel", "host_addr", "host_wdata", "host_we", "host_rdata", "start", "busy",
                 "done"):
        assert re.search(rf"^  (input|output) (\[\d+:0\] )?{port};$", text, re.MULTILINE), port
    compiled = subprocess.run(["iverilog", "-g2012", "-s", "core", "-o", str(tmp_path / "core.vvp"), str(first)],
                              capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr[-2000:]
