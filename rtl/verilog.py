"""Verilog generation of the core for one architecture configuration.

Every memory of the core starts all zero. Amaranth would write that as one initial assignment per word
(for a 4M-word memory: minutes of generation and gigabytes of memory, and Yosys reads such blocks in time
quadratic in the depth), so :func:`generate` gives Amaranth's Verilog back end a platform,
:class:`RamPlatform`, whose ``get_memory`` (Amaranth's hook for a platform's own memories) makes each memory
an instance of one RAM module written here in Verilog, ``RAM_MODULE`` (:func:`ram_module`, once in ``core.v``;
each memory's geometry and name are its parameters). Synthesis (``accel synth``, the board flow) reads the
same module: Yosys defines ``SYNTHESIS`` and infers block RAM or SPRAM from it. For simulators only (inside
```ifndef SYNTHESIS``; on the FPGAs a block RAM without initial contents powers up zero) its initial block:

- sets every word to zero by a loop;
- then, if the simulator was started with ``+spikecore_<memory>=FILE`` (``FILE`` in ``$readmemh``
  format, one word per line) and ``+spikecore_<memory>_words=N``, reads words ``0 .. N-1`` from
  ``FILE``. :mod:`spikecore.rtl.runner` preloads the program memories this way (``PRELOAD_PLUSARG``,
  ``PRELOAD_WORDS_PLUSARG``), so that a large program does not cost one bus write per word through the
  simulator's Python interface.

The file also holds the simulation top ``spikecore_sim`` (``SIM_TOP``, again only outside synthesis): the
core with a free-running clock of ``SIM_CLOCK_PERIOD_NS`` made by the simulator itself (the testbench
writing the clock twice per cycle through VPI costs more than the core's own evaluation); the core's
other inputs are registers of ``spikecore_sim`` that the testbench writes (inputs of a Verilator model's
top are re-evaluated through every logic cone they reach at each time step); and a *backdoor*: a rising
``dump`` register writes the physical words holding the first ``dump_trace_words`` trace words and the first
``dump_state_words`` state words to the files named by ``+spikecore_trace_dump=FILE`` and
``+spikecore_state_dump=FILE`` (``$writememh``), instead of one bus read per word.

More services of the simulation top, for debugging a disagreement (``docs/waves.md``) and measuring what the
runs exercised (``docs/coverage.md``):

- a *trace monitor*: given ``+spikecore_trace_stamps=FILE``, every trace write appends a line ``ADDRESS CYCLE
  TIME`` to ``FILE`` (the trace word's address, the core's ``cycles`` register, the simulation time in ns), flushed
  when ``done`` rises: the cycle at which the core emitted each event, which the trace words do not carry;
- the functional coverage's counters (:func:`spikecore.rtl.coverage.monitor_verilog`): given
  ``+spikecore_coverage=FILE``, the states, transitions and events of :mod:`spikecore.rtl.coverage` counted at every
  rising edge, written to ``FILE`` on a rising ``coverage_dump`` register;
- under Icarus, ``+spikecore_waves=FILE`` dumps the core's *named* signals (:func:`named_signals`: Amaranth's
  names, without the ``$N`` wires Yosys keeps for anonymous expressions) and the top's to ``FILE`` (an FST file
  when ``vvp`` runs with ``-fst``). Verilator records its waves from its own trace, built in
  (:mod:`spikecore.rtl.verilator`).

Memories are named as in the netlist (``spikecore.accel.contract.layouts.physical_memories``): a memory of its own by its name,
a bank ``bank0``, ``bank1``, ... (its RAM instance inside the bank's instance of the same name, :func:`memory_path`);
the preload files hold physical words (``spikecore.accel.contract.layouts.to_physical``).

Only ``core.v`` is made with :class:`RamPlatform`: the Amaranth simulator and the mutation flow's RTLIL
(:func:`spikecore.rtl.mutation.design_rtlil`) elaborate the core without a platform, with Amaranth's own memories.

The core's ports come from its Amaranth signature (:func:`core_ports`), not from the Verilog text.
"""
from __future__ import annotations

