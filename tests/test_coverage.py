"""Functional coverage of the RTL runs (``docs/coverage.md``): the default suite reaches every bin.

The compact set (:data:`RUNS`, under Icarus, builds shared with the contract suite's RTL cases): the construct
program of seed 9 (every construct kind: neuron, readout, sum, gate, carry) in each multi-value mode and
schedule, the last with a trace memory too small for its events (trace overflow); the same program over the
host bus on the banked core (every bank member and host memory read and written); the saturating program of
the contract suite (membranes); the hand-built program of ``tests/test_rtl_core_handmade.py``, whose narrow
accumulators saturate, with its passes made a sum and a gate (their clamps saturate: no compiled program reaches
these three, since the compiler proves its accumulators never overflow and its sums and gates in range); and an
empty program (the run that clears nothing and ends at once). Together they must leave no hole and nothing
unexpected; each run alone leaves holes, which the planted checks name.
"""
from __future__ import annotations

import copy
import dataclasses
import json

import pytest

from bad_input import assert_one_error_line, assert_table_lists
from contract.generators import PIXEL_MAX, fuzz_arch
from contract.programs import CONSTRUCT_SIZE, CONSTRUCT_T, build, construct_arch, construct_layers, random_images
from spikecore.accel.contract.checkpoint import shipped_checkpoint_path
from spikecore.accel.contract.compiler import compile_stages
from spikecore.accel.contract.config import MULTIVALUE_MODES, SCHEDULES
from spikecore.accel.contract.layouts import HARDWARE_KIND, all_layouts
from spikecore.accel.flows.cli import main
from spikecore.rtl import coverage
from spikecore.rtl.runner import run_inferences
from test_rtl_core_handmade import build_network, compile_program, random_inputs, tiny_arch

#: The trace memory of the run that overflows it (the program emits more events).
TRACE_WORDS = 16


def _arch(name: str):
    """The construct programs' architectures, and the two this test adds."""
    if name == "layer-major-bitserial-short-trace":  # bit-serial, time-batched, a trace of TRACE_WORDS words
        arch = fuzz_arch(4, multivalue="bitserial", schedule="layer_major")
        return dataclasses.replace(arch, name=name, memories=dataclasses.replace(arch.memories, trace=TRACE_WORDS))
    return construct_arch(name)


#: ``(case of the contract suite, architecture, over the host bus)``: the compact set.
RUNS = (("constructs-s9@lane-parallel", "lane-parallel", False),
        ("constructs-s9@bitserial", "bitserial", False),
        ("constructs-s9@layer-major", "layer-major", False),
        ("constructs-s9@layer-major", "layer-major-bitserial-short-trace", False),
        ("constructs-s9@banked", "banked", True),
        ("constructs-s9@narrow", "narrow", False))


def _image_and_pixels(case: str, arch_name: str):
    """The memory image, first image's pixels and architecture of a run of :data:`RUNS`."""
    program, arch, pixels, _ = build(case)
    if arch_name != case.split("@")[1]:  # the case's program compiled for another architecture
        arch = _arch(arch_name)
        layers, _ = construct_layers(9)
        program = compile_stages(layers, arch, CONSTRUCT_T, (1, CONSTRUCT_SIZE, CONSTRUCT_SIZE), PIXEL_MAX)
        pixels = random_images(9, 1, program.n_inputs, PIXEL_MAX)
    return program.memory_image(arch), [[int(v) for v in pixels[0]]], arch


def _empty_image():
    """No pass, no state row: the core scans the image and is done."""
    return {"registers": {"n_layers": 0, "timesteps": 1, "n_inputs": 3, "state_rows": 0}}


def _clamping_image(arch):
    """The hand-built program with its first pass a sum and its second a gate (the descriptors' kinds only)."""
    image, _ = compile_program(arch, build_network(arch))
    layout = all_layouts(arch)["layers"]
    fields = layout.unpack(image["layers"])
    fields["kind"][:] = [HARDWARE_KIND["sum"], HARDWARE_KIND["gate"]]
    return {**image, "layers": layout.pack(**fields)}


