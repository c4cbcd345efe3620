"""Hostile and clumsy input to the RTL build cache and the synthesis cache.

A configuration name that carries Verilog never reaches ``core.v``; a damaged cache entry (a truncated
``core.v``, build output or report, a stamp that is garbage) is made again instead of giving a traceback; two
runs needing the same entry at once build it once; a cache path with a space works; an unwritable cache is a
one-line ``UserError``; the temporaries of killed runs are removed by the next run, and nothing else is.

Builds use the tiny hand-made core of ``test_rtl_core_handmade`` under Icarus (seconds each); synthesis is
faked except for one Yosys run; one Verilator build of a three-line module checks paths that GNU Make
misreads (a space, ':', '$', '#').
"""
import contextlib
import dataclasses
import json
import multiprocessing
import os
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from cocotb_tools.runner import get_runner

import spikecore.rtl.verilog
from bad_input import assert_table_lists
from spikecore.accel.flows import synth
from spikecore.accel.flows.cli import main
from spikecore.errors import UserError
from spikecore.rtl import verilator as verilator_support
from spikecore.rtl.runner import (SIM_BUILD, STAMP, build_core, design_key, read_stamp, remove_dead_run_folders,
                        run_inferences, write_stamp)
from spikecore.rtl.verilog import TOP_MODULE, generate
from test_rtl_core_handmade import build_network, compile_program, reference, tiny_arch

INJECTED = "x'\n`define SPIKECORE_PWNED 1\nmodule pwned; initial $system(\"touch /tmp/pwned\"); endmodule\n// '"
INPUTS = [[3, 0, 7, 1, 0, 5]]
FORK = multiprocessing.get_context("fork")


@pytest.fixture(scope="module")
def tiny():
    """The tiny core, its program image and the reference result of :data:`INPUTS`."""
    arch = tiny_arch()
    network = build_network(arch)
    image, fanout = compile_program(arch, network)
    return arch, image, [reference(arch, network, fanout, image, pixels) for pixels in INPUTS]


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def check_run(results, expected):
    assert [(r["cycles"], r["trace"], r["state"]) for r in results] == \
        [(e["cycles"], e["trace"], e["state"]) for e in expected]


# ---- the configuration's name ------------------------------------------------------------------
def test_a_name_with_verilog_never_reaches_core_v(tmp_path):
    clean = tiny_arch()
    hostile = dataclasses.replace(clean, name=INJECTED)  # bypasses the configuration file's name check
    text = generate(hostile, tmp_path / "hostile").read_text()
    assert text == generate(clean, tmp_path / "clean").read_text()  # name-free: the same file
    assert "pwned" not in text and "$system" not in text and "SPIKECORE_PWNED" not in text
    assert text.splitlines()[0] == f"// spikecore core, architecture fingerprint {clean.fingerprint()}"
    assert design_key(hostile) == design_key(clean)  # so one cache entry serves both, rightly


# ---- damaged RTL cache entries -----------------------------------------------------------------
def truncate(path: Path):
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])


def damage_core(design: Path):
    truncate(design / f"{TOP_MODULE}.v")


def core_becomes_a_folder(design: Path):
    (design / f"{TOP_MODULE}.v").unlink()
    (design / f"{TOP_MODULE}.v" / "junk").mkdir(parents=True)


def damage_build_output(design: Path):
    truncate(design / SIM_BUILD["icarus"] / "sim.vvp")


def garbage_stamp(design: Path):
    (design / SIM_BUILD["icarus"] / STAMP).write_bytes(b"\xff{not json")


def stamp_of_another_key(design: Path):
    stamp = design / SIM_BUILD["icarus"] / STAMP
    stamp.write_text(json.dumps(dict(json.loads(stamp.read_text()), key="another")))


def remove_build_output(design: Path):
    (design / SIM_BUILD["icarus"] / "sim.vvp").unlink()


@pytest.mark.parametrize("damage", [damage_core, core_becomes_a_folder, damage_build_output, garbage_stamp,
                                    stamp_of_another_key, remove_build_output])
def test_a_damaged_rtl_cache_entry_is_made_again(damage, tiny, tmp_path):
    arch, image, expected = tiny
    design = build_core(get_runner("icarus"), arch, tmp_path, "icarus")
    core = (design / f"{TOP_MODULE}.v").read_text()
    damage(design)
    assert build_core(get_runner("icarus"), arch, tmp_path, "icarus") == design
    assert (design / f"{TOP_MODULE}.v").read_text() == core
    assert read_stamp(design / f"{TOP_MODULE}.v.{STAMP}", design.name) is not None
    assert read_stamp(design / SIM_BUILD["icarus"] / STAMP) is not None
    if damage is damage_build_output:  # and the rebuilt entry runs
        check_run(run_inferences(image, INPUTS, arch, tmp_path, jobs=1), expected)