import re
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Cat, ClockSignal, Const, Instance, Shape
from amaranth.lib.wiring import In

from spikecore.accel.contract.config import ArchConfig
from spikecore.accel.contract.layouts import home_of, physical_memories

from .banks import CoreMemory, memory_instance, memory_instance_path
from .core import Core, core_signature
from .coverage import COVERAGE_REGISTERS, monitor_verilog

TOP_MODULE = "core"
SIM_TOP = "spikecore_sim"
SIM_CLOCK_PERIOD_NS = 10
#: The backdoor's registers on ``SIM_TOP`` (beside the core's inputs, also registers there) and plusargs.
DUMP_REGISTERS = (("dump", 1), ("dump_trace_words", 32), ("dump_state_words", 32))
DUMP_PLUSARG = "spikecore_{memory}_dump"
#: ``+spikecore_trace_stamps=FILE``: a line ``ADDRESS CYCLE TIME_NS`` per trace write (the trace monitor).
STAMPS_PLUSARG = "spikecore_trace_stamps"
#: ``+spikecore_waves=FILE``: Icarus dumps the named signals to ``FILE``.
WAVES_PLUSARG = "spikecore_waves"
#: The core's registers the trace monitor reads: the trace count (one up per trace write) and the cycle counter
#: (named in every configuration, unlike the trace memory's write port, which is anonymous in an unbanked core).
MONITORED_SIGNALS = ("trace_count", "cycles")
#: ``+spikecore_<memory>=FILE`` and ``+spikecore_<memory>_words=N`` preload a memory at time zero.
PRELOAD_PLUSARG = "spikecore_{memory}"
PRELOAD_WORDS_PLUSARG = "spikecore_{memory}_words"
#: The module of every memory of the core (:func:`ram_module`), and its array of words.
RAM_MODULE = "spikecore_ram"
RAM_WORDS = "words"
#: An instance of ``RAM_MODULE`` as Yosys writes it: ``spikecore_ram #( .WIDTH(...), ... ) NAME (``.
_RAM_INSTANCE = re.compile(rf"^\s*{RAM_MODULE} #\((?:\n\s*\.\w+\([^\n]*\),?)*\n\s*\) (?P<name>\S+) \(", re.MULTILINE)
#: A memory array declared in a module (``reg [7:0] name [15:0];``).
_MEMORY_ARRAY = re.compile(r"^\s*reg\s.*\S\s*\[-?\d+:-?\d+\];$", re.MULTILINE)
_PATH_CHARS = 4096


