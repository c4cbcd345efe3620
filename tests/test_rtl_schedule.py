"""The layer-major schedule on the RTL (``docs/core.md``, "Schedules").

The trained digits network runs on two layer-major cores: the default's organisation (one bank, one neuron
per update step) with 4 timestep slots for T = 4, loaded through the backdoor, under Icarus; and a
lane-parallel, bit-serial core whose ``max_timesteps`` (5) is not a power of two (8 slots), loaded and read
over the host bus, under Verilator.
Both are bit-exact with the golden model and cycle-exact with the simulator; the simulator's results are
those of the timestep-major schedule in every event, logit and membrane, with fewer cycles and fewer
synapse and weight reads.
"""
import dataclasses

import pytest
import torch

from spikecore.accel.contract.compiler import compile_network
from spikecore.accel.flows.verify import verify
from spikecore.rtl.runner import run_inferences
from spikecore.sim.cost import layer_accesses
from spikecore.sim.engine import simulate_batch

SAMPLES = 2

CASES = {   # configuration changes, backdoor, simulator
    "banked-split": ({"max_timesteps": 4}, True, "icarus"),
    "parallel-bitserial": ({"max_timesteps": 5, "update_lanes": 0, "banks": (), "multivalue": "bitserial"}, False,
                           "verilator"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_major_core_is_bit_and_cycle_exact(case, arch, digits_net, digits_test_set, rtl_cache):
    changes, backdoor, simulator = CASES[case]
    timestep_arch = dataclasses.replace(arch, name=case, **changes)
    layer_arch = dataclasses.replace(timestep_arch, schedule="layer_major")
    program = compile_network(digits_net, layer_arch)
    pixels = digits_test_set[0][:SAMPLES]
    flat = pixels.reshape(SAMPLES, -1).numpy()
    sims = simulate_batch(program, layer_arch, flat)
    reference = simulate_batch(compile_network(digits_net, timestep_arch), timestep_arch, flat)
    for layer_major, timestep_major in zip(sims, reference):
        differences = layer_major.differences(timestep_major, events=True)
        assert not [d for d in differences if d.startswith("events") or d in ("logits", "state", "saturations")]
        assert layer_major.cycles < timestep_major.cycles
        for mine, theirs in zip(layer_major.layers, timestep_major.layers):
            reads = layer_accesses(mine, layer_arch), layer_accesses(theirs, timestep_arch)
            assert reads[0]["weights"][0] < reads[1]["weights"][0] and mine.ac_ops == theirs.ac_ops
    inputs = [[int(v) for v in row] for row in flat.tolist()]
    rtl = run_inferences(program.memory_image(layer_arch), inputs, layer_arch, rtl_cache / "rtl",
                         simulator=simulator, jobs=1, backdoor=backdoor)
    report, _ = verify(program, layer_arch, torch.as_tensor(pixels), rtl, sims)
    assert report["bit_exact"] and report["cycle_exact"], (case, report["mismatches"][:3])
    # one trace word per neuron that fired, with its whole train
    assert [r["trace_count"] for r in rtl] == [s.trace_count for s in sims]
    assert all(r["trace_count"] < t.trace_count for r, t in zip(rtl, reference))
