"""Hostile and clumsy input to ``accel sweep`` and ``accel train``: huge grids and training sizes, files that
are not what they claim, damaged journals and checkpoints, two sweeps on one folder, a sweep killed under its
workers, a training run killed between its final checkpoint and its results. Every refusal: exit status 2, one
line naming the file and key, no traceback, nothing left behind."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bad_input import assert_one_error_line, assert_table_lists, write
from spikecore.accel.flows import sweep
from spikecore.accel.flows.cli import main
from spikecore.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
TINY_SWEEP = "samples: 4\ngrid:\n  lanes: [8]\n"
TINY_TRAIN = """\
dataset: {name: synthetic, kind: cifar, train_samples: 16, test_samples: 8, size: 8, classes: 4}
model: {arch: resnet, block: ds, depth: 8, width: 4, levels: 3, timesteps: 2}
train: {epochs: 1, batch_size: 8, eval_batch: 4}
"""
NOT_A_RECORD = b'{"id": "lost", "status": "ok"}\n'


def _record(point_id: str) -> bytes:
    """A journal line of an infeasible point (the fewest fields a record has)."""
    return (json.dumps({"id": point_id, "network": "n.pt", "params": {}, "status": "infeasible",
                        "reason": "r"}) + "\n").encode()


def _sweep_of_a_text_file(tmp: Path) -> Path:
    """A sweep file whose network is a text file."""
    write(tmp / "notes.txt", "hello, not a network\n")
    return write(tmp / "s.yaml", "networks: [notes.txt]\n" + TINY_SWEEP)


def _earlier_sweep(tmp: Path, journal: bytes) -> Path:
    """An output folder of an earlier sweep whose journal holds ``journal``."""
    (tmp / "out").mkdir()
    write(tmp / "out" / sweep.JOURNAL, journal)
    return tmp / "out"


def _run_folder(tmp: Path, checkpoint: bytes) -> Path:
    """A training run folder of an earlier run whose checkpoint holds ``checkpoint``."""
    (tmp / "out").mkdir()
    write(tmp / "out" / "metrics.json", '{"finished": false}')
    write(tmp / "out" / "checkpoint.pt", checkpoint)
    return tmp / "out"


# (row id, argv builder(tmp) -> list, needles in the message)
CASES = [
    ("sweep-huge-grid",
     lambda t: ["sweep", write(t / "s.yaml", f"grid:\n  lanes: {list(range(1000))}\n"
                                              f"  acc_bits: {list(range(1000))}\n"), "--out", t / "out"],
     ["s.yaml", "key 'grid'", "1000 x 1000 = 1000000 points", f"more than the {sweep.MAX_SWEEP_POINTS}"]),
    ("sweep-huge-random",
     lambda t: ["sweep", write(t / "s.yaml", "random:\n  points: 20000\n  space:\n    lanes: [8, 16]\n"),
                "--out", t / "out"],
     ["s.yaml", "key 'random.points'", "20000 points"]),
    ("sweep-not-a-checkpoint",
     lambda t: ["sweep", _sweep_of_a_text_file(t), "--out", t / "out"],
     ["s.yaml", "key 'networks'", "notes.txt", "truncated or not a PyTorch checkpoint"]),
    ("sweep-yaml-alias",
     lambda t: ["sweep", write(t / "s.yaml", "grid:\n  lanes: &l [8]\n  max_levels: *l\n"), "--out", t / "out"],
     ["s.yaml", "anchors"]),
    ("sweep-samples-beyond-test-set",
     lambda t: ["sweep", write(t / "s.yaml", "samples: 100000\ngrid:\n  lanes: [8]\n"), "--out", t / "out"],
     ["s.yaml", "key 'samples' = 100000: the digits test set has 450 images"]),
    ("sweep-too-many-workers",
     lambda t: ["sweep", write(t / "s.yaml", "grid:\n  lanes: [8]\n"), "--out", t / "out", "--workers", "100000"],
     ["--workers must be in [1, ", "per core on this machine), got 100000"]),
    ("sweep-not-a-path",
     lambda t: ["sweep", write(t / "s.yaml", "energy: [1, 2]\n" + TINY_SWEEP), "--out", t / "out"],
     ["s.yaml", "key 'energy' must be a file name"]),
    ("train-huge-size",
     lambda t: ["train", write(t / "c.yaml", "model: {channels: [1024, 1024], timesteps: 64}\n"
                                              "train: {batch_size: 65536}\n"), "--out", t / "out"],
     ["c.yaml", "training needs at least", "TiB of memory, more than this machine's",
      "train.batch_size = 65536", "model.timesteps = 64", "model.channels"]),
    ("train-huge-network",
     lambda t: ["train", write(t / "c.yaml", TINY_TRAIN.replace("width: 4", "width: 65536")), "--out", t / "out"],
     ["c.yaml", "training needs at least", "parameters, gradients and optimizer state", "model.width"]),
    ("train-nan",
     lambda t: ["train", write(t / "c.yaml", "train: {lr: .nan}\n"), "--out", t / "out"],
     ["c.yaml", "key 'train.lr' = nan is not a finite number"]),
    ("train-nan-neuron",
     lambda t: ["train", write(t / "c.yaml", TINY_TRAIN.replace("levels: 3,", "neuron: {type: lif, v_th: .inf},")),
                "--out", t / "out"],
     ["c.yaml", "key 'model.neuron.v_th' = inf is not a finite number"]),
    ("train-zero-timesteps",
     lambda t: ["train", write(t / "c.yaml", TINY_TRAIN.replace("timesteps: 2", "timesteps: 0")), "--out", t / "out"],
     ["c.yaml", "key 'model.timesteps' = 0 is out of range [1, 1024]"]),
    ("train-network-input-mismatch",
     lambda t: ["train", write(t / "c.yaml", "dataset: digits\nmodel: {arch: vgg, layers: [4, A], image_size: 32}\n"),
                "--out", t / "out"],
     ["c.yaml", "key 'model': the network does not take the dataset's samples [1, 8, 8]"]),
]

# Cases whose output folder exists beforehand (an earlier output): it must be left as it was.
EXISTING_OUT_CASES = [
    ("sweep-damaged-journal",
     lambda t: ["sweep", write(t / "s.yaml", TINY_SWEEP), "--out",
                _earlier_sweep(t, _record("a") + NOT_A_RECORD + _record("b"))],
     ["points.jsonl: line 2 is not a point record", "delete that line"]),
    ("train-corrupt-checkpoint",
     lambda t: ["train", write(t / "c.yaml", TINY_TRAIN), "--out", _run_folder(t, b"PK\x03\x04 cut short")],
     ["checkpoint.pt: cannot resume: truncated or not a PyTorch checkpoint", "--restart"]),
    ("train-damaged-checkpoint",
     lambda t: ["train", write(t / "c.yaml", TINY_TRAIN), "--out", _run_folder(t, _damaged_train_state())],
     ["checkpoint.pt: cannot resume: the checkpoint's training state is damaged"]),
]


def _damaged_train_state() -> bytes:
    import io

    import torch

    buffer = io.BytesIO()
    torch.save({"format": "spikecore-checkpoint", "version": 1, "train_state": {"epoch": "one"}}, buffer)
    return buffer.getvalue()


def _one_error_line(capsys, command: str) -> str:
    return assert_one_error_line(capsys.readouterr().err, command)


def test_table_lists_every_case():
    named = [case[0] for case in CASES + EXISTING_OUT_CASES]
    assert_table_lists(named + ["sweep-concurrent", "train-diverged", "train-finish-bookkeeping"])


@pytest.mark.parametrize("row_id, argv, needles", CASES, ids=[c[0] for c in CASES])
def test_refused_in_one_line_leaving_nothing(row_id, argv, needles, tmp_path, capsys):
    args = [str(a) for a in argv(tmp_path)]
    capsys.readouterr()
    start = time.perf_counter()
    assert main(args) == 2
    line = _one_error_line(capsys, args[0])
    for needle in needles:
        assert needle in line, (needle, line)
    assert time.perf_counter() - start < 20, "refused only after building what it refuses"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("row_id, argv, needles", EXISTING_OUT_CASES, ids=[c[0] for c in EXISTING_OUT_CASES])
def test_refused_in_one_line_keeping_the_earlier_output(row_id, argv, needles, tmp_path, capsys):
    args = [str(a) for a in argv(tmp_path)]
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    capsys.readouterr()
    assert main(args) == 2
    line = _one_error_line(capsys, args[0])
    for needle in needles:
        assert needle in line, (needle, line)
    after = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")}
    assert after == before


def test_grid_points_are_generated_lazily(tmp_path):
    """A sweep of the largest size accepted is counted, not built: its first task comes at once."""
    values = list(range(1, 101))
    assert len(values) ** 2 == sweep.MAX_SWEEP_POINTS
    spec = sweep.load_sweep(write(tmp_path / "s.yaml", f"grid:\n  clock_mhz: {values}\n  max_timesteps: {values}\n"))
    start = time.perf_counter()
    first = next(sweep.SweepPlan(spec).tasks())
    assert first["params"] == {"clock_mhz": 1, "max_timesteps": 1} and time.perf_counter() - start < 2


def test_random_points_avoid_the_grid_and_each_other(tmp_path):
    spec = sweep.load_sweep(write(tmp_path / "s.yaml", "grid:\n  lanes: [4, 8]\nrandom:\n  points: 5\n  seed: 3\n"
                                                       "  space:\n    lanes: [4, 8, 16]\n"))
    points = list(sweep.sweep_points(spec))
    assert points == [{"lanes": 4}, {"lanes": 8}, {"lanes": 16}]  # only one point is not in the grid


@pytest.mark.parametrize("tail", [b'{"id": "torn', b"\x00\x00\x00\x00\n", NOT_A_RECORD],
                         ids=["torn", "zeros", "not-a-record"])
def test_damaged_last_journal_line_is_cut_and_its_point_recomputed(tail, tmp_path):
    """Row ``sweep-torn-journal``: only the last line can be damaged by the journal's own writing; it is cut
    off, with a line on the log."""
    path = write(tmp_path / sweep.JOURNAL, _record("a") + _record("b") + tail)
    told = []
    assert sorted(sweep.read_journal(path, told.append)) == ["a", "b"]
    assert path.read_bytes() == _record("a") + _record("b")
    assert len(told) == 1 and "cut off its last line 3" in told[0]


def test_damaged_middle_journal_line_is_refused(tmp_path):
    journal = _record("a") + b"garbage\n" + _record("b")
    path = write(tmp_path / sweep.JOURNAL, journal)
    with pytest.raises(UserError, match="line 2 is not a point record"):
        sweep.read_journal(path)
    assert path.read_bytes() == journal


HOLD_EVERY_POINT = """\
import time