def ram_module() -> str:
    """Verilog of ``RAM_MODULE``: a memory of ``DEPTH`` words of ``WIDTH`` bits (the array ``RAM_WORDS``) with
    one synchronous read port (``read_data`` is the word at ``read_addr`` before the clock edge where
    ``read_en`` is high: a write in the same cycle is not seen, as Amaranth's read port without transparency)
    and one write port of ``GRANULES`` enables, each writing its ``WIDTH / GRANULES`` bits, on one clock; and,
    in simulation only, the zero start and the preload of the module docstring, from the plusargs named by
    ``PRELOAD`` and ``PRELOAD_WORDS``."""
    return "\n".join([
        "// Every memory of the core (rtl/verilog.py, RamPlatform): Yosys infers block RAM or SPRAM from it.",
        f"module {RAM_MODULE}(clk, read_addr, read_en, read_data, write_addr, write_en, write_data);",
        "  parameter WIDTH = 1;",
        "  parameter DEPTH = 1;",
        "  parameter ADDRESS_WIDTH = 1;",
        "  parameter GRANULES = 1;",
        '  parameter PRELOAD = "";',
        '  parameter PRELOAD_WORDS = "";',
        "  localparam GRANULE = WIDTH / GRANULES;",
        "  input clk;",
        "  input [ADDRESS_WIDTH - 1:0] read_addr;",
        "  input read_en;",
        "  output reg [WIDTH - 1:0] read_data;",
        "  input [ADDRESS_WIDTH - 1:0] write_addr;",
        "  input [GRANULES - 1:0] write_en;",
        "  input [WIDTH - 1:0] write_data;",
        f"  reg [WIDTH - 1:0] {RAM_WORDS} [DEPTH - 1:0];",
        "  integer granule;",
        "  // one process, as Amaranth writes a memory: Yosys makes the granules' writes one port with bit enables",
        "  always @(posedge clk) begin",
        "    for (granule = 0; granule < GRANULES; granule = granule + 1)",
        "      if (write_en[granule])",
        f"        {RAM_WORDS}[write_addr][granule * GRANULE +: GRANULE] <= write_data[granule * GRANULE +: GRANULE];",
        "    if (read_en)",
        f"      read_data <= {RAM_WORDS}[read_addr];",
        "  end",
        "`ifndef SYNTHESIS",
        "  // the read data starts zero too, as the data signal of Amaranth's read port",
        "  initial begin : preload",
        "    integer word, count;",
        f"    reg [8 * {_PATH_CHARS} - 1:0] path;",
        "    read_data = 0;",
        f"    for (word = 0; word < DEPTH; word = word + 1) {RAM_WORDS}[word] = 0;",
        '    if ($value$plusargs({PRELOAD, "=%s"}, path) && $value$plusargs({PRELOAD_WORDS, "=%d"}, count)'
        " && count > 0)",
        f"      $readmemh(path, {RAM_WORDS}, 0, count - 1);",
        "  end",
        "`endif",
        "endmodule",
        ""])


class RamPlatform:
    """The platform :func:`generate` gives Amaranth's Verilog back end: its ``get_memory``, Amaranth's hook for
    a platform's own memories (:class:`amaranth.lib.memory.Memory`), makes each memory of the core an instance
    of ``RAM_MODULE`` (see the module docstring). It has no other platform service: ``core.v`` is the one source
    of simulators and synthesis alike (``accel synth`` and the board flow read it, Yosys with ``SYNTHESIS``
    defined, and infer the RAMs from ``RAM_MODULE``).

    Attributes
    ----------
    names : list of str
        The physical memories made so far (:attr:`spikecore.rtl.banks.CoreMemory.name`), in order.
    """

    def __init__(self):
        self.names = []

    def get_memory(self, memory):
        """An :class:`amaranth.hdl.Instance` of ``RAM_MODULE`` in place of ``memory``, a
        :class:`spikecore.rtl.banks.CoreMemory` with one synchronous read port without transparency and one write
        port, in one clock domain (all the core has); named as ``memory``'s submodule.

        Raises
        ------
        TypeError
            If ``memory`` is not a :class:`spikecore.rtl.banks.CoreMemory` (its preload needs a name).
        ValueError
            If its ports are other than ``RAM_MODULE`` has.
        """
        if not isinstance(memory, CoreMemory):
            raise TypeError(f"{RAM_MODULE} needs a spikecore.rtl.banks.CoreMemory (a named memory), got "
                            f"{type(memory).__name__}")
        reads, writes = memory.read_ports, memory.write_ports
        if (len(reads), len(writes)) != (1, 1) or reads[0].domain == "comb" or reads[0].transparent_for \
                or reads[0].domain != writes[0].domain:
            raise ValueError(f"memory {memory.name!r}: {RAM_MODULE} has one synchronous read port, not transparent, "
                             f"and one write port in its domain; got {len(reads)} read and {len(writes)} write ports")
        (read,), (write,) = reads, writes
        # Verilog has no empty vector nor array: a memory of one word (``memories.layers: 1``) gets an address
        # bit, always 0; a memory of none (an unbanked ``memories.trace: 0``) one word, never written
        address_width = max(len(read.addr), 1)
        self.names.append(memory.name)
        return Instance(
            RAM_MODULE,
            p_WIDTH=Shape.cast(memory.shape).width, p_DEPTH=max(memory.depth, 1), p_ADDRESS_WIDTH=address_width,
            p_GRANULES=len(write.en), p_PRELOAD=PRELOAD_PLUSARG.format(memory=memory.name),
            p_PRELOAD_WORDS=PRELOAD_WORDS_PLUSARG.format(memory=memory.name),
            i_clk=ClockSignal(read.domain),
            i_read_addr=Cat(read.addr, Const(0, address_width - len(read.addr))), i_read_en=read.en,
            o_read_data=read.data,
            i_write_addr=Cat(write.addr, Const(0, address_width - len(write.addr))), i_write_en=write.en,
            i_write_data=write.data)


