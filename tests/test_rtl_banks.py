"""Configurations of the core's organisation on the RTL: banks and the split update.

The default configuration (one bank, one neuron per update step) runs in every RTL test that takes the
``arch`` fixture. Here a lane-parallel-width alternative (two neurons per step, bit-serial values) with two
banks of other members runs the trained digits network on Verilator, with the program loaded and the
results read both through the backdoor and over the host bus (which writes the packed slots of a bank word
one at a time through its byte enables and reads them back through the slot multiplexer): bit-exact with
the golden model and the simulator, and cycle-exact.
"""
import dataclasses

import pytest
import torch

from spikecore.accel.contract.compiler import compile_network
from spikecore.accel.contract.config import arch_from_dict
from spikecore.accel.contract.layouts import physical_memories
from spikecore.accel.flows.verify import verify
from spikecore.rtl.runner import run_inferences
from spikecore.sim.engine import simulate_batch

SAMPLES = 2


@pytest.fixture(scope="module")
def banked_arch(arch):
    data = arch.to_dict()
    data.update(name="banked-split", update_lanes=2, multivalue="bitserial",
                banks=[["layers", "pointers", "synapses", "weights"], ["params", "inputs", "trace"]])
    return arch_from_dict(data, "test configuration")


def test_banked_split_core_is_bit_and_cycle_exact(banked_arch, digits_net, digits_test_set, rtl_cache):
    banks = [memory for memory in physical_memories(banked_arch) if memory.is_bank]
    assert [sorted(b.members) for b in banks] == [["layers", "pointers", "synapses", "weights"],
                                                  ["inputs", "params", "trace"]]
    assert any(slot.pack > 1 for b in banks for slot in b.members.values())  # packed slots are exercised
    program = compile_network(digits_net, banked_arch)
    pixels = digits_test_set[0][:SAMPLES]
    inputs = [[int(v) for v in row] for row in pixels.reshape(SAMPLES, -1).tolist()]
    sims = simulate_batch(program, banked_arch, pixels.reshape(SAMPLES, -1).numpy())
    # the split update's cycles: 3 per step, 4 steps per group, and CLEAR over 4 words per row
    plain = dataclasses.replace(banked_arch, update_lanes=0, banks=())
    parallel = simulate_batch(compile_network(digits_net, plain), plain, pixels.reshape(SAMPLES, -1).numpy(),
                              engine="tables")
    for split, whole in zip(sims, parallel):
        # the same events, logits and membranes; only the cycles differ
        differences = split.differences(whole, events=True)
        assert "cycles" in differences
        assert not [d for d in differences if d.startswith("events") or d in ("logits", "state", "saturations")]
        groups = sum(a.neuron_updates for a in split.layers)
        assert split.cycles - whole.cycles == groups * (3 * 4 - 2) + program.state_rows * 3
    image = program.memory_image(banked_arch)
    for backdoor in (True, False):
        rtl = run_inferences(image, inputs, banked_arch, rtl_cache / "rtl", simulator="verilator", jobs=1,
                             backdoor=backdoor)
        report, _ = verify(program, banked_arch, torch.as_tensor(pixels), rtl, sims)
        assert report["bit_exact"] and report["cycle_exact"], (backdoor, report["mismatches"][:3])
        assert all(len(r["trace"]) > 500 for r in rtl)
