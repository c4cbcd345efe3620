"""RTL robustness under Icarus: random idle bus traffic, reset in the middle of an inference, and many
back-to-back inferences with no state leaking between them. Every result must still equal the simulator
(and through it the golden model) bit for bit and cycle for cycle.

A small random network keeps these runs short; the interface behaviour does not depend on its size.
"""
import numpy as np
import pytest
import torch

from spikecore.accel.contract.compiler import compile_network
from spikecore.accel.flows.verify import verify
from spikecore.models import DigitsNet
from spikecore.rtl.runner import run_inferences
from spikecore.sim.engine import simulate_batch


@pytest.fixture(scope="module")
def small(arch, digits_test_set):
    torch.manual_seed(7)
    net = DigitsNet(channels=(4, 8), levels=2, timesteps=2).eval()
    with torch.no_grad():
        for bn in (net.bn0, net.bn1):
            bn.running_var.uniform_(0.05, 0.3)  # makes the random network fire a fair amount
            bn.bias.uniform_(0.0, 0.5)
    program = compile_network(net, arch)
    pixels = digits_test_set[0][:3]
    return program, pixels


def _check(program, arch, pixels, results):
    sims = simulate_batch(program, arch, pixels.reshape(len(pixels), -1).numpy())
    report, _ = verify(program, arch, pixels, results, sims)
    assert report["mismatches"] == [] and report["bit_exact"] and report["cycle_exact"]
    assert sum(len(r["trace"]) for r in results) > 50  # the network really spikes
    return report


def _inputs(pixels):
    return [[int(v) for v in row] for row in pixels.reshape(len(pixels), -1).tolist()]


def test_random_idle_cycles_on_the_host_bus(small, arch, rtl_cache):
    program, pixels = small
    plain = run_inferences(program.memory_image(arch), _inputs(pixels), arch, rtl_cache / "rtl", jobs=1)
    # the program, trace and state over the bus this time, word by word with idle cycles between: the same
    # results as through the simulator's backdoor files
    idle = run_inferences(program.memory_image(arch), _inputs(pixels), arch, rtl_cache / "rtl", jobs=1,
                          idle_seed=2026, backdoor=False)
    assert idle == plain
    _check(program, arch, pixels, idle)


@pytest.mark.parametrize("after_cycles", [5, 300])
def test_reset_in_the_middle_of_an_inference(small, arch, rtl_cache, after_cycles):
    program, pixels = small
    results = run_inferences(program.memory_image(arch), _inputs(pixels[:2]), arch, rtl_cache / "rtl", jobs=1,
                             reset_after_cycles=after_cycles)
    _check(program, arch, pixels[:2], results)


def test_back_to_back_inferences_leak_no_state(small, arch, rtl_cache):
    program, pixels = small
    order = [0, 1, 0, 2, 1, 0]
    results = run_inferences(program.memory_image(arch), _inputs(pixels[order]), arch, rtl_cache / "rtl", jobs=1)
    for i, a in enumerate(order):
        for j, b in enumerate(order):
            if a == b:
                assert results[i] == results[j]
    assert results[0] != results[1]
    _check(program, arch, pixels[order], results)
    assert np.all(np.array([r["cycles"] for r in results]) > 0)
