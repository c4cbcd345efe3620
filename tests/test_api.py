"""The Python API (spikecore.api, docs/api.md): the notebook example works, and the commands are built on it."""
from __future__ import annotations

import json

import numpy as np
import pytest

import spikecore
from spikecore.accel.contract.checkpoint import shipped_checkpoint_path
from spikecore.accel.flows.cli import main
from spikecore.errors import UserError


def test_version_is_the_installed_distribution(capsys):
    from importlib import metadata

    assert spikecore.__version__ == metadata.version("spikecore")
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"spikecore {spikecore.__version__}"


def test_importing_spikecore_loads_nothing_heavy():
    """`import spikecore` stays cheap: torch is imported by the API functions, not by the package."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", "import sys, spikecore; print('torch' in sys.modules)"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"
    import spikecore.api

    assert set(spikecore.API) == set(spikecore.api.__all__)
    with pytest.raises(AttributeError, match="no attribute 'simulat'"):
        spikecore.simulat  # noqa: B018


def test_notebook_example_compile_simulate_verify(tmp_path):
    """docs/api.md's example: load, compile, simulate, verify on the RTL (Icarus, one image)."""
    arch = spikecore.load_arch()
    net = spikecore.load_network(shipped_checkpoint_path())
    program = spikecore.compile(net, arch, source="shipped")
    images, labels = spikecore.load_images(samples=8)
    assert images.shape == (8, 1, 8, 8) and labels.shape == (8,)
    report, results = spikecore.simulate(program, arch, images, labels, results=True)
    assert report["samples"] == 8 and 0.0 <= report["accuracy"] <= 1.0
    assert report["cycles"] == [r.cycles for r in results]
    predictions = np.array([int(np.argmax(r.logits)) for r in results])
    assert report["accuracy"] == float((predictions == labels.numpy()).mean())
    unlabelled = spikecore.simulate(program, arch, images)
    assert unlabelled["accuracy"] is None and unlabelled["cycles"] == report["cycles"]

    check = spikecore.verify(program, arch, images[:1], simulator="icarus", network=net, labels=labels[:1])
    assert check["bit_exact"] is True and check["cycle_exact"] is True
    assert check["samples"] == 1 and "float_vs_integer" in check

    program.save(tmp_path / "program")
    again = spikecore.load_program(tmp_path / "program", arch)
    assert spikecore.simulate(again, arch, images)["cycles"] == report["cycles"]


def test_sim_command_report_is_the_api_report(tmp_path):
    """accel sim writes the API's report with a header in front: the command adds nothing to the numbers."""
    arch = spikecore.load_arch()
    program = spikecore.compile(spikecore.load_network(shipped_checkpoint_path()), arch)
    program.save(tmp_path / "program")
    assert main(["sim", str(tmp_path / "program"), "--samples", "6", "--out", str(tmp_path / "sim.json"),
                 "--quiet"]) == 0
    written = spikecore.read_report(tmp_path / "sim.json")
    images, labels = spikecore.load_images(6)
    computed = spikecore.simulate(program, arch, images, labels)
    header = ("format", "spikecore_version", "created_utc", "inputs")
    assert list(written)[:len(header)] == list(header)
    assert {k: v for k, v in written.items() if k not in header} == json.loads(json.dumps(computed))


def test_load_network_reads_nir_files(tmp_path):
    """A NIR file written by accel export loads as a network that compiles to the same Program memories."""
    model = tmp_path / "digits.nir"
    assert main(["export", str(shipped_checkpoint_path()), "--out", str(model)]) == 0
    arch = spikecore.load_arch()
    from_nir = spikecore.compile(spikecore.load_network(model), arch)
    images, _ = spikecore.load_images(4)
    direct = spikecore.compile(spikecore.load_network(shipped_checkpoint_path()), arch)
    assert spikecore.simulate(from_nir, arch, images)["cycles"] == spikecore.simulate(direct, arch, images)["cycles"]
    with pytest.raises(UserError, match="for NIR files"):
        spikecore.load_network(shipped_checkpoint_path(), timesteps=4)


def test_bad_input_raises_user_error(tmp_path):
    not_a_report = tmp_path / "other.json"
    not_a_report.write_text('{"format": "someone-else"}')
    with pytest.raises(UserError, match="not a spikecore report"):
        spikecore.read_report(not_a_report)
    with pytest.raises(UserError, match="simulator must be"):
        arch = spikecore.load_arch()
        spikecore.verify(None, arch, None, simulator="modelsim")
    with pytest.raises(UserError, match="samples"):
        spikecore.load_images(samples=0)