import spikecore.accel.flows.sweep


def held_evaluate_point(task):
    time.sleep(600)  # the test kills the sweep during this point


spikecore.accel.flows.sweep.evaluate_point = held_evaluate_point
"""


def _children(pid: int) -> dict:
    """``{pid: command line}`` of the processes whose parent is ``pid`` (from /proc)."""
    children = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            children[int(entry.name)] = cmdline
    return children


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped is not)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def held_sweep(tmp_path_factory):
    """``accel sweep`` running in a process whose only worker holds its point for ten minutes."""
    tmp = tmp_path_factory.mktemp("held")
    (tmp / "hold").mkdir()
    write(tmp / "hold" / "sitecustomize.py", HOLD_EVERY_POINT)
    spec, out = write(tmp / "s.yaml", TINY_SWEEP), tmp / "out"
    proc = subprocess.Popen([sys.executable, "-m", "spikecore.accel.flows.cli", "sweep", str(spec), "--out", str(out),
                             "--workers", "1", "--quiet"], start_new_session=True,
                            env={**os.environ, "PYTHONPATH": f"{tmp / 'hold'}{os.pathsep}{ROOT}"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    workers = {}
    while not workers and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        workers = {pid: line for pid, line in _children(proc.pid).items() if "spawn_main" in line}
    assert workers, "the sweep started no worker"
    yield proc, spec, out, workers
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_second_sweep_on_a_folder_is_refused(held_sweep, capsys):
    """Row ``sweep-concurrent``: a second sweep on a folder a sweep is running on."""
    proc, spec, out, _ = held_sweep
    journal = out / sweep.JOURNAL
    capsys.readouterr()
    assert main(["sweep", str(spec), "--out", str(out), "--quiet"]) == 2
    line = _one_error_line(capsys, "sweep")
    assert f"{out}: another accel sweep (pid {proc.pid}) is running on this folder" in line
    assert not journal.exists() or journal.read_bytes() == b""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc")
def test_workers_die_with_a_killed_sweep_which_then_resumes(held_sweep, capsys):
    """Row ``sweep-killed``: the sweep is killed (SIGKILL) while its worker computes a point."""
    proc, spec, out, workers = held_sweep
    proc.send_signal(signal.SIGKILL)  # the sweep alone: its workers are not signalled
    proc.wait()
    deadline = time.monotonic() + 10
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_running(pid) for pid in workers), "a worker outlived its sweep"
    capsys.readouterr()
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "1", "--quiet"]) == 0  # the lock is free
    assert "(1 computed now," in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir() if p.name != ".spikecore-output.json") == \
        ["pareto.csv", "pareto.png", "points.jsonl", "sweep.csv", "sweep.json"]


def test_killed_after_final_checkpoint_the_rerun_writes_the_results(tmp_path, capsys):
    """Row ``train-finish-bookkeeping``: a kill between the final checkpoint and metrics.json; the rerun writes
    the results from the checkpoint."""
    config, out = write(tmp_path / "c.yaml", TINY_TRAIN), tmp_path / "run"
    assert main(["train", str(config), "--out", str(out), "--quiet"]) == 0
    finished = (out / "metrics.json").read_bytes()
    unfinished = json.loads(finished)
    unfinished.update(finished=False, epochs_done=0, history=[])
    (out / "metrics.json").write_text(json.dumps(unfinished))  # what an earlier epoch had written
    (out / "curves.png").unlink()
    capsys.readouterr()
    assert main(["train", str(config), "--out", str(out), "--quiet"]) == 0
    assert "had finished (1 epochs) but was stopped before writing its results" in capsys.readouterr().err
    assert (out / "metrics.json").read_bytes() == finished and (out / "curves.png").is_file()
    assert main(["train", str(config), "--out", str(out), "--quiet"]) == 0
    assert "the run is already finished (1 epochs)" in capsys.readouterr().err


@pytest.mark.parametrize("generic", [False, True], ids=["digits", "generic"])
def test_a_diverging_run_stops_in_one_line_without_nan_in_its_results(generic, tmp_path, capsys, monkeypatch):
    """Row ``train-diverged``: a loss that becomes NaN stops the run; no metrics.json holds NaN."""
    import torch

    import spikecore.models.train

    real_loss = spikecore.models.train.nn.CrossEntropyLoss

    class NanLoss(real_loss):
        def forward(self, logits, target):
            return super().forward(logits, target) * float("nan")

    monkeypatch.setattr(spikecore.models.train.nn, "CrossEntropyLoss", NanLoss)
    monkeypatch.setattr(torch.nn.functional, "cross_entropy",
                        lambda *args, **kwargs: torch.tensor(float("nan"), requires_grad=True))
    config = write(tmp_path / "c.yaml", TINY_TRAIN if generic else "train:\n  epochs: 1\n")
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(["train", str(config), "--out", str(out), "--quiet"]) == 2
    line = _one_error_line(capsys, "train")
    assert "c.yaml: training diverged in epoch 1: the loss is nan (lower train.lr" in line
    for metrics in out.glob("metrics.json") if out.exists() else []:
        json.loads(metrics.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in metrics.json"))
