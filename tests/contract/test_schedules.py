"""``docs/core.md``'s cycle formulas and what the layer-major schedule saves, on the trained digits network.

The suite's schedule check walks ``docs/core.md``'s schedule event by event
(``spikecore.accel.flows.verify.emission_schedule``); here the closed formulas of ``docs/core.md`` are recomputed
from the golden model's spikes and the fan-out table, a third statement of the schedule, and must give the
simulator's cycles. The layer-major schedule must compute exactly what the timestep-major one computes (every
event, logit, membrane and saturation) in fewer cycles, with fewer weight reads and trace words.
"""
import dataclasses

import numpy as np
import pytest

from spikecore.accel.contract.compiler import compile_network
from spikecore.accel.flows.verify import golden_hw_spikes, run_golden
from spikecore.sim.cost import layer_accesses
from spikecore.sim.engine import simulate, simulate_batch

#: Timestep-major cores whose layer-major twin is compared: the default's organisation (one bank, one neuron per
#: update step) with 4 timestep slots; a lane-parallel, bit-serial core whose ``max_timesteps`` (5) is not a power
#: of two (8 slots).
SCHEDULE_CORES = {
    "banked-split": {"max_timesteps": 4},
    "parallel-bitserial": {"max_timesteps": 5, "update_lanes": 0, "banks": (), "multivalue": "bitserial"},
}


def test_timestep_major_cycles_follow_the_formula(digits_program, arch, digits_test_set):
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


def test_layer_major_cycles_follow_the_formula(digits_net, arch, digits_test_set):
    """Per pass, one event word per input neuron that fired at any timestep, its synapse rows fetched once and
    added into one accumulator word per timestep it fired in; the update runs every timestep of a step, then
    emits one word per neuron."""
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
        assert simulate(program, layer_arch, flat).cycles == expect


@pytest.mark.parametrize("core", sorted(SCHEDULE_CORES))
def test_layer_major_computes_the_same_in_fewer_cycles_and_reads(core, arch, digits_net, digits_test_set):
    timestep_arch = dataclasses.replace(arch, name=core, **SCHEDULE_CORES[core])
    layer_arch = dataclasses.replace(timestep_arch, schedule="layer_major")
    flat = digits_test_set[0][:2].reshape(2, -1).numpy()
    layer_major = simulate_batch(compile_network(digits_net, layer_arch), layer_arch, flat)
    timestep_major = simulate_batch(compile_network(digits_net, timestep_arch), timestep_arch, flat)
    for mine, theirs in zip(layer_major, timestep_major):
        differences = mine.differences(theirs, events=True)
        assert not [d for d in differences if d.startswith("events") or d in ("logits", "state", "saturations")]
        assert mine.cycles < theirs.cycles
        # one trace word per neuron that fired, with its whole train
        assert mine.trace_count < theirs.trace_count
        for a, b in zip(mine.layers, theirs.layers):
            reads = layer_accesses(a, layer_arch), layer_accesses(b, timestep_arch)
            assert reads[0]["weights"][0] < reads[1]["weights"][0] and a.ac_ops == b.ac_ops
