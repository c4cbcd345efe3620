"""accel synth: the Verilog preparation, the shell, resource counting, one real iCE40 synthesis + place and
route of a tiny core (about a minute on 2 cores), the cache, and the command line."""
import dataclasses
import json
import re

import pytest

from spikecore.accel.flows.cli import main
from spikecore.accel.contract.config import arch_from_dict
from spikecore.accel.flows.synth import SHELL_FEED_BITS, SHELL_MODULE, TARGETS, count_resources, shell_verilog, synthesize
from spikecore.rtl.verilog import RAM_MODULE, TOP_MODULE, core_ports, generate

TINY = {"name": "tiny", "lanes": 2, "weight_bits": 4, "acc_bits": 8, "membrane_bits": 8, "input_bits": 4,
        "max_levels": 1, "max_timesteps": 2,
        "memories": {"layers": 2, "pointers": 16, "synapses": 16, "weights": 8, "params": 2, "state": 4, "events": 8,
                     "inputs": 8, "trace": 8}}


@pytest.fixture(scope="module")
def tiny_arch():
    return arch_from_dict(TINY, "tiny")


@pytest.fixture(scope="module")
def tiny_verilog(tiny_arch, tmp_path_factory):
    return generate(tiny_arch, tmp_path_factory.mktemp("rtl")).read_text()


@pytest.fixture(scope="module")
def synth_cache(tmp_path_factory):
    """A private synthesis cache, so that the first synthesis below really runs the tools."""
    return tmp_path_factory.mktemp("cache")


def test_memories_carry_no_initial_values_for_synthesis(tiny_verilog):
    """Each memory is an instance of the RAM module, named for its preload; the module's zero start (a loop) and
    preloading live in a simulation-only block; Yosys sees none."""
    assert not re.search(r"^\s*\S+\[\d+\] = \d+'h", tiny_verilog, re.MULTILINE)
    instances = re.findall(rf"^  {RAM_MODULE} #\((.*?)\n  \) (\w+) \(", tiny_verilog, re.MULTILINE | re.DOTALL)
    assert sorted(name for _, name in instances) == sorted(f"{name}_memory" for name in [*TINY["memories"], "acc"])
    for parameters, name in instances:
        assert f'.PRELOAD("spikecore_{name.removesuffix("_memory")}")' in parameters
    (ram,) = re.findall(rf"^module {RAM_MODULE}\(.*?^endmodule", tiny_verilog, re.MULTILINE | re.DOTALL)
    synthesised = re.sub(r"`ifndef SYNTHESIS\n.*?`endif\n", "", ram, flags=re.DOTALL)
    assert "words[word] = 0;" in ram and "$readmemh" in ram
    assert "initial" not in synthesised and "$readmemh" not in synthesised


def test_shell_connects_every_port_and_folds_outputs_to_one_pin(tiny_arch, tiny_verilog):
    ports = core_ports(tiny_arch)
    names = {name for _, name, _ in ports}
    assert {"clk", "rst", "host_sel", "host_addr", "host_wdata", "host_we", "host_rdata", "start", "busy",
            "done"} <= names
    shell = shell_verilog(ports, TOP_MODULE)
    assert shell.startswith(f"module {SHELL_MODULE}(clk, rst, din, dout);")
    for _, name, _ in ports:
        assert f".{name}(" in shell
    n_out = sum(w for d, n, w in ports if d == "output")
    assert f"wire [{n_out - 1}:0] result;" in shell
    assert re.search(r"assign dout = fold\d+\[0\];", shell)


def test_cells_count_as_resources():
    ecp5 = count_resources({"LUT4": 10, "CCU2C": 3, "TRELLIS_FF": 7, "DP16KD": 2, "PFUMX": 4}, TARGETS["ecp5-85"])
    assert (ecp5["lut"], ecp5["ff"], ecp5["bram"], ecp5["other"]) == (16, 7, 2, {"PFUMX": 4})
    xilinx = count_resources({"LUT6": 5, "LUT2": 1, "RAMB18E1": 3, "RAMB36E1": 1, "FDRE": 4}, TARGETS["xilinx7"])
    assert (xilinx["lut"], xilinx["bram"], xilinx["ff"]) == (6, 2.5, 4)