def test_stamps_vouch_only_for_unchanged_files_inside_their_folder(tmp_path):
    (tmp_path / "data").write_text("payload")
    write_stamp(tmp_path / STAMP, "key", [tmp_path / "data"])
    assert read_stamp(tmp_path / STAMP, "key")["files"] == {"data": read_stamp(tmp_path / STAMP)["files"]["data"]}
    assert read_stamp(tmp_path / STAMP, "other") is None
    (tmp_path / "data").write_text("payloaD")
    assert read_stamp(tmp_path / STAMP) is None
    for manifest in ([], {"key": "key", "files": {}}, {"key": "key", "files": {"../data": "0" * 64}},
                     {"key": 1, "files": {"data": "0" * 64}}, {"key": "key", "files": {"data": 5}}):
        (tmp_path / STAMP).write_text(json.dumps(manifest))
        assert read_stamp(tmp_path / STAMP) is None


# ---- concurrent builds ---------------------------------------------------------------------------
class SlowCountingRunner:
    """cocotb's Icarus runner, counting its builds in a file and slow enough for a second run to arrive."""

    def __init__(self, counter: Path):
        self.runner, self.counter = get_runner("icarus"), counter

    def build(self, **kwargs):
        with open(self.counter, "a") as counter:
            counter.write("build\n")
        time.sleep(1.5)
        self.runner.build(**kwargs)


def build_in_child(arch, workdir: Path, counter: Path, stderr: Path, started):
    with open(stderr, "w") as log, contextlib.redirect_stderr(log):
        started.wait()
        build_core(SlowCountingRunner(counter), arch, workdir, "icarus")


def run_twice_at_once(target, arguments, tmp_path: Path) -> str:
    """Run ``target(*arguments(k, started))`` in two forked processes released together; both must succeed.
    Returns what they wrote to ``tmp_path/stderr0`` and ``stderr1``."""
    started = FORK.Event()
    children = [FORK.Process(target=target, args=arguments(k, started)) for k in range(2)]
    for child in children:
        child.start()
    started.set()
    for child in children:
        child.join(120)
    messages = (tmp_path / "stderr0").read_text() + (tmp_path / "stderr1").read_text()
    assert [child.exitcode for child in children] == [0, 0], messages
    return messages


def test_concurrent_runs_build_an_entry_once(tiny, tmp_path):
    arch = tiny[0]
    messages = run_twice_at_once(build_in_child, lambda k, started: (arch, tmp_path / "cache", tmp_path / "builds",
                                                                      tmp_path / f"stderr{k}", started), tmp_path)
    assert (tmp_path / "builds").read_text() == "build\n"
    assert "waiting for another process building" in messages


# ---- paths with spaces, unwritable caches, temporaries of killed runs ------------------------------
def test_a_cache_path_with_a_space_works_under_icarus(tiny, tmp_path):
    arch, image, expected = tiny
    check_run(run_inferences(image, INPUTS, arch, tmp_path / "my cache" / "rtl dir", jobs=1), expected)


def test_verilator_builds_for_paths_that_make_misreads(tmp_path):
    """GNU Make refuses a folder with a space, and reads ':', '$' and '#' in the source's path as syntax: the
    model is built in a scratch folder, from a copy of the source, and copied back (about 30 s)."""
    verilator_support.setup_environment()  # a missing Verilator fails here with its install hint
    source = tmp_path / "source: $dir #1" / "top.v"
    source.parent.mkdir()
    source.write_text("module top(clk, q);\n  input clk;\n  output reg q = 0;\n  always @(posedge clk) q <= ~q;\n"
                      "endmodule\n")
    out_dir = tmp_path / "build dir" / "sim build"
    verilator_support.build(source, "top", out_dir, tmp_path / "build dir" / "build.log")
    assert os.access(out_dir / "top", os.X_OK) and (out_dir / "top_ports.vlt").is_file()
    assert not (out_dir / "source.v").exists()  # the copy made for make is gone
    scratch = Path(tempfile.gettempdir())
    assert not list(scratch.glob(f".{verilator_support.SCRATCH_NAME}.{os.getpid()}.*"))


def test_verilator_without_any_folder_make_can_read_is_a_user_error(monkeypatch, tmp_path):
    verilator_support.setup_environment()  # a missing Verilator fails here with its install hint
    (tmp_path / "tmp dir").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp dir"))
    with pytest.raises(UserError, match=r"Verilator cannot build in .*build dir.* nor in the temporary folder "
                                        r".*tmp dir.*set TMPDIR, or SPIKECORE_CACHE"):
        verilator_support.build(tmp_path / "top.v", "top", tmp_path / "build dir", tmp_path / "build.log")