# Yosys's Verilog back end makes every `always @*` block read a register initialised to 0, so that the
# blocks run at time zero; whether Icarus delivers that initialisation as an event to blocks that start later
# is a race (a block whose other inputs never change then keeps X outputs: seen for the controller's `idle`).
_COMBINATIONAL_TRIGGER = re.compile(r"^(?P<indent>\s*)reg (?P<name>\\\$auto\$verilog_backend\S*dump_module\$\d+)\s+= 0;$",
                                    re.MULTILINE)


def _trigger_once(match: re.Match) -> str:
    indent, name = match["indent"], match["name"]
    return "\n".join([match[0], "`ifndef SYNTHESIS", f"{indent}initial #1 {name} = 1'b1;", "`endif"])


def trigger_combinational_blocks(text: str) -> str:
    """Verilog from Yosys's back end with, in simulation only, each ``always @*`` block's trigger register
    changed once more after time zero, so that every such block runs under Icarus."""
    return _COMBINATIONAL_TRIGGER.sub(_trigger_once, text)


#: The ports Amaranth adds to the core's signature: the clock and reset of its ``sync`` domain.
CLOCK_PORTS = (("input", "clk", 1), ("input", "rst", 1))


def core_ports(arch: ArchConfig) -> list:
    """``[(direction, name, width)]`` of the ports of module ``core``: those of its signature
    (:func:`spikecore.rtl.core.core_signature`) and :data:`CLOCK_PORTS`, by name (as the Verilog declares them)."""
    ports = list(CLOCK_PORTS)
    for name, member in core_signature(arch).members.items():
        ports.append(("input" if member.flow == In else "output", name, Shape.cast(member.shape).width))
    return sorted(ports, key=lambda port: port[1])


def sim_top_ports(arch: ArchConfig) -> list:
    """The port names of ``SIM_TOP``: the clock it makes and the core's outputs (its inputs are registers there)."""
    return ["clk"] + [name for direction, name, _ in core_ports(arch) if direction == "output"]


def memory_path(physical) -> str:
    """The hierarchical name, from ``SIM_TOP``, of the words of the netlist memory ``physical``
    (``spikecore.accel.contract.layouts.PhysicalMemory``): the array ``RAM_WORDS`` of its RAM instance
    (:func:`spikecore.rtl.banks.memory_instance_path`; a bank's lies in its :class:`spikecore.rtl.banks.Bank`)."""
    return f"{TOP_MODULE}.{memory_instance_path(physical)}.{RAM_WORDS}"


# a module-level declaration (two spaces in: those of named blocks, deeper, are the simulation-only locals)
_DECLARATION = re.compile(r"^  (?:input|output|reg|wire)\s+(?:signed\s+)?(?:\[(?P<msb>-?\d+):(?P<lsb>-?\d+)\]\s+)?"
                          r"(?P<name>\\\S+ |[A-Za-z_][\w$]*)\s*(?:=[^;]*)?;", re.MULTILINE)
#: Yosys's names for the registers it adds (a memory's read data): ``_0_``, ``_1_``, ...
_YOSYS_NAME = re.compile(r"_\d+_")
_INSTANCE = re.compile(r"^\s*(?P<module>\\\S+ |[A-Za-z_][\w$]*)\s+(?P<name>\\\S+ |[A-Za-z_][\w$]*)\s*\(", re.MULTILINE)


