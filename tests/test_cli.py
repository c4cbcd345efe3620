"""The command line: outputs exist; bad input seen exactly as a user sees it, in a subprocess (real exit
status, no traceback). The full bad-input table is tests/test_bad_inputs.py."""
import json
import subprocess
import sys

import torch

from spikecore.accel.contract.checkpoint import shipped_checkpoint_path
from spikecore.accel.flows.cli import main


def run_cli(*args):
    """Run ``accel`` in a subprocess (exit status and stderr exactly as a user sees them)."""
    proc = subprocess.run([sys.executable, "-m", "spikecore.accel.flows.cli", *map(str, args)], capture_output=True, text=True)
    return proc.returncode, proc.stdout, proc.stderr


def assert_one_line_error(rc, stderr, *needles):
    assert rc == 2, stderr
    lines = [l for l in stderr.splitlines() if l.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_compile_and_sim_write_reports(tmp_path):
    program = tmp_path / "prog"
    assert main(["compile", str(shipped_checkpoint_path()), "--out", str(program)]) == 0
    assert (program / "manifest.json").is_file() and (program / "arrays.npz").is_file()
    report = tmp_path / "sim.json"
    assert main(["sim", str(program), "--out", str(report), "--samples", "30", "--quiet"]) == 0
    data = json.loads(report.read_text())
    assert data["samples"] == 30 and data["accuracy"] >= 0.9 and data["cycles_min"] > 0
    assert [l["name"] for l in data["layers"]] == ["conv0", "conv1", "classifier"]
    assert report.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_train_config_errors(tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text("model:\n  levles: 3\n")
    rc, _, err = run_cli("train", cfg, "--out", tmp_path / "run")
    assert_one_line_error(rc, err, "train.yaml", "unknown key 'model.levles'", "did you mean 'model.levels'")
    assert not (tmp_path / "run").exists()
    cfg.write_text("train:\n  epochs: 0\n")
    rc, _, err = run_cli("train", cfg, "--out", tmp_path / "run")
    assert_one_line_error(rc, err, "key 'train.epochs' = 0 is out of range")


class _Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickle_that_executes_code_is_refused(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"format": "spikecore-checkpoint", "payload": _Exploit()}, evil)
    rc, out, err = run_cli("compile", evil, "--out", tmp_path / "prog")
    assert_one_line_error(rc, err, "evil.pt", "refused")
    assert "this must never run" not in out + err


def test_help_for_every_command(capsys):
    """Every command's --help has its usage, a description and at least one example of itself."""
    from spikecore.accel.flows.cli import COMMAND_HELP

    assert {"demo", "train", "compile", "sim", "rtl", "verify", "synth", "sweep", "import", "export", "init"} <= \
        set(COMMAND_HELP)
    for command, (description, _) in COMMAND_HELP.items():
        try:
            main([command, "--help"])
        except SystemExit as exc:
            assert exc.code == 0
        text = capsys.readouterr().out
        assert text.startswith("usage: accel " + command) and description[:40] in " ".join(text.split()), command
        assert f"examples:\n  accel {command} " in text or f"&& accel {command} " in text, command
    proc = subprocess.run([sys.executable, "-m", "spikecore.accel.flows.cli", "sim", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "usage: accel sim" in proc.stdout and "examples:" in proc.stdout


def test_init_writes_starting_configurations_that_validate(tmp_path):
    from spikecore.accel.contract.config import load_arch
    from spikecore.accel.flows.sweep import load_sweep
    from spikecore.accel.flows.trainconfig import load_train_config

    for kind, load in (("arch", load_arch), ("sweep", load_sweep), ("train", load_train_config)):
        path = tmp_path / f"{kind}.yaml"
        assert main(["init", kind, "--out", str(path)]) == 0
        assert path.read_text().startswith("# A starting") and load(path)
    assert load_arch(tmp_path / "arch.yaml").fingerprint() == load_arch(None).fingerprint()
    from dataclasses import fields

    from spikecore.accel.contract.config import ArchConfig, Memories

    text = (tmp_path / "arch.yaml").read_text()
    for key in [f.name for f in fields(ArchConfig)] + [f.name for f in fields(Memories)]:
        assert f"{key}:" in text, f"the arch template does not show '{key}'"
    (tmp_path / "mine.yaml").write_text("lanes: 4\n")
    rc, _, err = run_cli("init", "arch", "--out", tmp_path / "mine.yaml")
    assert_one_line_error(rc, err, "mine.yaml: exists; accel init writes only new files")
    assert (tmp_path / "mine.yaml").read_text() == "lanes: 4\n"


def test_version_and_report_metadata(tmp_path):
    from importlib import metadata

    rc, out, _ = run_cli("--version")
    assert rc == 0 and out.strip() == f"spikecore {metadata.version('spikecore')}"
    program = tmp_path / "prog"
    assert main(["compile", str(shipped_checkpoint_path()), "--out", str(program)]) == 0
    report = tmp_path / "sim.json"
    assert main(["sim", str(program), "--out", str(report), "--samples", "2", "--quiet"]) == 0
    data = json.loads(report.read_text())
    assert data["format"] == "spikecore-sim-report" and data["spikecore_version"] == metadata.version("spikecore")
    assert data["created_utc"].endswith("+00:00")
    assert data["inputs"]["program"]["path"] == str(program) and len(data["inputs"]["program"]["sha256"]) == 64
    assert data["inputs"]["arch"] == {"path": None, "embedded_default": True}
    first = data["inputs"]["program"]["sha256"]
    assert main(["compile", str(shipped_checkpoint_path()), "--out", str(program), "--arch",
                 str(tmp_path / "a.yaml")]) == 2  # (no such file: the program is unchanged)
    (tmp_path / "a.yaml").write_text("name: other\nacc_bits: 20\nmembrane_bits: 20\n")
    assert main(["compile", str(shipped_checkpoint_path()), "--out", str(program), "--arch",
                 str(tmp_path / "a.yaml")]) == 0
    assert main(["sim", str(program), "--arch", str(tmp_path / "a.yaml"), "--out", str(report), "--samples", "2",
                 "--quiet"]) == 0
    data = json.loads(report.read_text())
    assert data["inputs"]["program"]["sha256"] != first and len(data["inputs"]["arch"]["sha256"]) == 64