def test_an_unwritable_cache_is_a_user_error(tiny, tmp_path):
    arch, image, _ = tiny
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(UserError, match=r"cannot write the cache folder .*file.*SPIKECORE_CACHE"):
        run_inferences(image, INPUTS, arch, tmp_path / "file" / "rtl")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
        with pytest.raises(UserError, match="cannot write the cache folder .*locked"):
            run_inferences(image, INPUTS, arch, locked)


def test_run_folders_of_dead_runs_are_removed_and_nothing_else(tiny, tmp_path):
    arch = tiny[0]
    design = build_core(get_runner("icarus"), arch, tmp_path, "icarus")
    gone = dead_pid()
    dead = [design / f"run-{gone}-abcd_123", design / f".{SIM_BUILD['icarus']}.{gone}.xyz.tmp"]
    kept = [design / f"run-{os.getpid()}-abcd_123", design / "run-notapid-abcd", design / f"run-{gone}-ABC",
            design / "results", design / f"run-{gone}"]
    for folder in dead + kept:
        folder.mkdir()
    (design / f"run-{gone}-file").write_text("a file, not a run folder")
    assert remove_dead_run_folders(design) == [dead[0]]
    build_core(get_runner("icarus"), arch, tmp_path, "icarus")  # the next build clears both kinds
    assert not any(folder.exists() for folder in dead)
    assert all(folder.is_dir() for folder in kept) and (design / f"run-{gone}-file").is_file()


# ---- the synthesis cache -----------------------------------------------------------------------
def fake_report(arch, target, versions):
    """What ``spikecore.accel.flows.synth._synthesize`` returns, without running the tools."""
    counts = {resource: 1 for resource in synth.RESOURCES}
    return {"target": target.name, "device": target.device, "arch": arch.name, "arch_fingerprint": arch.fingerprint(),
            "arch_config": arch.to_dict(), "tools": versions, "flow_version": synth.FLOW_VERSION, **counts,
            "other_cells": {}, "cells": {"SB_LUT4": 1}, "shell_cells": {}, "capacity": target.capacity,
            "utilization": {resource: 1 / available for resource, available in target.capacity.items()},
            "fits": True, "over_capacity": [], "clock_mhz": arch.clock_mhz, "fmax_mhz": 50.0, "fmax_reason": None,
            "meets_clock": True, "pnr": {"utilization": {}, "fmax": {}}, "seconds": {}}


#: ``core.v`` of each fingerprint generated so far by the fake flow's tests (generation takes a second).
GENERATED = {}


@pytest.fixture
def fake_tools(monkeypatch, tmp_path):
    """Synthesis into ``tmp_path/cache`` by a fake flow that counts its runs in ``tmp_path/runs`` (and a
    core's Verilog generated once for all these tests)."""
    runs = tmp_path / "runs"
    runs.write_text("")

    def generate_once(arch, out_dir):
        if arch.fingerprint() not in GENERATED:
            GENERATED[arch.fingerprint()] = generate(arch, out_dir).read_text()
        path = Path(out_dir) / f"{TOP_MODULE}.v"
        path.write_text(GENERATED[arch.fingerprint()])
        return path

    def fake_synthesize(arch, target, workdir, verilog, versions, progress, place):
        with open(runs, "a") as log:
            log.write("run\n")
        (workdir / "yosys.log").write_text("fake\n")
        time.sleep(float(os.environ.get("FAKE_SYNTH_SECONDS", "0")))
        return fake_report(arch, target, versions)

    monkeypatch.setattr(synth, "_synthesize", fake_synthesize)
    monkeypatch.setattr(spikecore.rtl.verilog, "generate", generate_once)
    monkeypatch.setenv("SPIKECORE_CACHE", str(tmp_path / "cache"))
    return runs


def number_of_runs(runs: Path) -> int:
    return len(runs.read_text().splitlines())


def truncate_report(entry: Path):
    truncate(entry / synth.REPORT_FILE)


def edit_report(change):
    """Damage that keeps the report valid JSON and even re-stamps it: only the report check can catch it."""
    def damage(entry: Path):
        report = json.loads((entry / synth.REPORT_FILE).read_text())
        change(report)
        (entry / synth.REPORT_FILE).write_text(json.dumps(report))
        key = json.loads((entry / STAMP).read_text())["key"]
        write_stamp(entry / STAMP, key, [entry / synth.REPORT_FILE])
    damage.__name__ = change.__name__
    return damage


def without_lut(report):
    del report["lut"]


def lut_as_text(report):
    report["lut"] = "many"


def fits_as_number(report):
    report["fits"] = 1


def bool_as_count(report):
    report["ff"] = True


def of_another_flow(report):
    report["flow_version"] = synth.FLOW_VERSION - 1


def empty_report(report):
    report.clear()


def unstamped(entry: Path):
    (entry / STAMP).unlink()


def report_becomes_a_folder(entry: Path):
    (entry / synth.REPORT_FILE).unlink()
    (entry / synth.REPORT_FILE).mkdir()