def _module_bodies(text: str) -> dict:
    """``{module name: its text}`` of every module in Verilog ``text`` (escaped names without the backslash)."""
    bodies = {}
    for match in re.finditer(r"^module (\\\S+ |\w+)\s*\(", text, re.MULTILINE):
        end = text.index("\nendmodule", match.end())
        bodies[match[1].lstrip("\\").rstrip()] = text[match.end():end]
    return bodies


def named_signals(text: str, module: str, scope: str) -> list:
    """Hierarchical references (from ``scope``, the instance of ``module``) to every named signal of ``module``
    and of the instances below it in Verilog ``text``: Amaranth's names, as an escaped identifier where they
    carry dots or brackets (``core.\\descriptor.acc_base ``). Yosys's wires for anonymous expressions
    (``$N``), its own registers (``$auto$...``), memories and zero-width signals are left out, and the RAM
    instances (``RAM_MODULE #(...) NAME``, with parameters) are not entered: their ports are signals of the module
    around them."""
    bodies = _module_bodies(text)
    found = []

    def visit(name: str, path: str) -> None:
        body = bodies[name]
        seen = set()
        for match in _DECLARATION.finditer(body):
            signal = match["name"]
            width = 1 if match["msb"] is None else int(match["msb"]) - int(match["lsb"]) + 1
            if signal.startswith("\\$") or _YOSYS_NAME.fullmatch(signal) or signal in seen or width < 1:
                continue
            seen.add(signal)
            found.append(f"{path}.{signal}")
        for match in _INSTANCE.finditer(body):
            child = match["module"].lstrip("\\").rstrip()
            if child in bodies:
                visit(child, f"{path}.{match['name']}")

    visit(module, scope)
    return found


def simulation_top(ports: list, arch: ArchConfig, waves_signals=()) -> str:
    """Verilog of ``SIM_TOP`` around the core with ``ports`` (:func:`core_ports`); see the module docstring.
    ``waves_signals``: the core's signals Icarus dumps (:func:`named_signals`)."""
    outputs = [(n, w) for d, n, w in ports if d == "output"]
    driven = [(n, w) for d, n, w in ports if d == "input" and n != "clk"] + [*DUMP_REGISTERS, *COVERAGE_REGISTERS]
    half = SIM_CLOCK_PERIOD_NS // 2
    lines = ["`ifndef SYNTHESIS",
             "// Simulation only: the core with its own clock and the testbench's backdoor (rtl/verilog.py).",
             "// The testbench writes the core's inputs as registers of this module: inputs of the simulated",
             "// top would make Verilator re-evaluate every logic cone they reach at each time step.",
             f"module {SIM_TOP}({', '.join(['clk'] + [n for n, _ in outputs])});",
             "  output reg clk /*verilator public_flat_rw*/;"]
    lines += [f"  output {'' if w == 1 else f'[{w - 1}:0] '}{n} /*verilator public_flat_rw*/;" for n, w in outputs]
    lines += [f"  reg {'' if w == 1 else f'[{w - 1}:0] '}{n} /*verilator public_flat_rw*/ = 0;" for n, w in driven]
    lines += ["  initial clk = 1'b0;",
              f"  always #{half} clk = ~clk;",
              f"  {TOP_MODULE} {TOP_MODULE} ({', '.join(f'.{n}({n})' for _, n, _ in ports)});",
              "  reg [8 * 4096 - 1:0] trace_path, state_path;",
              "  always @(posedge dump) begin"]
    for memory, count in (("trace", "dump_trace_words"), ("state", "dump_state_words")):
        plusarg = DUMP_PLUSARG.format(memory=memory)
        physical, slot = home_of(arch, memory)
        last = f"{slot.base} + ({count} + {slot.pack - 1}) / {slot.pack} - 1"
        lines += [f'    if ({count} > 0 && $value$plusargs("{plusarg}=%s", {memory}_path))',
                  f"      $writememh({memory}_path, {memory_path(physical)}, {slot.base}, {last});"]
    lines += ["  end"]
    count, cycles = (f"{TOP_MODULE}.{name}" for name in MONITORED_SIGNALS)
    lines += ["  // the trace monitor: the cycle and time of every trace write. Half a cycle after the rising edge",
              "  // that wrote a trace word, the trace count has gone one up and the cycle counter has counted the",
              "  // cycle of the write: its address is the count before, its cycle the counter's value before.",
              "  integer stamps = 0;",
              "  reg [31:0] stamped_count = 0;",
              "  initial begin : open_stamps",
              "    reg [8 * 4096 - 1:0] stamps_path;",
              f'    if ($value$plusargs("{STAMPS_PLUSARG}=%s", stamps_path)) stamps = $fopen(stamps_path, "w");',
              "  end",
              "  always @(negedge clk) if (stamps != 0) begin",
              f"    if ({count} == stamped_count + 1)",
              f'      $fwrite(stamps, "%0d %0d %0d\\n", stamped_count, {cycles} - 1, $time - {half});',
              f"    stamped_count <= {count};",
              "  end",
              "  always @(posedge done) if (stamps != 0) $fflush(stamps);",
              *monitor_verilog(arch, TOP_MODULE),
              "`ifndef VERILATOR",
              "  // Icarus's waves: the named signals only (Verilator traces with its own build)",
              "  initial begin : dump_waves",
              "    reg [8 * 4096 - 1:0] waves_path;",
              f'    if ($value$plusargs("{WAVES_PLUSARG}=%s", waves_path)) begin',
              "      $dumpfile(waves_path);",
              f"      $dumpvars(1, {', '.join(['clk', 'rst', 'start', 'busy', 'done', 'dump', *waves_signals])});",
              "    end",
              "  end",
              "`endif",
              "endmodule",
              "`endif"]
    return "\n".join(lines) + "\n"


