"""The methods of the seed papers from the command line: ``accel demo --list-methods`` lists the issue's
fifteen, and ``accel demo --method NAME`` trains one and runs the whole chain to a verified RTL. Every method's
network (seeded random weights) runs golden == simulator == RTL in the contract suite (``tests/contract``,
the ``method-*`` cases).
"""
import pytest

from spikecore.accel.flows.methods import METHODS


def test_the_method_list_is_the_issue_list():
    assert list(METHODS) == ["mlf-k1", "mlf-k2", "mlf-k3", "mlf-k4", "spiking-resnet", "ds-resnet", "ms-resnet",
                             "sew-add", "sew-and", "sew-iand", "sew-or", "sew-xor", "lsn", "dst-fsnn", "dst-dsnn"]


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
