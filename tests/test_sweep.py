"""accel sweep: the sweep file, point ids, one point's evaluation, resuming after the process is killed, a Dask
LocalCluster giving the local pool's results, the Pareto front and the written tables."""
import csv
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spikecore.accel.flows import sweep
from spikecore.accel.contract.checkpoint import load_checkpoint, shipped_checkpoint_path
from spikecore.accel.flows.cli import main
from spikecore.accel.contract.compiler import compile_network
from spikecore.accel.contract.config import arch_from_dict, default_arch
from spikecore.accel.flows.synth import TARGETS

ROOT = Path(__file__).resolve().parents[1]
SPEC = """\
name: tiny
samples: 12
fit_memories: 1.5
grid:
  lanes: [8, 16]
random:
  points: 1
  seed: 0
  space:
    weight_bits: [6]
synth:
  target: ice40-up5k
  points: 0
"""


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(SPEC)
    return path


HOLD_AFTER_FIRST_POINT = """\
import time

import spikecore.accel.flows.sweep

_evaluate, _calls = spikecore.accel.flows.sweep.evaluate_point, []


def held_evaluate_point(task):
    _calls.append(task["id"])
    if len(_calls) > 1:
        time.sleep(600)  # the test kills the sweep during this point
    return _evaluate(task)


spikecore.accel.flows.sweep.evaluate_point = held_evaluate_point
"""


def _journal_lines(path: Path) -> list:
    return path.read_bytes().splitlines(keepends=True) if path.exists() else []


