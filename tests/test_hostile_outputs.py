"""Hostile and clumsy input at the command line's edges: strict YAML, outputs that are never someone else's
file, atomic replacement, leftovers of killed runs, the user's umask, and one line for every failure
(docs/bad-inputs.md, "Outputs, YAML and the error boundary")."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bad_input import assert_one_error_line, assert_table_lists, write
from spikecore.accel.contract.checkpoint import shipped_checkpoint_path
from spikecore.accel.flows.cli import EXIT_INTERNAL_ERROR, main
from spikecore.accel.flows.outputs import MARKER
from spikecore.accel.contract.program import Program
from spikecore import atomic

SHIPPED = shipped_checkpoint_path()

ALIAS_BOMB = "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}" if i else "x"] * 9) + "]\n" for i in range(9))


def _program(tmp: Path) -> Path:
    assert main(["compile", str(SHIPPED), "--out", str(tmp / "prog")]) == 0
    return tmp / "prog"


def _train_output(tmp: Path) -> Path:
    """A folder that ``accel train`` marked as its output, holding a checkpoint the user cares about."""
    run = tmp / "run"
    run.mkdir()
    (run / MARKER).write_text(json.dumps({"format": "spikecore-output", "command": "train"}))
    (run / "checkpoint.pt").write_bytes(SHIPPED.read_bytes())
    return run


def _foreign_folder(tmp: Path) -> Path:
    (tmp / "home").mkdir()
    return write(tmp / "home" / "thesis.tex", "mine").parent


def _foreign_png(tmp: Path) -> Path:
    return write(tmp / "photo.png", b"\x89PNG\r\n\x1a\nmine")


# (row id, argv builder(tmp) -> list, needles in the message); every file in tmp must be left as it was
CASES = [
    ("yaml-alias-bomb",
     lambda t: ["rtl", "--arch", write(t / "a.yaml", ALIAS_BOMB), "--out", t / "out"],
     ["a.yaml", "YAML anchors ('&l0') are not supported at line 1"]),
    ("yaml-duplicate-key",
     lambda t: ["rtl", "--arch", write(t / "a.yaml", "lanes: 8\nlanes: 16\n"), "--out", t / "out"],
     ["a.yaml", "duplicate key 'lanes' at line 2"]),
    ("yaml-not-utf8",
     lambda t: ["train", write(t / "c.yaml", b"model:\n  levels: \xff\n"), "--out", t / "out"],
     ["c.yaml", "not UTF-8 text (byte 0xff at offset 17)"]),
    ("yaml-too-deep",
     lambda t: ["rtl", "--arch", write(t / "a.yaml", "name: " + "[" * 200 + "]" * 200 + "\n"), "--out", t / "out"],
     ["a.yaml", "nesting deeper than 64 levels"]),
    ("yaml-too-large",
     lambda t: ["rtl", "--arch", write(t / "a.yaml", "# padding\n" * 120_000), "--out", t / "out"],
     ["a.yaml", "larger than 1024 KiB"]),
    ("yaml-a-directory",
     lambda t: ["rtl", "--arch", t, "--out", t / "out"],
     ["is a directory, not a architecture file"]),
    ("arch-name-injection",
     lambda t: ["rtl", "--arch", write(t / "a.yaml", 'name: "x\\n`define X 1\\nmodule evil; initial $system(\\"rm -rf ~\\"); endmodule"\n'),
                "--out", t / "out"],
     ["a.yaml", "key 'name'", "must be 1 to 64 letters, digits"]),
    ("out-is-a-file",
     lambda t: ["compile", SHIPPED, "--out", write(t / "notes.txt", "mine\n")],
     ["notes.txt: exists and is not a folder"]),
    ("out-holds-other-files",
     lambda t: ["compile", _train_output(t) / "checkpoint.pt", "--out", t / "run"],
     ["run: exists and is not a Program directory (it holds", "checkpoint.pt"]),
    ("out-of-another-command",
     lambda t: ["rtl", "--out", _train_output(t)],
     ["--out", "run: holds the output of accel train, not of accel rtl"]),
    ("out-foreign-folder",
     lambda t: ["demo", "--pretrained", "--out", _foreign_folder(t)],
     ["--out", "home: exists and is not an output of accel demo (it holds thesis.tex)"]),
    ("synth-out-foreign-folder",
     lambda t: ["synth", "--target", "ice40-up5k", "--quiet", "--out", _foreign_folder(t)],
     ["--out", "home: exists and is not an output of accel synth (it holds thesis.tex)"]),
    ("report-not-ours",
     lambda t: ["sim", _program(t), "--samples", "2", "--out", write(t / "notes.json", '{"mine": 1}')],
     ["--out", "notes.json: exists and is not a report of accel sim"]),
    ("plot-not-ours",
     lambda t: ["sim", _program(t), "--samples", "2", "--quiet", "--out", _foreign_png(t).with_suffix(".json")],
     ["--out", "photo.png: exists and is not a plot of accel sim"]),
    ("export-over-foreign-file",
     lambda t: ["export", SHIPPED, "--out", write(t / "data.h5", b"\x89HDF\r\n\x1a\nmine")],
     ["--out", "data.h5: exists and is not a NIR file of accel export"]),
    ("import-over-foreign-file",
     lambda t: ["import", t / "m.nir", "--out", _train_output(t) / "checkpoint.pt", "--timesteps", "4"],
     ["--out", "checkpoint.pt: exists and is not a checkpoint of accel import"]),
    ("out-parent-is-a-file",
     lambda t: ["sim", _program(t), "--samples", "2", "--out", write(t / "f", "x") / "r.json"],
     ["--out", "f is not a folder"]),
    ("samples-beyond-test-set",
     lambda t: ["sim", _program(t), "--samples", "1000", "--out", t / "out.json"],
     ["--samples 1000: the digits test set has 450 images"]),
    ("usage-error",
     lambda t: ["compile", SHIPPED],
     ["accel compile: error: the following arguments are required: --out (see accel compile --help)"]),
]


def _snapshot(folder: Path) -> dict:
    return {path: path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_table_lists_every_case():
    assert_table_lists(row_id for row_id, _, _ in CASES)


@pytest.mark.parametrize("row_id, argv, needles", CASES, ids=[c[0] for c in CASES])
def test_bad_input(row_id, argv, needles, tmp_path, capsys):
    args = [str(a) for a in argv(tmp_path)]
    before = _snapshot(tmp_path)
    capsys.readouterr()
    try:
        status = main(args)
    except SystemExit as exc:  # argparse's usage errors
        status = exc.code
    assert status == 2
    assert_one_error_line(capsys.readouterr().err, args[0], needles)
    assert _snapshot(tmp_path) == before, "a refused command changed or left files"
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.json").exists()


def test_a_refused_configuration_never_reaches_the_verilog(tmp_path):
    """The injection attempt of ``arch-name-injection`` leaves no Verilog anywhere, not even in the cache."""
    cache = Path(os.environ["SPIKECORE_CACHE"])
    before = set(cache.rglob("*.v"))
    arch = write(tmp_path / "a.yaml", 'name: "x\\n`define X 1"\n')
    assert main(["verify", str(SHIPPED), "--arch", str(arch), "--samples", "1", "--out", str(tmp_path / "r.json")]) == 2
    assert set(cache.rglob("*.v")) == before


def test_program_replacement_is_atomic(tmp_path, monkeypatch):
    """Interrupted at the moment the new Program goes in, the old one stays, complete and loadable, and no
    temporary folder is left behind; without an atomic exchange, the next load restores the old one."""
    program = _program(tmp_path)
    before = _snapshot(program)

    def interrupted(built, path):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic, "install_folder", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Program.load(program).save(program)
    assert _snapshot(program) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prog"]
    monkeypatch.undo()

    # no exchange on this file system, and a kill between the two renames
    monkeypatch.setattr(atomic, "_exchange", lambda first, second: False)
    renames = []
    real_rename = os.rename

    def killed_after_first_rename(src, dst):
        renames.append((src, dst))
        if len(renames) == 2:
            raise KeyboardInterrupt
        real_rename(src, dst)

    monkeypatch.setattr(atomic.os, "rename", killed_after_first_rename)
    with pytest.raises(KeyboardInterrupt):
        Program.load(program).save(program)
    monkeypatch.undo()
    assert not program.exists()  # the old content is aside, under a temporary name
    assert Program.load(program).timesteps == 4  # and comes back
    assert _snapshot(program) == before


def test_orphaned_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    orphan = write(tmp_path / f".r.json.{dead}.abc123.tmp", "half")
    orphan_folder = tmp_path / f".prog.{dead}.xyz.tmp"
    orphan_folder.mkdir()
    alive = write(tmp_path / f".r.json.{os.getppid()}.def456.tmp", "in progress")
    unrelated = write(tmp_path / ".r.json.backup", "mine")
    atomic.atomic_write_json(tmp_path / "r.json", {"a": 1})
    Program.load(_program(tmp_path))  # its save removed the dead folder
    assert not orphan.exists() and not orphan_folder.exists()
    assert alive.exists() and unrelated.exists()


def test_outputs_respect_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        program = _program(tmp_path)
        assert main(["sim", str(program), "--samples", "2", "--quiet", "--out", str(tmp_path / "r.json")]) == 0
        assert main(["rtl", "--out", str(tmp_path / "rtl")]) == 0
    finally:
        os.umask(previous)
    for path in [program, tmp_path / "rtl"]:
        assert path.stat().st_mode & 0o777 == 0o755, path
    for path in [program / "manifest.json", program / "arrays.npz", tmp_path / "r.json", tmp_path / "r.png",
                 tmp_path / "rtl" / "rtl.json", tmp_path / "rtl" / "core.v"]:
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_rerun_replaces_only_its_own_outputs(tmp_path):
    program = _program(tmp_path)
    report = tmp_path / "r.json"
    for _ in range(2):
        assert main(["sim", str(program), "--samples", "2", "--quiet", "--out", str(report)]) == 0
    assert json.loads(report.read_text())["format"] == "spikecore-sim-report"
    assert _program(tmp_path) == program  # a Program folder is replaced by a Program
    for _ in range(2):
        assert main(["rtl", "--out", str(tmp_path / "rtl")]) == 0


def test_internal_error_is_one_line_with_the_traceback_saved(tmp_path, monkeypatch, capsys):
    import spikecore.accel.flows.cli

    def broken(args):
        raise ZeroDivisionError("planted bug")

    monkeypatch.setattr(spikecore.accel.flows.cli, "cmd_rtl", broken)
    capsys.readouterr()
    assert main(["rtl", "--out", str(tmp_path / "rtl")]) == EXIT_INTERNAL_ERROR
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("accel rtl: internal error: ZeroDivisionError: planted bug")
    saved = Path(lines[0].split("traceback saved to ")[1].split(" (please report it)")[0])
    assert "planted bug" in saved.read_text() and "Traceback" in saved.read_text()


def test_sigterm_stops_cleanly(tmp_path):
    """SIGTERM in the middle of training: one line, status 143, no temporary file left behind."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "spikecore.accel.flows.cli", "train", "--out", str(out), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / MARKER).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines() == ["accel train: terminated"]
    assert not [p for p in tmp_path.rglob(".*.tmp")]


