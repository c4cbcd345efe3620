"""The host interface's map, defined once (``docs/core.md``, "Control registers" and "Host interface").

What each value of ``host_sel`` selects, which memories the host may write, and the control registers
with their addresses, access and widths. Its readers:

- the core (:mod:`spikecore.rtl.core`): the ports' widths, the select decoding, the register file;
- the runner (:mod:`spikecore.rtl.runner`), which writes :meth:`HostMap.describe` of the configuration into
  the job file of the cocotb harness (:mod:`spikecore.rtl.cocotb_harness`): the harness runs in the
  simulator's own Python and imports nothing from the project;
- the formal proofs (:mod:`spikecore.rtl.formal`) and the area model (:mod:`spikecore.accel.flows.area`).

Plain Python (no Amaranth, no torch), so that any of them may import it cheaply.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from spikecore.accel.contract.config import ArchConfig
from spikecore.accel.contract.layouts import all_layouts


@dataclass(frozen=True)
class MemorySelect:
    """A memory the host reaches: ``host_sel == select``.

    Attributes
    ----------
    name : str
        The memory (a key of ``spikecore.accel.contract.layouts.all_layouts``).
    select : int
        Its value of ``host_sel``.
    writable : bool
        The host may write it (the program and the input image); otherwise it only reads it.
    """

    name: str
    select: int
    writable: bool


@dataclass(frozen=True)
class Register:
    """A control register (``host_sel == HostMap.control_select``, ``host_addr == address``).

    Attributes
    ----------
    name : str
    address : int
    writable : bool
        The host writes it (while the core is idle) and reads it back; otherwise the core writes it and the
        host only reads it.
    bits : callable
        Its width in the core of a configuration: ``bits(arch) -> int``.
    """

    name: str
    address: int
    writable: bool
    bits: Callable[[ArchConfig], int]


@dataclass(frozen=True)
class HostMap:
    """Selects, memories and control registers of the host interface (see the module docstring).

    Attributes
    ----------
    select_bits : int
        Width of ``host_sel``.
    control_select : int
        The ``host_sel`` of the control registers.
    memories : tuple of MemorySelect
        The memories the host reads (all of these) and writes (the ``writable`` ones).
    registers : tuple of Register
        The control registers, by address.
    """

    select_bits: int
    control_select: int
    memories: tuple
    registers: tuple

    def select(self, memory: str) -> int:
        """The ``host_sel`` of ``memory``."""
        return self.memory(memory).select

    def memory(self, name: str) -> MemorySelect:
        for memory in self.memories:
            if memory.name == name:
                return memory
        raise KeyError(f"the host map has no memory {name!r}")

    def register(self, name: str) -> Register:
        for register in self.registers:
            if register.name == name:
                return register
        raise KeyError(f"the host map has no register {name!r}")

    def address(self, register: str) -> int:
        """The ``host_addr`` of a control register."""
        return self.register(register).address

    @property
    def memory_names(self) -> tuple:
        """Every memory the host reads, in select order."""
        return tuple(memory.name for memory in self.memories)

    @property
    def writable_memories(self) -> tuple:
        """The memories the host writes: the program and the input image."""
        return tuple(memory.name for memory in self.memories if memory.writable)

    @property
    def written_registers(self) -> tuple:
        """The control registers the host writes, by address."""
        return tuple(register.name for register in self.registers if register.writable)

    def register_bits(self, arch: ArchConfig) -> dict:
        """``{register: width}`` in the core of ``arch``."""
        return {register.name: register.bits(arch) for register in self.registers}

    def addr_bits(self, arch: ArchConfig) -> int:
        """Width of ``host_addr``: the widest address of a host-visible memory or of the register file."""
        return max([arch.addr_bits(memory.name) for memory in self.memories]
                   + [(len(self.registers) - 1).bit_length()])

    def data_bits(self, arch: ArchConfig) -> int:
        """Width of ``host_wdata`` and ``host_rdata``: the widest host-visible word or register."""
        layouts = all_layouts(arch)
        return max([layouts[memory.name].width for memory in self.memories]
                   + list(self.register_bits(arch).values()))

    def describe(self, arch: ArchConfig) -> dict:
        """The map in the core of ``arch`` as plain JSON data (the cocotb harness's copy, through its job file)::

            {"select_bits": 4, "control_select": 0, "addr_bits": ..., "data_bits": ...,
             "memories": {name: {"select": int, "writable": bool}},
             "registers": {name: {"address": int, "writable": bool, "bits": int}}}
        """
        return {
            "select_bits": self.select_bits, "control_select": self.control_select,
            "addr_bits": self.addr_bits(arch), "data_bits": self.data_bits(arch),
            "memories": {memory.name: {"select": memory.select, "writable": memory.writable}
                         for memory in self.memories},
            "registers": {register.name: {"address": register.address, "writable": register.writable,
                                          "bits": register.bits(arch)} for register in self.registers},
        }


#: Width of the cycle and saturation counters (they wrap modulo ``2**32``).
COUNTER_BITS = 32


def _count_of(memory: str) -> Callable[[ArchConfig], int]:
    """The width of a count of ``memory``'s rows or words, from 0 up to its depth inclusive."""
    return lambda arch: arch.addr_bits(memory) + 1


HOST_MAP = HostMap(
    select_bits=4,
    control_select=0,
    memories=(
        MemorySelect("layers", 1, writable=True),
        MemorySelect("pointers", 2, writable=True),
        MemorySelect("synapses", 3, writable=True),
        MemorySelect("weights", 4, writable=True),
        MemorySelect("params", 5, writable=True),
        MemorySelect("inputs", 6, writable=True),
        MemorySelect("state", 7, writable=False),
        MemorySelect("trace", 8, writable=False),
    ),
    registers=(
        Register("n_layers", 0, writable=True, bits=_count_of("layers")),
        Register("timesteps", 1, writable=True, bits=lambda arch: arch.timestep_bits + 1),
        Register("n_inputs", 2, writable=True, bits=_count_of("inputs")),
        Register("state_rows", 3, writable=True, bits=_count_of("state")),
        Register("cycles", 4, writable=False, bits=lambda arch: COUNTER_BITS),
        Register("trace_count", 5, writable=False, bits=lambda arch: arch.memories.trace.bit_length()),
        Register("trace_overflow", 6, writable=False, bits=lambda arch: 1),
        Register("saturations", 7, writable=False, bits=lambda arch: COUNTER_BITS),
    ),
)
