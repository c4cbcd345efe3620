"""The verification flow behind ``accel verify`` (``spikecore.accel.flows.verify``): its report, the accuracy
contract between the float and the hardware-exact model, and how it locates a difference. Whether the
implementations agree is the contract suite's question (``tests/contract``); this is about what the flow
reports when they do and when they do not.
"""
import numpy as np
import pytest

from spikecore.accel.flows.verify import compare, float_gap, golden_hw_spikes, run_golden, verify
from spikecore.rtl.runner import run_inferences
from spikecore.sim.engine import simulate_batch


def test_the_report_of_an_agreeing_simulator(digits_program, arch, digits_test_set):
    pixels = digits_test_set[0][:60]
    results = simulate_batch(digits_program, arch, pixels.reshape(60, -1).numpy())
    report, _ = verify(digits_program, arch, pixels, None, results)
    assert report["mismatch_count"]["sim"] == 0 and report["mismatches"] == []
    assert report["bit_exact"] and report["saturations"]["golden"] == report["saturations"]["sim"]
    assert sum(len(idx) for r in results for l in r.events for idx, _ in l) > 1000  # the network really spikes


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


def test_flipped_weight_bit_on_the_rtl_is_caught_and_located(digits_program, arch, digits_test_set, rtl_cache):
    pixels = digits_test_set[0][:1]
    image = digits_program.memory_image(arch)
    # The weight row that conv0 adds for the first nonzero pixel's first synapse: surely used at t = 0.
    mem = digits_program.memories
    first_pixel = int(np.nonzero(pixels[0].reshape(-1).numpy())[0][0])
    synapse = int(mem["pointers"]["start"][first_pixel])
    wrow = int(mem["synapses"]["wrow"][synapse])
    lane = int(np.argmax(np.abs(mem["weights"]["w"][wrow])))
    image["weights"][wrow] ^= 1 << (lane * arch.weight_bits + arch.weight_bits - 2)  # a high magnitude bit
    inputs = [[int(v) for v in pixels.reshape(-1).tolist()]]
    rtl = run_inferences(image, inputs, arch, rtl_cache / "rtl")
    sim = simulate_batch(digits_program, arch, pixels.reshape(1, -1).numpy())
    report, _ = verify(digits_program, arch, pixels, rtl, sim)
    assert report["bit_exact"] is False
    assert report["mismatch_count"]["sim"] == 0 and report["mismatch_count"]["rtl"] > 0
    first = report["mismatches"][0]
    assert first["implementation"] == "rtl" and first["layer"] == "conv0" and first["timestep"] == 0
    row = int(mem["synapses"]["row"][synapse])
    assert first["neuron"] // arch.lanes == row - digits_program.layers[0].state_base  # the corrupted group


def test_a_hung_core_is_reported_not_waited_for(digits_program, arch, digits_test_set, rtl_cache, tmp_path,
                                                monkeypatch, capsys):
    """An inference past its cycle limit ends the run with ``CoreHang`` naming the input (without a limit a core
    that never raises ``done`` would keep the command running forever); ``accel verify`` bounds every inference
    by the simulator's cycles (``rtl_cycle_limit``), and reports a hang as a failed verification."""
    from spikecore.accel.flows import verify as verify_flow
    from spikecore.accel.flows.cli import main
    from spikecore.rtl.runner import CoreHang

    pixels = digits_test_set[0][:1]
    sim = simulate_batch(digits_program, arch, pixels.reshape(1, -1).numpy())
    assert verify_flow.rtl_cycle_limit(sim) == 2 * sim[0].cycles + 1000
    inputs = [[int(v) for v in pixels.reshape(-1).tolist()]]
    with pytest.raises(CoreHang, match="did not finish input 0 within 100 cycles"):
        run_inferences(digits_program.memory_image(arch), inputs, arch, rtl_cache / "rtl", cycle_limit=100)
    # the limit is what stopped it: with the simulator's bound the same run finishes and agrees
    rtl = run_inferences(digits_program.memory_image(arch), inputs, arch, rtl_cache / "rtl",
                         cycle_limit=verify_flow.rtl_cycle_limit(sim))
    assert rtl[0]["cycles"] == sim[0].cycles
    program_dir = tmp_path / "prog"
    digits_program.save(program_dir)
    monkeypatch.setattr(verify_flow, "rtl_cycle_limit", lambda results: 100)
    capsys.readouterr()
    assert main(["verify", str(program_dir), "--samples", "1", "--simulator", "icarus", "--quiet",
                 "--out", str(tmp_path / "verify.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert "within 100 cycles" in err and "\n" not in err and not (tmp_path / "verify.json").exists()