PAYLOAD = 'x\n`define X 1\nmodule evil; initial $system("touch PWNED"); endmodule // $\\frac{'


def _string_fields():
    """(file kind, YAML text) with the payload in every string field of every configuration the commands read."""
    from dataclasses import fields

    from spikecore.accel.contract.config import ArchConfig

    quoted = json.dumps(PAYLOAD)  # a YAML double-quoted scalar
    for field in fields(ArchConfig):
        if isinstance(field.default, str):
            yield "arch", f"{field.name}: {quoted}\n"
    yield "arch", f"banks: [[{quoted}, synapses]]\n"
    for key in ("name", "fit_memories"):
        yield "sweep", f"{key}: {quoted}\ngrid:\n  lanes: [8]\n"
    yield "sweep", f"grid:\n  schedule: [{quoted}]\n"
    yield "sweep", f"grid:\n  lanes: [8]\nsynth:\n  target: {quoted}\n"
    yield "train", f"dataset: {quoted}\n"
    for key in ("arch", "block", "connect", "norm"):
        yield "train", f"dataset: {{name: synthetic}}\nmodel: {{arch: resnet, {key}: {quoted}}}\n"
    yield "train", f"dataset: {{name: synthetic}}\nmodel: {{arch: resnet, neuron: {{type: {quoted}}}}}\n"
    for key in ("optimizer", "schedule", "loss"):
        yield "train", f"dataset: {{name: synthetic}}\nmodel: {{arch: resnet}}\ntrain: {{{key}: {quoted}}}\n"


@pytest.mark.parametrize("kind, text", list(_string_fields()))
def test_injection_through_every_string_field_is_refused(kind, text, tmp_path, capsys):
    """A configuration string is either one of a fixed set of words or a plain name: the payload is refused in
    one line by every command that reads it, and nothing is written."""
    path = write(tmp_path / f"{kind}.yaml", text)
    argv = {"arch": ["rtl", "--arch", path, "--out", tmp_path / "out"],
            "sweep": ["sweep", path, "--out", tmp_path / "out"],
            "train": ["train", path, "--out", tmp_path / "out"]}[kind]
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"accel {argv[0]}: error: {path}"), lines
    assert not (tmp_path / "out").exists() and not list(tmp_path.rglob("PWNED"))
