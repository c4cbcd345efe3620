"""Golden model == simulator on the trained digits network, and the accuracy contract."""
import dataclasses

import numpy as np

from spikecore.accel.contract.compiler import compile_network

from spikecore.accel.flows.verify import compare, golden_hw_spikes, float_gap, run_golden, verify
from spikecore.sim.engine import simulate, simulate_batch


def test_golden_equals_simulator_every_spike(digits_program, arch, digits_test_set):
    pixels = digits_test_set[0][:60]
    results = simulate_batch(digits_program, arch, pixels.reshape(60, -1).numpy())
    report, _ = verify(digits_program, arch, pixels, None, results)
    assert report["mismatch_count"]["sim"] == 0 and report["mismatches"] == []
    assert report["bit_exact"] and report["saturations"]["golden"] == report["saturations"]["sim"]
    assert sum(len(idx) for r in results for l in r.events for idx, _ in l) > 1000  # the network really spikes


def test_simulator_cycles_follow_the_schedule(digits_program, arch, digits_test_set):
    """Recompute docs/core.md's cycle formula from the golden spikes and the fan-out table."""
    pixels = digits_test_set[0][:5]
    golden = run_golden(digits_program, arch, pixels)
    count = digits_program.memories["pointers"]["count"]
    for n in range(len(pixels)):
        flat = pixels[n].reshape(-1).numpy()
        inputs = [flat] + [s for s in golden_hw_spikes(digits_program, arch, golden, n)]
        steps = arch.update_steps                            # state words per row, update steps per group
        step_cycles = 2 if steps == 1 else 3
        expect = digits_program.state_rows * steps + digits_program.n_inputs + 1
        for t in range(digits_program.timesteps):
            for l, layer in enumerate(digits_program.layers):
                values = inputs[l] if l == 0 else inputs[l][t]
                idx = np.nonzero(values)[0]
                c, v = count[layer.sources[0].ptr_base + idx], values[idx]
                emitted = np.count_nonzero(inputs[l + 1][t]) if layer.fires else 0
                expect += 2 + 1 + int((4 + 2 * c + c * v).sum()) + 1 + step_cycles * steps * layer.n_groups \
                    + emitted + 1
        assert simulate(digits_program, arch, flat).cycles == expect


def test_layer_major_cycles_follow_the_schedule(digits_net, arch, digits_test_set):
    """docs/core.md's layer-major cycle formula from the golden spikes: per pass, one event word per input
    neuron that fired at any timestep, its synapse rows fetched once and added into one accumulator word per
    timestep it fired in; the update runs every timestep of a step, then emits one word per neuron."""
    layer_arch = dataclasses.replace(arch, schedule="layer_major", max_timesteps=4)
    program = compile_network(digits_net, layer_arch)
    pixels = digits_test_set[0][:5]
    golden = run_golden(program, layer_arch, pixels)
    count = program.memories["pointers"]["count"]
    timesteps, steps = program.timesteps, layer_arch.update_steps
    step_cycles = 2 if steps == 1 else 3
    for n in range(len(pixels)):
        flat = pixels[n].reshape(-1).numpy()
        trains = [np.repeat(flat[None], timesteps, 0)] + golden_hw_spikes(program, layer_arch, golden, n)  # [T, n]
        expect = program.state_rows * max(steps, 4) + program.n_inputs + 1       # 4 accumulator words per row
        for l, layer in enumerate(program.layers):
            fired = np.nonzero(trains[l].any(0))[0]
            values = trains[l][:, fired]
            c = count[layer.sources[0].ptr_base + fired]
            accumulate = 1 + int((4 + c * (1 + (values > 0).sum(0) + values.sum(0))).sum())
            emitted = int(trains[l + 1].any(0).sum()) if layer.fires else 0
            expect += 2 + accumulate + 1 + step_cycles * steps * layer.n_groups * timesteps + emitted + 1
        result = simulate(program, layer_arch, flat)
        assert result.cycles == expect
        assert result.cycles < simulate(compile_network(digits_net, arch), arch, flat).cycles


def test_accuracy_float_and_hardware_exact(digits_net, digits_program, arch, digits_test_set):
    pixels, labels = digits_test_set
    golden = run_golden(digits_program, arch, pixels)
    gap = float_gap(digits_net, digits_program, golden, pixels, labels)
    assert gap["float_accuracy"] >= 0.97
    assert abs(gap["accuracy_gap_pp"]) <= 0.5
    assert gap["prediction_agreement"] >= 0.98


def test_compare_locates_a_flipped_spike(digits_program, arch, digits_test_set):
    pixels = digits_test_set[0][:1]
    golden = run_golden(digits_program, arch, pixels)
    expected = golden_hw_spikes(digits_program, arch, golden, 0)
    got = [e.copy() for e in expected]
    t, i = 2, int(digits_program.layers[1].hw_index(arch.lanes)[37])
    got[1][t, i] += 1
    found = compare(digits_program, arch, expected, golden["logits"][0].numpy(), got,
                    golden["logits"][0].numpy(), 0, "sim")
    assert len(found) == 1
    assert (found[0]["layer"], found[0]["timestep"], found[0]["neuron"]) == ("conv1", 2, i)
    assert found[0]["channel"] == 37 // 16 and (found[0]["y"], found[0]["x"]) == divmod(37 % 16, 4)
