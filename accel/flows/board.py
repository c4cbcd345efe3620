"""``accel board``: a bitstream for a real board; ``accel run``: inferences on it, checked against the simulator.

``accel board --board NAME`` puts the core and its host bridge on one of :data:`spikecore.rtl.board.BOARDS`
(``docs/board.md``): the top of :class:`spikecore.rtl.board.PlatformTop` (the PLL to ``clock_mhz``, the serial
port, two LEDs) from the board's ``amaranth-boards`` platform, whose build plan gives the pin constraints and
the Yosys script; the generated ``core.v`` beside it; then Yosys, nextpnr and the packer (icepack or ecppack)
through the YoWASP runners of :mod:`spikecore.accel.flows.synth`. It writes the bitstream, ``board_report.json``
(resources against the device, the clock, Fmax, the line's rate), the tools' logs and, with ``--program``,
``program_image.bin``: the bytes the host driver sends to load that Program (``docs/board.md``, "Protocol").

``accel run --port PORT PROGRAM_DIR`` loads the Program through the port (pyserial), runs ``--samples`` test
images, reads back logits, trace and counters, and compares them with the golden model and the simulator as
``accel verify`` does (the same report and fields; ``cycles_rtl_measured`` is the bridge's own count of the
core's busy cycles), adding the link's measured rate.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path

from spikecore.errors import UserError

#: How long ``accel run`` waits for an answer before it calls the board silent.
DEFAULT_TIMEOUT_S = 2.0


def check_fits(arch, board) -> None:
    """Refuse at once a configuration whose memories hold more bits than the board's device has block RAM
    (the synthesised design is checked against every resource afterwards).

    Raises
    ------
    UserError
        Naming the configuration, the board and the bits.
    """
    from spikecore.accel.contract.layouts import physical_memories

    from spikecore.accel.flows.synth import TARGETS

    capacity = TARGETS[board.target].capacity
    # 4 kbit EBR and 256 kbit SPRAM on the iCE40, 18 kbit EBR on the ECP5
    available = capacity["bram"] * (4096 if board.family == "ice40" else 18432) + capacity.get("spram", 0) * 262144
    needed = sum(memory.depth * memory.width for memory in physical_memories(arch))
    if needed > available:
        raise UserError(f"configuration {arch.name} does not fit the {board.title}: its memories hold {needed} bits, "
                        f"the device's block RAM {available}")


def program_stream(program, arch) -> bytes:
    """The bytes the host driver sends to load ``program`` (its ``WRITE`` commands, in the bridge's order)."""
    from spikecore.rtl.driver import BoardDriver

    class Recorder:
        """A transport that keeps what is written and answers every ``WRITE`` with ``ACK``."""

        def __init__(self):
            self.data = bytearray()

        def write(self, data):
            self.data += data

        def read(self, count):
            from spikecore.rtl.link import ACK

            return bytes([ACK] * count)

    recorder = Recorder()
    BoardDriver(recorder, arch).load_program(program.memory_image(arch))
    return bytes(recorder.data)


def _clock_report(pnr: dict) -> dict:
    """``{clock: {"achieved_mhz", "constraint_mhz"}}`` of a nextpnr JSON report."""
    return {name: {"achieved_mhz": clock.get("achieved"), "constraint_mhz": clock.get("constraint")}
            for name, clock in pnr.get("fmax", {}).items()}


def build(arch, board, baud: int, workdir: Path, seed: int, progress) -> dict:
    """Run the flow in ``workdir``; returns the report (paths relative to ``workdir``)."""
    from spikecore.rtl import link
    from spikecore.rtl.board import PlatformTop
    from spikecore.rtl.verilog import generate

    from spikecore.accel.flows.synth import (RESOURCES, TARGETS, count_resources, last_error, mapped_cells,
                                             nextpnr_fmax, run_tool, tool_versions)

    target = TARGETS[board.target]
    pll = board.pll(arch.clock_mhz)
    try:
        clocks_per_bit = link.clocks_per_bit(pll.output_mhz * 1e6, baud)
    except ValueError as exc:
        raise UserError(f"--baud {baud}: {exc}") from None
    check_fits(arch, board)
    versions = tool_versions(target)
    seconds = {}
    progress("verilog")
    start = time.perf_counter()
    core = generate(arch, workdir).read_text()
    platform = board.platform()
    platform.add_file("core.v", core)  # the platform's Yosys script reads it before the top
    plan = platform.build(PlatformTop(arch, board, pll, clocks_per_bit), name="top", do_build=False,
                          synth_opts="-dsp -spram" if board.family == "ice40" else "",
                          script_after_synth="tee -q -o stat.json stat -json")
    for name, content in plan.files.items():
        (workdir / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    seconds["verilog"] = time.perf_counter() - start
    progress("verilog", seconds["verilog"])

    progress("yosys")
    start = time.perf_counter()
    if run_tool("yosys", ["top.ys"], workdir) != 0:
        raise RuntimeError(f"yosys failed for {board.name}: {last_error(workdir / 'yosys.out')}")
    seconds["yosys"] = time.perf_counter() - start
    progress("yosys", seconds["yosys"])
    stat = json.loads((workdir / "stat.json").read_text())
    counts = count_resources(mapped_cells(stat["design"], {name.lstrip("\\") for name in stat["modules"]}), target)
    over = [f"{resource} {counts[resource]:g} of {available}" for resource, available in target.capacity.items()
            if counts[resource] > available]
    if over:
        raise UserError(f"configuration {arch.name} does not fit the {board.title}: {'; '.join(over)}")

    tool = target.pnr[0]
    constraints = ["--pcf", "top.pcf", "--asc", "top.asc"] if board.family == "ice40" else \
        ["--lpf", "top.lpf", "--textcfg", "top.config"]
    progress(tool)
    start = time.perf_counter()
    code = run_tool(tool, ["--json", "top.json", "--freq", f"{pll.output_mhz:g}", "--seed", str(seed),
                           "--timing-allow-fail", "--report", "pnr.json", *target.pnr[1], *constraints], workdir)
    seconds["nextpnr"] = time.perf_counter() - start
    progress(tool, seconds["nextpnr"])
    if code != 0:
        raise RuntimeError(f"{tool} failed for {board.name}: {last_error(workdir / 'nextpnr.out')}")
    pnr = json.loads((workdir / "pnr.json").read_text())
    clocks = _clock_report(pnr)
    fmax = nextpnr_fmax(pnr)

    packer = "icepack" if board.family == "ice40" else "ecppack"
    progress(packer)
    start = time.perf_counter()
    pack = ["top.asc", board.bitstream_name] if board.family == "ice40" else \
        ["--input", "top.config", "--bit", board.bitstream_name]
    if run_tool(packer, pack, workdir) != 0:
        raise RuntimeError(f"{packer} failed for {board.name}: {last_error(workdir / (packer + '.out'))}")
    seconds[packer] = time.perf_counter() - start
    progress(packer, seconds[packer])
    bitstream = (workdir / board.bitstream_name).read_bytes()
    return {
        "board": board.name, "title": board.title, "device": target.device, "family": board.family,
        "arch": arch.name, "arch_fingerprint": arch.fingerprint(), "arch_config": arch.to_dict(), "tools": versions,
        **{resource: counts[resource] for resource in RESOURCES}, "other_cells": counts["other"],
        "capacity": target.capacity,
        "utilization": {resource: counts[resource] / available for resource, available in target.capacity.items()},
        "clock_mhz": arch.clock_mhz, "pll": {"input_mhz": platform.default_clk_frequency / 1e6,
                                             "output_mhz": pll.output_mhz, "parameters": pll.parameters},
        "clocks": clocks, "fmax_mhz": fmax, "seed": seed,
        "meets_clock": bool(clocks) and all(clock["achieved_mhz"] is not None and clock["constraint_mhz"] is not None
                                            and clock["achieved_mhz"] >= clock["constraint_mhz"]
                                            for clock in clocks.values()),
        "baud": baud, "clocks_per_bit": clocks_per_bit,
        "baud_achieved": pll.output_mhz * 1e6 / clocks_per_bit, "link_version": link.VERSION,
        "bitstream": board.bitstream_name, "bitstream_sha256": hashlib.sha256(bitstream).hexdigest(),
        "bitstream_bytes": len(bitstream), "program_command": board.program.format(bitstream=board.bitstream_name),
        "seconds": seconds,
    }


def cmd_board(args) -> int:
    """Handler of ``accel board``."""
    from spikecore import api
    from spikecore.atomic import atomic_write_bytes, atomic_write_json, make_temporary_folder
    from spikecore.rtl.board import get_board
    from spikecore.rtl.link import LINE_BITS_PER_BYTE

    from spikecore.accel.flows.outputs import check_output_dir, output_dir, report_header
    from spikecore.accel.flows.synth import stage_progress

    board = get_board(args.board)
    arch = api.load_arch(args.arch)
    board.pll(arch.clock_mhz)  # refused before anything is claimed or built
    check_fits(arch, board)
    program = api.load_program(args.program, arch) if args.program is not None else None
    out = Path(args.out)
    check_output_dir(out, "board")  # before minutes of place and route
    stages = ["verilog", "yosys", "nextpnr", "pack"]
    scratch = make_temporary_folder(Path(tempfile.gettempdir()) / "spikecore-board")  # pid-tagged
    try:
        with stage_progress(f"board {board.name}", len(stages), args.quiet) as progress:
            report = build(arch, board, args.baud, scratch, board.seed if args.seed is None else args.seed, progress)
        if program is not None:
            stream = program_stream(program, arch)
            report["program_image"] = {"file": "program_image.bin", "bytes": len(stream),
                                       "seconds_at_baud": len(stream) * LINE_BITS_PER_BYTE / args.baud}
        with output_dir(out, "board"):
            atomic_write_bytes(out / board.bitstream_name, (scratch / board.bitstream_name).read_bytes())
            for name in ("top.pcf", "top.lpf", "yosys.log", "nextpnr.log", "pnr.json"):
                if (scratch / name).exists():
                    atomic_write_bytes(out / name, (scratch / name).read_bytes())
            if program is not None:
                atomic_write_bytes(out / "program_image.bin", stream)
            atomic_write_json(out / "board_report.json",
                              {**report_header("board", {"arch": args.arch, "program": args.program}), **report})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    clock = (f"Fmax {report['fmax_mhz']:.1f} MHz (clock {report['pll']['output_mhz']:g} MHz "
             f"{'met' if report['meets_clock'] else 'MISSED: see docs/board.md, When timing fails'})")
    print(f"{board.name}: {report['lut']:g}/{report['capacity']['lut']} LUT, {report['ff']:g} FF, "
          f"{report['bram']:g}/{report['capacity']['bram']} BRAM"
          + (f", {report['spram']:g}/{report['capacity']['spram']} SPRAM" if "spram" in report["capacity"] else "")
          + f"; {clock}; {report['baud']} baud; bitstream {out / board.bitstream_name}; program it with: "
          f"{board.program.format(bitstream=out / board.bitstream_name)}")
    return 0 if report["meets_clock"] else 1


def run_on_board(program, arch, pixels, driver, progress=False) -> tuple:
    """Load ``program`` with ``driver`` (a :class:`spikecore.rtl.driver.BoardDriver` that said ``HELLO``) and run
    ``pixels``; returns ``(results, link)``: the driver's result per image and the link's measured load (bytes,
    seconds, images per second including the transfers)."""
    from tqdm import tqdm

    from spikecore.accel.contract.inputs import host_inputs, input_frames
    from spikecore.rtl.driver import readout_words

    start = time.perf_counter()
    sent = driver.bytes_sent
    driver.load_program(program.memory_image(arch))
    loaded = time.perf_counter()
    program_bytes = driver.bytes_sent - sent
    words = readout_words(program, arch)
    results = []
    for row in tqdm(host_inputs(program, arch, input_frames(program, pixels)), desc="board", unit="img",
                    disable=not progress):
        results.append(driver.run([int(value) for value in row], words))
    end = time.perf_counter()
    return results, {"program_bytes": program_bytes, "program_seconds": loaded - start,
                     "bytes_sent": driver.bytes_sent - sent - program_bytes, "bytes_received": driver.bytes_received,
                     "inference_seconds": end - loaded, "images_per_second": len(results) / (end - loaded)}


def cmd_run(args) -> int:
    """Handler of ``accel run``."""
    from spikecore import api
    from spikecore.atomic import atomic_write_json
    from spikecore.rtl.driver import BoardDriver, LinkError, NoAnswer, open_serial_port

    from spikecore.accel.flows.outputs import claim_output_file, report_header
    from spikecore.accel.flows.simulation import simulate_images, test_images
    from spikecore.accel.flows.verify import check_trace_capacity, verify

    if not args.timeout > 0:
        raise UserError(f"--timeout must be a positive number of seconds, got {args.timeout:g}")
    arch = api.load_arch(args.arch)
    claim_output_file(args.out, "verify")  # the same report as accel verify's
    program = api.load_program(args.program, arch)
    pixels, labels = test_images(args.dataset, args.samples, args.data_root, program)
    port = open_serial_port(args.port, args.baud, args.timeout)
    try:
        try:
            driver = BoardDriver(port, arch)
            driver.hello()  # a silent or foreign port is refused before the simulation runs
            sim_results = simulate_images(program, arch, pixels, not args.quiet)
            check_trace_capacity(arch, sim_results)
            results, link_load = run_on_board(program, arch, pixels, driver, progress=not args.quiet)
        except LinkError as exc:
            within = f" within {args.timeout:g} s" if isinstance(exc, NoAnswer) else ""
            raise UserError(f"--port {args.port}: {exc}{within}") from None
    finally:
        port.close()
    report, _ = verify(program, arch, pixels, results, sim_results)
    report.update(simulator=f"board on {args.port}", board_link={"port": args.port, "baud": args.baud, **link_load})
    atomic_write_json(Path(args.out), {**report_header("verify", {"program": args.program, "arch": args.arch}),
                                       **report})
    print(f"bit_exact {report['bit_exact']}, cycle_exact {report['cycle_exact']} on {report['samples']} samples on "
          f"the board at {args.port}; {link_load['images_per_second']:.2f} images/s including transfers at "
          f"{args.baud} baud; report {args.out}")
    return 0 if report["bit_exact"] and report["cycle_exact"] else 1


def add_parsers(sub, arch_arg, quiet_arg, dataset_args) -> None:
    """Register ``accel board`` and ``accel run`` on the command line's subparsers."""
    from spikecore.rtl.board import BOARDS
    from spikecore.rtl.link import DEFAULT_BAUD

    p = sub.add_parser("board", help="a bitstream of the core and its host bridge for a board (iCEBreaker, ULX3S)")
    p.add_argument("--board", required=True, metavar="NAME", help=f"one of {', '.join(BOARDS)}")
    arch_arg(p)
    p.add_argument("--program", metavar="PROGRAM_DIR", default=None,
                   help="also write program_image.bin: the bytes that load this Program over the link")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="writes the bitstream, board_report.json, the pin constraints and the tools' logs")
    p.add_argument("--baud", type=int, default=DEFAULT_BAUD, help=f"the serial line's rate (default {DEFAULT_BAUD})")
    seeds = ", ".join(f"{board.name} {board.seed}" for board in BOARDS.values())
    p.add_argument("--seed", type=int, default=None, help=f"nextpnr's placement seed (default: the board's, {seeds})")
    quiet_arg(p)
    p.set_defaults(func=cmd_board)

    p = sub.add_parser("run", help="run inferences on a board through its serial port and check them against "
                                   "the simulator")
    p.add_argument("program", metavar="PROGRAM_DIR")
    p.add_argument("--port", required=True, metavar="PORT", help="the board's serial port (/dev/ttyUSB0, COM3, ...)")
    arch_arg(p)
    p.add_argument("--samples", type=int, default=20)
    dataset_args(p)
    p.add_argument("--baud", type=int, default=DEFAULT_BAUD, help=f"the board's line rate (default {DEFAULT_BAUD})")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                   help=f"how long to wait for an answer (default {DEFAULT_TIMEOUT_S:g} s)")
    p.add_argument("--out", required=True, metavar="REPORT.json")
    quiet_arg(p)
    p.set_defaults(func=cmd_run)