def test_ice40_synthesis_place_and_route_and_cache(tiny_arch, synth_cache, monkeypatch):
    monkeypatch.setenv("SPIKECORE_CACHE", str(synth_cache))
    stages = []
    report = synthesize(tiny_arch, "ice40-up5k",
                        progress=lambda stage, seconds=None: stages.append((stage, seconds is not None)))
    # each stage is announced as it starts and again, with its duration, as it ends
    assert stages == [(stage, ended) for stage in ("verilog", "yosys synth_ice40", "nextpnr-ice40")
                      for ended in (False, True)]
    assert not report["cached"]
    assert report["lut"] > 0 and report["ff"] > 0 and report["bram"] > 0
    assert report["lut"] == report["cells"]["SB_LUT4"]
    assert report["fits"] and report["over_capacity"] == []
    # Fmax comes from nextpnr's own report of the placed and routed shell
    pnr_fmax = min(c["achieved"] for c in report["pnr"]["fmax"].values())
    assert report["fmax_mhz"] == pnr_fmax > 0 and report["fmax_reason"] is None
    assert report["meets_clock"] == (report["fmax_mhz"] >= tiny_arch.clock_mhz)
    assert report["pnr"]["utilization"]["ICESTORM_RAM"]["used"] == report["bram"]
    assert report["shell_cells"]["SB_DFF"] >= SHELL_FEED_BITS  # the shell's cells are kept apart
    again = synthesize(dataclasses.replace(tiny_arch, name="renamed"), "ice40-up5k")
    assert again["cached"] and again["arch"] == "renamed"
    assert {k: again[k] for k in ("lut", "ff", "bram", "fmax_mhz")} == \
        {k: report[k] for k in ("lut", "ff", "bram", "fmax_mhz")}


def test_command_line_writes_the_report(tiny_arch, synth_cache, monkeypatch, tmp_path, capsys):
    """The same configuration as above through ``accel synth``: served from the cache."""
    import yaml

    monkeypatch.setenv("SPIKECORE_CACHE", str(synth_cache))
    arch_file = tmp_path / "tiny.yaml"
    arch_file.write_text(yaml.safe_dump(TINY))
    assert main(["synth", "--arch", str(arch_file), "--target", "ice40-up5k", "--out", str(tmp_path / "out"),
                 "--quiet"]) == 0
    line = capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "synth_report.json").read_text())
    assert report["cached"] and report["arch_fingerprint"] == tiny_arch.fingerprint()
    assert report["format"] == "spikecore-synth-report" and report["inputs"]["arch"]["path"] == str(arch_file)
    assert f"{report['lut']}/5280 LUT" in line and "(cached)" in line
    assert (tmp_path / "out" / "yosys.log").stat().st_size > 0 and (tmp_path / "out" / "nextpnr.log").exists()


@pytest.mark.slow
@pytest.mark.parametrize("target", ["ecp5-85", "xilinx7"])
def test_other_targets(target, tiny_arch, synth_cache, monkeypatch):
    monkeypatch.setenv("SPIKECORE_CACHE", str(synth_cache))
    report = synthesize(tiny_arch, target)
    assert report["lut"] > 0 and report["ff"] > 0 and report["fits"]
    if TARGETS[target].pnr is None:  # Xilinx 7: Yosys only, and the report says why there is no Fmax
        assert report["fmax_mhz"] is None and "no open place-and-route" in report["fmax_reason"]
    else:
        assert report["fmax_mhz"] == min(c["achieved"] for c in report["pnr"]["fmax"].values()) > 0
