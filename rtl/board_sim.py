"""Run the simulated board (bridge + core) under cocotb, driven by the host driver over a simulated serial line.

:func:`run_board` writes the board's simulation sources (:func:`spikecore.rtl.board.write_simulation_sources`,
one file), builds them with Icarus or Verilator once per source text and simulator (the build cache of
:mod:`spikecore.rtl.runner`: a folder per key, made under a lock beside its place and renamed in, counted only
with its stamp) and runs :mod:`spikecore.rtl.board_harness` on a program image and input images.

The simulated line runs at ``clocks_per_bit`` clock cycles per bit (4 by default, the fewest the bridge takes:
25 Mbaud at the simulation's 100 MHz clock), so that a simulation moves the same bytes as a board in a fraction of
the cycles; the bridge's logic is the same at any divider (the boards build it for 115200 baud from their clock).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from spikecore.accel.contract.config import ArchConfig

from . import board_harness
from . import verilator as verilator_support
from .board import LINE_RECEIVE_PLUSARG, LINE_SEND_PLUSARG, SIM_TOP, SIM_TOP_PORTS, write_simulation_sources
from .runner import (SIMULATORS, STAMP, cache_lock, cache_writes, read_stamp, remove_dead_run_folders,
                     write_stamp)
from .verilog import SIM_CLOCK_PERIOD_NS

#: The simulated line's default bit time, in clock cycles.
SIM_CLOCKS_PER_BIT = 4
#: The host ends of the simulated line (:mod:`spikecore.rtl.board_harness`).
LINES = ("model", "cocotbext-uart")
#: The driver's pause between two polls of STATUS in simulated seconds (20,000 cycles of 10 ns: a few polls per
#: inference of the digits network).
SIM_POLL_INTERVAL_S = 200e-6


def simulation_baud(clocks_per_bit: int) -> int:
    """The line's rate in the simulation: a bit is ``clocks_per_bit`` periods of the simulation's clock."""
    return round(1e9 / (clocks_per_bit * SIM_CLOCK_PERIOD_NS))


def build_board(arch: ArchConfig, workdir, simulator: str, clocks_per_bit: int) -> Path:
    """The build folder of the board's simulation under ``workdir`` (made if its stamp does not vouch for it)."""
    from cocotb_tools.runner import get_runner

    from spikecore.atomic import install_folder, make_temporary_folder, remove_orphans

    if simulator not in SIMULATORS:
        raise ValueError(f"simulator {simulator!r} is not supported (choose from {', '.join(SIMULATORS)})")
    workdir = Path(workdir).resolve()
    with cache_writes(workdir):
        workdir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f"board-sources-{os.getpid()}-"))
    try:
        text = "".join(path.read_text() for path in write_simulation_sources(arch, clocks_per_bit, scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    settings = verilator_support.build_stamp() if simulator == "verilator" else "icarus -g2012 timescale 1ns/1ps"
    key = hashlib.sha256(json.dumps([simulator, settings, text]).encode()).hexdigest()
    build_dir = workdir / f"board-{simulator}-{key[:16]}"
    if read_stamp(build_dir / STAMP, key) is None:
        with cache_lock(workdir / f"{build_dir.name}.lock", build_dir):
            if read_stamp(build_dir / STAMP, key) is None:  # not built meanwhile by another run
                remove_orphans(workdir)
                with cache_writes(workdir):
                    folder = make_temporary_folder(build_dir)
                try:
                    source = folder / "board_sim.v"
                    source.write_text(text)
                    log = folder / "build.log"
                    if simulator == "verilator":
                        verilator_support.build(source, SIM_TOP, folder / "sim_build", log, ports=SIM_TOP_PORTS)
                    else:
                        get_runner("icarus").build(sources=[source], hdl_toplevel=SIM_TOP,
                                                   build_dir=folder / "sim_build", timescale=("1ns", "1ps"),
                                                   log_file=log)
                    write_stamp(folder / STAMP, key, [path for path in sorted(folder.rglob("*")) if path.is_file()])
                    install_folder(folder, build_dir)
                except BaseException:
                    shutil.rmtree(folder, ignore_errors=True)
                    raise
    return build_dir


def run_board(image: dict, inputs, arch: ArchConfig, workdir, state_words: range, simulator: str = "verilator",
              clocks_per_bit: int = SIM_CLOCKS_PER_BIT, poll_interval_s: float = SIM_POLL_INTERVAL_S,
              line: str = "model") -> dict:
    """Load ``image`` and run ``inputs`` on the simulated board through the host driver.

    Parameters
    ----------
    image : dict
        ``Program.memory_image(arch)``.
    inputs : list of list of int
        The input images.
    arch : accel.config.ArchConfig
    workdir : path-like
        The build cache (a folder per build, ``board-SIMULATOR-KEY``) and the runs' folders.
    state_words : range
        The state words read back (:func:`spikecore.rtl.driver.readout_words`).
    simulator : str
        ``"verilator"`` or ``"icarus"``.
    clocks_per_bit : int
        The simulated line's bit time in clock cycles.
    poll_interval_s : float
        Simulated time between the driver's polls of ``STATUS``.
    line : str
        The host's end of the line: ``"model"``, the simulation top's UART, or ``"cocotbext-uart"``
        (:mod:`spikecore.rtl.board_harness`; an await per bit: short jobs only).

    Returns
    -------
    dict
        ``results`` (per input, the driver's :meth:`spikecore.rtl.driver.BoardDriver.run` with ``sim_time_ns``,
        ``bytes_sent`` and ``bytes_received``), ``program_bytes`` (sent to load the program and check the
        board), ``transcript`` (``["w" | "r", hex]`` per transport call), ``baud`` (of the simulated line),
        ``build_seconds`` and ``run_seconds``.

    Raises
    ------
    RuntimeError
        If the build or the simulation fails (with the log's tail).
    """
    from cocotb_tools.runner import get_runner

    start = time.perf_counter()
    build_dir = build_board(arch, workdir, simulator, clocks_per_bit)
    built = time.perf_counter()
    remove_dead_run_folders(build_dir)
    with cache_writes(build_dir):
        run_dir = Path(tempfile.mkdtemp(prefix=f"run-{os.getpid()}-", dir=build_dir))
    if line not in LINES:
        raise ValueError(f"line {line!r} is not one of {', '.join(LINES)}")
    baud = simulation_baud(clocks_per_bit)
    send_file, receive_file = run_dir / "line_send.bin", run_dir / "line_receive.txt"
    send_file.write_bytes(b"")
    job = {"arch": arch.to_dict(), "image": image, "inputs": [[int(p) for p in pixels] for pixels in inputs],
           "state_words": [state_words.start, state_words.stop], "baud": baud, "poll_interval_s": poll_interval_s,
           "line": line, "send_file": str(send_file), "receive_file": str(receive_file),
           "clock_period_ns": SIM_CLOCK_PERIOD_NS, "result_file": str(run_dir / "results.json")}
    plusargs = [f"+{LINE_SEND_PLUSARG}={send_file}", f"+{LINE_RECEIVE_PLUSARG}={receive_file}"] \
        if line == "model" else []
    job_file = run_dir / "job.json"
    job_file.write_text(json.dumps(job))
    log = run_dir / "sim.log"
    harness = Path(board_harness.__file__)
    failure = None
    try:
        get_runner(simulator).test(test_module=harness.stem, hdl_toplevel=SIM_TOP, hdl_toplevel_lang="verilog",
                                   build_dir=build_dir / "sim_build", test_dir=harness.parent,
                                   results_xml=str(run_dir / "results.xml"),
                                   extra_env={board_harness.JOB_ENV: str(job_file)}, plusargs=plusargs,
                                   log_file=log)
    except RuntimeError as exc:
        failure = str(exc)
    except SystemExit as exc:  # cocotb's runner exits instead of raising when it runs under pytest
        failure = f"exit status {exc.code}"
    result_file = Path(job["result_file"])
    if failure is not None or not result_file.exists():
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else f"(no log at {log})"
        raise RuntimeError(f"the board simulation under {simulator} failed ({failure or 'no results'}); log tail "
                           f"of {log}:\n{tail}")
    outcome = json.loads(result_file.read_text())
    shutil.rmtree(run_dir, ignore_errors=True)
    outcome.update(baud=baud, build_seconds=built - start, run_seconds=time.perf_counter() - built)
    return outcome
