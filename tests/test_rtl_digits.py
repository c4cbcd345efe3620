"""The trained digits network on the generated Verilog under Icarus (cocotb): golden == simulator == RTL.

Every layer's spikes at every timestep, the logits and the saturation count are compared with equality
on 20 test images, and the RTL's cycle count (register and testbench-measured) equals the simulator's.
A flipped weight bit in the RTL's memory image must be caught and located.
"""
import numpy as np
import pytest

from spikecore.accel.flows.verify import verify
from spikecore.rtl.runner import run_inferences
from spikecore.sim.engine import simulate_batch

SAMPLES = 20


@pytest.fixture(scope="module")
def rtl_workdir(rtl_cache):
    return rtl_cache / "rtl"  # shared with the command-line tests: one build per session


def _inputs(pixels):
    return [[int(v) for v in row] for row in pixels.reshape(len(pixels), -1).tolist()]


def test_digits_network_bit_exact_and_cycle_exact_on_rtl(digits_program, arch, digits_test_set, rtl_workdir):
    pixels = digits_test_set[0][:SAMPLES]
    rtl = run_inferences(digits_program.memory_image(arch), _inputs(pixels), arch, rtl_workdir)
    sim = simulate_batch(digits_program, arch, pixels.reshape(SAMPLES, -1).numpy())
    report, _ = verify(digits_program, arch, pixels, rtl, sim)
    assert report["mismatches"] == [], report["mismatches"][:3]
    assert report["bit_exact"] is True and report["samples"] == SAMPLES
    assert report["cycles_rtl"] == report["cycles_sim"] == report["cycles_rtl_measured"]
    assert report["cycle_exact"] is True
    assert all(not r["trace_overflow"] for r in rtl)
    assert sum(len(r["trace"]) for r in rtl) > 20 * 500  # thousands of spikes really compared


def test_flipped_weight_bit_is_caught_and_located(digits_program, arch, digits_test_set, rtl_workdir):
    pixels = digits_test_set[0][:1]
    image = digits_program.memory_image(arch)
    # The weight row that conv0 adds for the first nonzero pixel's first synapse: surely used at t = 0.
    mem = digits_program.memories
    first_pixel = int(np.nonzero(pixels[0].reshape(-1).numpy())[0][0])
    synapse = int(mem["pointers"]["start"][first_pixel])
    wrow = int(mem["synapses"]["wrow"][synapse])
    lane = int(np.argmax(np.abs(mem["weights"]["w"][wrow])))
    image["weights"][wrow] ^= 1 << (lane * arch.weight_bits + arch.weight_bits - 2)  # a high magnitude bit
    rtl = run_inferences(image, _inputs(pixels), arch, rtl_workdir)
    sim = simulate_batch(digits_program, arch, pixels.reshape(1, -1).numpy())
    report, _ = verify(digits_program, arch, pixels, rtl, sim)
    assert report["bit_exact"] is False
    assert report["mismatch_count"]["sim"] == 0 and report["mismatch_count"]["rtl"] > 0
    first = report["mismatches"][0]
    assert first["implementation"] == "rtl" and first["layer"] == "conv0" and first["timestep"] == 0
    row = int(mem["synapses"]["row"][synapse])
    assert first["neuron"] // arch.lanes == row - digits_program.layers[0].state_base  # the corrupted group
