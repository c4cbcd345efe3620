"""The main job end to end, training from scratch, and the commands that drive the RTL."""
import json
from pathlib import Path

import pytest

from spikecore.accel.contract.checkpoint import load_checkpoint, shipped_checkpoint_path
from spikecore.accel.flows.cli import main
from spikecore.accel.contract.compiler import compile_network
from spikecore.accel.contract.config import default_arch
from spikecore.models import load_digits_split
from spikecore.models.train import train_digits
from spikecore.accel.flows.trainconfig import load_train_config
from spikecore.accel.flows.verify import float_gap, run_golden


def test_training_reaches_97_percent_and_hardware_exact_stays_within_half_a_point(tmp_path):
    config = load_train_config(None)
    metrics = train_digits(tmp_path, config["model"], progress=False, **config["train"])
    assert metrics["test_accuracy"] >= 0.97
    assert (tmp_path / "metrics.json").is_file() and (tmp_path / "curves.png").is_file()
    assert len(json.loads((tmp_path / "metrics.json").read_text())["history"]) == config["train"]["epochs"]
    net, _ = load_checkpoint(tmp_path / "checkpoint.pt")
    arch = default_arch()
    program = compile_network(net, arch)
    _, _, x_te, y_te = load_digits_split()
    golden = run_golden(program, arch, x_te)
    gap = float_gap(net, program, golden, x_te, y_te)
    assert gap["float_accuracy"] == metrics["test_accuracy"]
    assert abs(gap["accuracy_gap_pp"]) <= 0.5


def test_demo_pretrained_runs_the_whole_chain(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--pretrained", "--samples", "2", "--quiet"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["bit_exact"] is True and summary["cycle_exact"] is True
    assert summary["float_accuracy"] >= 0.97 and abs(summary["accuracy_gap_pp"]) <= 0.5
    for path in summary["artifacts"].values():
        assert Path(path).exists(), path
    text = capsys.readouterr().out
    assert "bit_exact                True" in text and "cycles per inference" in text
    verify = json.loads((tmp_path / "verify_report.json").read_text())
    assert verify["samples"] == 2 and verify["cycles_sim"] == verify["cycles_rtl"]


def test_rtl_command_writes_verilog(tmp_path):
    assert main(["rtl", "--out", str(tmp_path / "rtl")]) == 0
    text = (tmp_path / "rtl" / "core.v").read_text()
    assert "module core(" in text and "host_rdata" in text
    info = json.loads((tmp_path / "rtl" / "rtl.json").read_text())
    assert info["top"] == "core" and info["word_widths"]["weights"] == 64


def test_verify_command_with_fault_injection_exits_1(tmp_path, capsys):
    program = tmp_path / "prog"
    assert main(["compile", str(shipped_checkpoint_path()), "--out", str(program)]) == 0
    report = tmp_path / "verify.json"
    assert main(["verify", str(program), "--samples", "1", "--out", str(report), "--quiet",
                 "--flip-bit", "weights:0:6"]) == 1
    data = json.loads(report.read_text())
    assert data["bit_exact"] is False and data["mismatches"][0]["implementation"] == "rtl"
    assert {"layer", "timestep", "neuron"} <= set(data["mismatches"][0])
    assert "first mismatch" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_from_scratch_twenty_images(tmp_path):
    """The README's main command exactly: train, compile, simulate, Verilog, verify 20 images."""
    assert main(["demo", "--out", str(tmp_path), "--quiet"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["bit_exact"] and summary["cycle_exact"] and summary["verified_samples"] == 20
    assert summary["float_accuracy"] >= 0.97 and abs(summary["accuracy_gap_pp"]) <= 0.5


def test_verify_command_twenty_images_bit_exact(tmp_path, capsys):
    """`accel verify CHECKPOINT --samples 20` exactly as the issue states it (Verilator, the default)."""
    report = tmp_path / "verify.json"
    assert main(["verify", str(shipped_checkpoint_path()), "--samples", "20", "--out", str(report), "--quiet"]) == 0
    data = json.loads(report.read_text())
    assert data["bit_exact"] is True and data["samples"] == 20 and data["mismatches"] == []
    assert data["cycles_sim"] == data["cycles_rtl"] == data["cycles_rtl_measured"] and len(data["cycles_sim"]) == 20
    assert data["float_vs_integer"]["prediction_agreement"] >= 0.95
    assert "bit_exact True, cycle_exact True on 20 samples" in capsys.readouterr().out