@pytest.mark.parametrize("damage", [truncate_report, edit_report(without_lut), edit_report(lut_as_text),
                                    edit_report(fits_as_number), edit_report(bool_as_count),
                                    edit_report(of_another_flow), edit_report(empty_report), unstamped,
                                    report_becomes_a_folder])
def test_a_damaged_synthesis_report_is_synthesised_again(damage, fake_tools):
    arch = tiny_arch()
    first = synth.synthesize(arch, "ice40-up5k")
    assert not first["cached"] and len(synth.cached_reports("ice40-up5k")) == 1
    damage(Path(first["cache_dir"]))
    assert synth.cached_reports("ice40-up5k") == []  # the area model's calibration skips it
    again = synth.synthesize(arch, "ice40-up5k")
    assert not again["cached"] and number_of_runs(fake_tools) == 2
    assert len(synth.cached_reports("ice40-up5k")) == 1


def test_cached_reports_skip_foreign_and_damaged_entries(fake_tools, tmp_path):
    arch = tiny_arch()
    report = synth.synthesize(arch, "ice40-up5k")
    folder = tmp_path / "cache" / "synth" / "ice40-up5k"
    (folder / "junk").mkdir()
    (folder / "a-file-0123").write_text("{}")
    copy = folder / f"{arch.fingerprint()}-0123456789abcdef"  # a report moved under another key's name
    copy.mkdir()
    for name in (synth.REPORT_FILE, STAMP):
        (copy / name).write_bytes((Path(report["cache_dir"]) / name).read_bytes())
    assert [r["arch_fingerprint"] for r in synth.cached_reports("ice40-up5k")] == [arch.fingerprint()]
    assert synth.cached_reports("ecp5-85") == []


def synthesize_in_child(arch, stderr: Path, results: Path, started):
    with open(stderr, "w") as log, contextlib.redirect_stderr(log):
        started.wait()
        report = synth.synthesize(arch, "ice40-up5k")
        results.write_text(json.dumps({"cached": report["cached"], "lut": report["lut"]}))


def test_concurrent_synthesis_of_one_configuration_runs_once(fake_tools, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_SYNTH_SECONDS", "1.5")
    messages = run_twice_at_once(synthesize_in_child, lambda k, started: (tiny_arch(), tmp_path / f"stderr{k}",
                                                                          tmp_path / f"result{k}", started),
                                 tmp_path)
    assert number_of_runs(fake_tools) == 1
    results = sorted(json.loads((tmp_path / f"result{k}").read_text())["cached"] for k in range(2))
    assert results == [False, True]
    assert "waiting for another process building" in messages


def test_work_folders_of_dead_synthesis_runs_are_removed(fake_tools, tmp_path):
    folder = tmp_path / "cache" / "synth" / "ice40-up5k"
    folder.mkdir(parents=True)
    gone = dead_pid()
    dead = folder / f".someconfig-0123456789abcdef.{gone}.abc_12.tmp"
    alive = folder / f".someconfig-0123456789abcdef.{os.getpid()}.abc_12.tmp"
    legacy = folder / ".someconfig-0123456789abcdef.k2j3h4"  # of the old naming: not provably ours
    for work in (dead, alive, legacy):
        work.mkdir()
    synth.synthesize(tiny_arch(), "ice40-up5k")
    assert not dead.exists() and alive.is_dir() and legacy.is_dir()


def test_an_unwritable_synthesis_cache_is_one_line_on_the_command_line(monkeypatch, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("SPIKECORE_CACHE", str(tmp_path / "file"))
    arch_file = tmp_path / "tiny.yaml"
    arch_file.write_text(json.dumps({"name": "tiny", "lanes": 2}))
    assert main(["synth", "--arch", str(arch_file), "--target", "ice40-up5k", "--out", str(tmp_path / "out"),
                 "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "cannot write the cache folder" in error and "SPIKECORE_CACHE" in error and "Traceback" not in error


def test_yosys_synthesises_in_a_cache_path_with_a_space(monkeypatch, tmp_path):
    """The real flow (area only, the tiny core) with the cache under a folder whose name has a space."""
    monkeypatch.setenv("SPIKECORE_CACHE", str(tmp_path / "my cache"))
    report = synth.synthesize(tiny_arch(), "ice40-up5k", place=False)
    assert report["lut"] > 0 and " " in report["cache_dir"]
    assert synth.synthesize(tiny_arch(), "ice40-up5k", place=False)["cached"]


def test_table_lists_every_case():
    assert_table_lists(("arch-name-injects-verilog", "rtl-cache-corrupt", "synth-cache-corrupt-report",
                        "cache-concurrent-build", "cache-path-with-space", "verilator-no-make-safe-folder",
                        "cache-unwritable", "cache-killed-run-leftovers"))