def coverage_runs(workdir) -> list:
    """``(collection, the runner's result)`` (:func:`spikecore.rtl.coverage.collect`) of each run of :data:`RUNS`,
    then of the hand-built program made a sum and a gate, then of the empty program (the last two on ``tiny``)."""
    runs = [(_image_and_pixels(case, arch_name), host_bus) for case, arch_name, host_bus in RUNS]
    arch = tiny_arch()
    runs += [((_clamping_image(arch), random_inputs(12, 1)[:1], arch), False),
             ((_empty_image(), [[1, 2, 3]], arch), False)]
    found = []
    for (image, inputs, arch), host_bus in runs:
        (result,) = run_inferences(image, inputs, arch, workdir, simulator="icarus", jobs=1, backdoor=not host_bus,
                                   coverage=True)
        found.append((coverage.collect(arch, [result["coverage"]]), result))
    return found


@pytest.fixture(scope="module")
def runs(rtl_cache):
    return coverage_runs(rtl_cache / "rtl")  # the contract suite's RTL builds


@pytest.fixture(scope="module")
def collections(runs):
    return [collection for collection, _ in runs]


@pytest.fixture(scope="module")
def suite_report(collections):
    return coverage.report(coverage.merge(collections), every_mode=True)


def test_the_default_suite_leaves_no_hole(suite_report):
    assert suite_report["unexpected"] == []
    assert suite_report["holes"] == [], suite_report["holes"]
    assert suite_report["covered"] == suite_report["size"] > 0
    points = suite_report["coverpoints"]
    # every mode and schedule's construct kinds, every state of every configuration's controller
    for multivalue in MULTIVALUE_MODES:
        for schedule in SCHEDULES:
            assert set(points[coverage.construct_coverpoint(multivalue, schedule)]["bins"]) == set(
                coverage.CONSTRUCT_KINDS)
    states = set(coverage.controller_schedule(tiny_arch()).encoding)
    for name in {arch for _, arch, _ in RUNS}:
        states |= set(coverage.controller_schedule(_arch(name)).encoding)
    assert set(points["controller.states"]["bins"]) == states >= {"ARD", "USUM", "CLEAR", "EMIT"}
    assert set(points["saturation"]["bins"]) == set(coverage.SATURATING)


def test_the_counters_agree_with_the_core(runs):
    """The counters are the core's doing: cycles outside IDLE are its cycle count, EMIT cycles its trace writes
    (with the dropped ones), saturation events its saturation register, overflow its overflow flag."""
    for collection, result in runs:
        points = collection["coverpoints"]
        states = points["controller.states"]
        assert sum(count for state, count in states.items() if state != "IDLE") == result["cycles"]
        dropped = points["trace"]["overflow"]
        assert states.get("EMIT", 0) == result["trace_count"] + dropped
        assert bool(dropped) == bool(result["trace_overflow"])
        assert sum(points["saturation"].values()) == result["saturations"]
        moves = points["controller.transitions"]
        assert moves.get("NEXT -> IDLE", 0) + moves.get("SCAN -> IDLE", 0) == 1  # one inference, one end


def test_verilator_counts_as_icarus(runs, rtl_cache):
    """The same counters under Verilator (the contract suite's Verilator build of this core, when it ran first)."""
    image, inputs, arch = _image_and_pixels(*RUNS[0][:2])
    (result,) = run_inferences(image, inputs, arch, rtl_cache / "rtl", simulator="verilator", coverage=True)
    verilator, icarus = coverage.collect(arch, [result["coverage"]]), copy.deepcopy(runs[0][0])
    # the two start the testbench one clock apart (docs/waves.md): one idle cycle more or less before the first write
    idle = [found["coverpoints"]["controller.states"].pop("IDLE") for found in (verilator, icarus)]
    assert abs(idle[0] - idle[1]) <= 1 and min(idle) > 0
    assert verilator == icarus


