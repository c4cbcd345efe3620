"""Every method of the seed papers on the hardware: golden == simulator == RTL, cycles equal.

For each name of ``accel demo --list-methods`` the method's network, with seeded random weights and
normalisation statistics calibrated on 200 training images (``spikecore.accel.flows.methods.build_untrained``: the core
does not care how weights were learned, and this keeps CI free of training), is compiled for its core;
the simulator runs 60 test images against the golden model, and the Verilog core (Verilator, one build
per core for the session) runs 2 of them. The command-line test trains one method for one epoch and
runs the whole demo chain. Every spike of every stage at every timestep, the logits and the saturation counts must
be equal, and the RTL's cycle count must equal the simulator's.
"""
import pytest

from spikecore.accel.contract.compiler import compile_network
from spikecore.accel.contract.config import load_arch
from spikecore.accel.flows.methods import METHODS, build_untrained, methods_arch_path
from spikecore.models import load_digits_split
from spikecore.accel.flows.verify import verify
from spikecore.sim.engine import simulate_batch

SIM_IMAGES, RTL_IMAGES = 60, 2


@pytest.fixture(scope="module")
def methods_arch():
    return load_arch(methods_arch_path())


@pytest.fixture(scope="module")
def calibration():
    return load_digits_split()[0][:200]


def compiled(name, methods_arch, calibration):
    net = build_untrained(name, seed=1, calibration=calibration)
    arch = methods_arch
    return net, compile_network(net, arch), arch


def test_the_method_list_is_the_issue_list():
    assert list(METHODS) == ["mlf-k1", "mlf-k2", "mlf-k3", "mlf-k4", "spiking-resnet", "ds-resnet", "ms-resnet",
                             "sew-add", "sew-and", "sew-iand", "sew-or", "sew-xor", "lsn", "dst-fsnn", "dst-dsnn"]


@pytest.mark.parametrize("name", list(METHODS))
def test_method_bit_exact_and_cycle_exact(name, methods_arch, calibration, digits_test_set, rtl_cache):
    from spikecore.rtl.runner import run_inferences

    net, program, arch = compiled(name, methods_arch, calibration)
    kinds = {layer.kind for layer in program.layers}
    expected_kind = {"ds-resnet": "sum", "sew-add": "sum", "dst-dsnn": "sum", "sew-and": "gate", "sew-iand": "gate",
                     "sew-or": "gate", "sew-xor": "gate", "lsn": "gate", "dst-fsnn": "gate"}.get(name, "neuron")
    assert expected_kind in kinds, (name, kinds)
    if name == "ms-resnet":
        assert any(layer.carry is not None for layer in program.layers)  # the membrane shortcut is used
    pixels = digits_test_set[0][:SIM_IMAGES]
    sims = simulate_batch(program, arch, pixels.reshape(len(pixels), -1).numpy())
    report, golden = verify(program, arch, pixels, None, sims)
    assert report["bit_exact"], report["mismatches"][:3]
    assert sum(int(s.sum()) for s in golden["spikes"]) > 0  # the network is active, the comparison not vacuous
    inputs = [[int(v) for v in row] for row in pixels[:RTL_IMAGES].reshape(RTL_IMAGES, -1).tolist()]
    rtl = run_inferences(program.memory_image(arch), inputs, arch, rtl_cache / "rtl", simulator="verilator")
    report, _ = verify(program, arch, pixels[:RTL_IMAGES], rtl, sims[:RTL_IMAGES])
    assert report["bit_exact"] and report["cycle_exact"], report["mismatches"][:3]


def test_demo_list_methods_and_one_method_through_the_command_line(tmp_path, capsys):
    import json

    from spikecore.accel.flows.cli import main

    assert main(["demo", "--list-methods"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == list(METHODS)
    assert main(["demo", "--method", "sew-iand", "--epochs", "1", "--out", str(tmp_path), "--samples", "1",
                 "--quiet"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["method"] == "sew-iand" and summary["bit_exact"] and summary["cycle_exact"]
    assert summary["hardware_exact_accuracy"] > 0.3 and abs(summary["accuracy_gap_pp"]) < 5
    assert main(["demo", "--method", "sew-nand", "--out", str(tmp_path / "x")]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("name", list(METHODS))
def test_demo_method_from_scratch(name, tmp_path):
    """`accel demo --method NAME` exactly as a user runs it: default training, 20 images on the RTL."""
    import json

    from spikecore.accel.flows.cli import main

    assert main(["demo", "--method", name, "--out", str(tmp_path), "--quiet"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["bit_exact"] and summary["cycle_exact"] and summary["verified_samples"] == 20
    assert summary["float_accuracy"] > 0.6