@pytest.fixture(scope="module")
def resumed_run(spec_file, tmp_path_factory):
    """Start ``accel sweep`` in a process, kill it (SIGKILL) once a point is journalled, tear the journal's
    last line as an interrupted write would, then rerun it in-process.

    The killed run's worker holds every point after its first (a ``sitecustomize`` loaded only by that
    run wraps ``evaluate_point``), so the kill always lands with points left to do, however fast they are."""
    out = tmp_path_factory.mktemp("sweep") / "out"
    journal = out / sweep.JOURNAL
    hold = tmp_path_factory.mktemp("hold")
    (hold / "sitecustomize.py").write_text(HOLD_AFTER_FIRST_POINT)
    env = {**os.environ, "PYTHONPATH": f"{hold}{os.pathsep}{ROOT}"}
    proc = subprocess.Popen([sys.executable, "-m", "spikecore.accel.flows.cli", "sweep", str(spec_file), "--out", str(out),
                             "--workers", "1", "--quiet"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not _journal_lines(journal) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _journal_lines(journal)
    assert 1 <= len(before) < 3, "the sweep was to be killed with points left to do"
    with open(journal, "ab") as handle:
        handle.write(b'{"id": "torn-wri')
    argv = ["sweep", str(spec_file), "--out", str(out), "--workers", "1", "--quiet"]
    return out, before, argv


def test_example_sweep_covers_24_configurations_with_4_synthesised():
    spec = sweep.load_sweep(ROOT / "examples" / "sweep_digits.yaml")
    tasks = sweep.plan(spec)
    assert len(tasks) >= 24 and len({t["id"] for t in tasks}) == len(tasks)
    assert sum(t["synth_target"] == "ice40-up5k" for t in tasks) == 4
    assert [t["id"] for t in sweep.plan(sweep.load_sweep(ROOT / "examples" / "sweep_digits.yaml"))] == \
        [t["id"] for t in tasks]


def test_point_id_follows_the_hardware_not_the_name(spec_file):
    spec = sweep.load_sweep(spec_file)
    renamed = dataclasses.replace(spec, base={**spec.base, "name": "other"})
    assert [t["id"] for t in sweep.plan(spec)] == [t["id"] for t in sweep.plan(renamed)]
    wider = dataclasses.replace(spec, base={**spec.base, "acc_bits": 18})
    assert not {t["id"] for t in sweep.plan(spec)} & {t["id"] for t in sweep.plan(wider)}


def test_point_evaluation_fits_memories_and_records_infeasible_points(spec_file):
    spec = sweep.load_sweep(spec_file)
    task = sweep.plan(spec)[1]                       # lanes 16
    record = sweep.evaluate_point(task)
    assert record["status"] == "ok" and record["samples"] == 12
    net, _ = load_checkpoint(shipped_checkpoint_path())
    arch = default_arch()
    probe = sweep._fitted_arch(dataclasses.replace(arch, lanes=16), net, {}, 1.0)
    program = compile_network(net, probe)            # a factor of 1 gives exactly the network's need
    assert record["memories"]["synapses"] == math.ceil(len(program.memories["synapses"]["row"]) * 1.5)
    assert record["memories"]["state"] == math.ceil(program.state_rows * 1.5)
    # pow2: the smallest power of two holding the need (block RAMs come in powers of two)
    fitted = sweep._fitted_arch(dataclasses.replace(arch, lanes=16), net, {"memories.layers": 16}, "pow2")
    for name, used in (("synapses", len(program.memories["synapses"]["row"])), ("state", program.state_rows),
                       ("weights", len(program.memories["weights"]["w"]))):
        depth = getattr(fitted.memories, name)
        assert depth & (depth - 1) == 0 and used <= depth < 2 * used, name
    assert fitted.memories.layers == arch.memories.layers             # swept: left alone
    narrow = {**task, "arch": {**task["arch"], "acc_bits": 12}, "id": "narrow"}
    bad = sweep.evaluate_point(narrow)
    assert bad["status"] == "infeasible" and "overflows acc_bits = 12" in bad["reason"]


def test_kill_and_rerun_computes_only_the_missing_points(resumed_run, capsys):
    out, before, argv = resumed_run
    capsys.readouterr()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"({3 - len(before)} computed now," in printed
    after = _journal_lines(out / sweep.JOURNAL)
    assert after[:len(before)] == before                 # finished points kept byte for byte
    assert len(after) == 3 and len({json.loads(line)["id"] for line in after}) == 3
    assert main(argv) == 0                               # a third run has nothing left to do
    assert "(0 computed now," in capsys.readouterr().out
    assert _journal_lines(out / sweep.JOURNAL) == after


def test_tables_and_pareto_front(resumed_run):
    out, _, _ = resumed_run
    rows = list(csv.DictReader(open(out / "sweep.csv")))
    assert len(rows) == 3 and all(r["status"] == "ok" for r in rows)
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["format"] == "spikecore-sweep-summary" and summary["inputs"]["sweep"]["sha256"]
    cap = TARGETS["ice40-up5k"].capacity
    for r in rows:
        assert r["area_source"] == "model" and set(cap) <= set(r)  # every resource of the UP5K, SPRAM included
        assert float(r["device_fraction"]) == pytest.approx(max(float(r[k]) / cap[k] for k in cap))
        assert (r["fits"] == "True") == (float(r["device_fraction"]) <= 1)
    front = {r["id"] for r in csv.DictReader(open(out / "pareto.csv"))}
    assert front == {r["id"] for r in rows if r["pareto"] == "True"} and front
    objectives = [("latency_us", 1), ("device_fraction", 1), ("energy_uj", 1), ("accuracy", -1)]
    for r in rows:
        dominated = any(all(s * float(o[k]) <= s * float(r[k]) for k, s in objectives)
                        and any(s * float(o[k]) < s * float(r[k]) for k, s in objectives) for o in rows)
        assert (r["id"] in front) == (not dominated)
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["points"] == 3 and summary["area_model"]["error"]["lut"] >= 0


def test_dask_local_cluster_gives_the_local_results(spec_file, resumed_run, tmp_path):
    from distributed import LocalCluster

    local = {json.loads(l)["id"]: json.loads(l) for l in _journal_lines(resumed_run[0] / sweep.JOURNAL)}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        summary = sweep.run_sweep(sweep.load_sweep(spec_file), tmp_path / "dask", scheduler=cluster.scheduler_address,
                                  progress=False, log=lambda line: None)
    assert summary["computed"] == 3
    remote = {json.loads(l)["id"]: json.loads(l) for l in _journal_lines(tmp_path / "dask" / sweep.JOURNAL)}
    assert remote.keys() == local.keys()
    for key, record in remote.items():
        for field in ("accuracy", "cycles_mean", "energy_uj", "memories", "arch_fingerprint"):
            assert record[field] == local[key][field], field


def test_pareto_front_drops_an_objective_no_point_has():
    rows = [{"status": "ok", "latency_us": 1.0, "energy_uj": 2.0, "accuracy": 0.9, "device_fraction": None},
            {"status": "ok", "latency_us": 2.0, "energy_uj": 1.0, "accuracy": 0.9, "device_fraction": None},
            {"status": "ok", "latency_us": 2.0, "energy_uj": 2.0, "accuracy": 0.8, "device_fraction": None},
            {"status": "infeasible"}]
    assert sweep.pareto_front(rows) == [0, 1]


@pytest.mark.slow
def test_example_sweep_end_to_end(tmp_path):
    """The documented example, as the README runs it: 32 points, 4 synthesised, in a few minutes."""
    assert main(["sweep", str(ROOT / "examples" / "sweep_digits.yaml"), "--out", str(tmp_path), "--quiet"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
    assert len(rows) >= 24
    assert sum(r["area_source"] == "synthesis" for r in rows) == 4
    assert (tmp_path / "pareto.png").exists() and list(csv.DictReader(open(tmp_path / "pareto.csv")))


@pytest.mark.slow
def test_synthesised_sweep_points_are_cycle_exact_on_the_rtl(rtl_cache):
    """The points of examples/sweep_digits.yaml that the sweep synthesises (spread over its range of size), each
    with the memories the sweep fits to it: the RTL under Verilator equals the golden model and the simulator
    on every spike, and its cycle count equals the simulator's. Slow (four Verilator builds, about 90 s): the
    contract suite runs the RTL on its configurations in the default run."""
    from spikecore.accel.flows.simulation import digits_test_images
    from spikecore.accel.flows.verify import verify
    from spikecore.rtl.runner import run_inferences
    from spikecore.sim.engine import simulate_batch

    spec = sweep.load_sweep(ROOT / "examples" / "sweep_digits.yaml")
    chosen = [task for task in sweep.plan(spec) if task["synth_target"]]
    assert len(chosen) == 4 and len({task["params"]["lanes"] for task in chosen}) >= 3
    pixels = digits_test_images(2)[0]
    for task in chosen:
        arch = arch_from_dict(task["arch"], "sweep point")
        net = sweep._network(task["network"])
        arch = sweep._fitted_arch(arch, net, task["params"], spec.fit_memories)
        program = compile_network(net, arch)
        sims = simulate_batch(program, arch, pixels.reshape(len(pixels), -1).numpy())
        rtl = run_inferences(program.memory_image(arch), [[int(v) for v in p.reshape(-1).tolist()] for p in pixels],
                             arch, rtl_cache / "rtl", simulator="verilator")
        report, _ = verify(program, arch, pixels, rtl, sims)
        assert report["bit_exact"] and report["cycle_exact"], (task["params"], report["mismatches"][:2])
        assert [r["cycles"] for r in rtl] == [s.cycles for s in sims], task["params"]