def test_each_run_alone_leaves_holes_that_are_named(collections):
    """A planted check: a program that cannot reach an event leaves it a hole, named in the report."""
    empty = coverage.report(collections[-1])
    assert "controller.states: CLEAR" in empty["holes"] and "controller.states: EMIT" in empty["holes"]
    assert "controller.transitions: SCAN -> IDLE" not in empty["holes"]
    lane_parallel = coverage.report(collections[0])
    assert "controller.transitions: SCAN -> IDLE" in lane_parallel["holes"]
    assert "trace: overflow" in lane_parallel["holes"] and "saturation: membrane" in lane_parallel["holes"]
    assert lane_parallel["percent"] < 100.0
    # without every mode required, a run's report has its own mode's constructs only
    assert [point for point in lane_parallel["coverpoints"] if point.startswith("constructs.")] == [
        "constructs.repeat.timestep_major"]
    every_mode = coverage.report(collections[0], every_mode=True)
    assert "constructs.bitserial.layer_major: gate" in every_mode["holes"]


def test_an_undeclared_transition_is_unexpected(collections):
    """A transition the core takes that no state declares (a state that set ``m.next`` directly) is reported."""
    arch = _arch("lane-parallel")
    schedule = coverage.controller_schedule(arch)
    code = schedule.encoding
    found = coverage.collect(arch, [{f"move.{code['DESC']}.{code['EMIT']}": 1, f"state.{code['DESC']}": 1}])
    assert found["unexpected"] == ["transition DESC -> EMIT, which no state declares"]
    assert coverage.report(found)["summary"].endswith("1 unexpected")


def test_the_report_files(tmp_path, suite_report):
    json_path, markdown_path, png_path = coverage.write_report(suite_report, tmp_path / "cov")
    assert json.loads(json_path.read_text()) == suite_report
    text = markdown_path.read_text()
    assert suite_report["summary"] in text and "## Holes\n\nNone." in text
    assert png_path == tmp_path / "cov" / "coverage.png" and png_path.read_bytes()[:4] == b"\x89PNG"
    single = coverage.write_report(suite_report, tmp_path / "one.json")
    assert single == (tmp_path / "one.json", tmp_path / "one.md", tmp_path / "one.png")
    assert all(path.stat().st_size > 0 for path in single)


#: ``(row of docs/bad-inputs.md, the --coverage destination made in tmp_path, what the one line says)``
BAD_DESTINATIONS = (
    ("verify-coverage-not-a-folder", lambda tmp: _file(tmp / "cov.txt"), "exists and is not a folder"),
    ("verify-coverage-json-is-a-folder", lambda tmp: _folder(tmp / "cov.json"), "cov.json is a folder"),
)


def _file(path):
    path.write_text("not a folder\n")
    return path


def _folder(path):
    path.mkdir()
    return path


def test_bad_destinations_are_listed():
    assert_table_lists(row_id for row_id, _, _ in BAD_DESTINATIONS)


@pytest.mark.parametrize("row_id, destination, needle", BAD_DESTINATIONS, ids=[row[0] for row in BAD_DESTINATIONS])
def test_a_bad_destination_is_refused_before_any_work(row_id, destination, needle, tmp_path, capsys):
    target = destination(tmp_path)
    out = tmp_path / "verify.json"
    status = main(["verify", str(shipped_checkpoint_path()), "--samples", "1", "--out", str(out),
                   "--coverage", str(target)])
    assert status == 2
    assert_one_error_line(capsys.readouterr().err, "verify", ["--coverage", needle])
    assert not out.exists() and not (tmp_path / "cov.md").exists()


def test_accel_verify_writes_the_coverage_report(tmp_path, capsys):
    """The command line's success path: the three files, named in the verify report and on stdout."""
    out = tmp_path / "verify.json"
    status = main(["verify", str(shipped_checkpoint_path()), "--samples", "1", "--simulator", "icarus",
                   "--out", str(out), "--coverage", str(tmp_path / "cov"), "--quiet"])
    assert status == 0
    described = json.loads(out.read_text())["coverage"]
    paths = [tmp_path / "cov" / name for name in ("coverage.json", "coverage.md", "coverage.png")]
    assert [described[key] for key in ("report", "markdown", "plot")] == [str(path) for path in paths]
    assert json.loads(paths[0].read_text())["summary"] == described["summary"] and described["holes"]
    assert paths[2].read_bytes()[:4] == b"\x89PNG"
    assert f"{described['summary']}; report {paths[0]}, {paths[1]} and {paths[2]}" in capsys.readouterr().out