def generate(arch: ArchConfig, out_dir) -> Path:
    """Write ``core.v`` (module ``core``: ports ``clk``, ``rst`` and the host interface; and the simulation top
    ``SIM_TOP`` around it) into ``out_dir``.

    The text depends only on what the architecture fingerprint covers (no source locations are emitted,
    and the configuration's name is left out: it is free text, and Verilog has no string escape that would
    keep it out of the code), and the file is replaced atomically so that concurrent generators of the
    same configuration never see a partial file.

    Parameters
    ----------
    arch : accel.config.ArchConfig
    out_dir : path-like
        Created if missing.

    Returns
    -------
    pathlib.Path
        The path of ``core.v``.
    """
    from spikecore.atomic import atomic_write_bytes  # here: the models package imports torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    header = f"// spikecore core, architecture fingerprint {arch.fingerprint()}\n"
    platform = RamPlatform()
    text = verilog.convert(Core(arch), name=TOP_MODULE, emit_src=False, platform=platform)
    text = trigger_combinational_blocks(text)
    # every memory became a RAM instance, named as the backdoor's paths expect (memory_path): a memory that
    # escaped the platform, or a changed Amaranth or Yosys output format, must not go unnoticed
    expected = sorted(physical.name for physical in physical_memories(arch))
    instances = sorted(match["name"] for match in _RAM_INSTANCE.finditer(text))
    arrays = _MEMORY_ARRAY.findall(text)
    if sorted(platform.names) != expected or instances != sorted(map(memory_instance, expected)) or arrays:
        raise RuntimeError(f"expected the memories {', '.join(expected)} as {RAM_MODULE} instances in the generated "
                           f"Verilog, found instances {', '.join(instances) or 'none'} and "
                           f"{len(arrays)} memory arrays")
    text += ram_module()
    path = out_dir / f"{TOP_MODULE}.v"
    declared = {name.strip().lstrip("\\") for name in named_signals(text, TOP_MODULE, TOP_MODULE)}
    missing = [name for name in MONITORED_SIGNALS if f"{TOP_MODULE}.{name}" not in declared]
    if missing:  # the trace monitor reads them by name
        raise RuntimeError(f"the generated core has no signal {', '.join(missing)} for the trace monitor")
    top = simulation_top(core_ports(arch), arch, named_signals(text, TOP_MODULE, TOP_MODULE))
    atomic_write_bytes(path, (header + text + top).encode())
    return path
