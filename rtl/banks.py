"""The core's memories: a memory of its own per unbanked memory, a :class:`Bank` per bank (``docs/core.md``, "Banks").

:func:`memory_ports` gives the core one read and one write port per memory, each an interface of Amaranth's
memory port signatures (``ReadPort.Signature``, ``WritePort.Signature``: ``addr``, ``en``, ``data``), whether
the memory is a memory of its own (the memory's own ports) or a member of a bank (ports of the bank's
signature, reached through signals of the core named ``<member>_read_en``, ``<member>_write_addr``, ...,
which the waveforms show and the formal proofs probe).

Each physical memory (``spikecore.accel.contract.layouts.physical_memories``) is one :class:`CoreMemory`, an
Amaranth memory that knows its physical memory's name, so that the Verilog generator's platform
(:class:`spikecore.rtl.verilog.RamPlatform`) names the RAM it makes of it; :func:`memory_instance_path` says where
it lies in the core.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import Out
from amaranth.utils import ceil_log2

from spikecore.accel.contract.config import ArchConfig
from spikecore.accel.contract.layouts import PhysicalMemory, memory_depths, physical_memories

from .layouts import memory_layouts


class CoreMemory(Memory):
    """A memory of the core: Amaranth's :class:`~amaranth.lib.memory.Memory`, all zero at the start, carrying
    the name of its physical memory (``bank0``, ``acc``, ...), which the platform of
    :func:`spikecore.rtl.verilog.generate` gives the RAM it makes of it (the preload's plusarg).

    Parameters
    ----------
    name : str
        The physical memory's name (``spikecore.accel.contract.layouts.PhysicalMemory.name``).
    shape : shape-like
        The word.
    depth : int
        The words.
    """

    def __init__(self, name: str, *, shape, depth: int):
        super().__init__(shape=shape, depth=depth, init=[])
        self.name = name


def memory_instance(name: str) -> str:
    """The submodule name of the :class:`CoreMemory` of the physical memory ``name``: ``<name>_memory``."""
    return f"{name}_memory"


def memory_instance_path(physical: PhysicalMemory) -> str:
    """The hierarchical name, from the core, of the :class:`CoreMemory` of ``physical``: ``<name>_memory``, inside
    the bank's instance of the same name for a bank (``bank0.bank0_memory``)."""
    inside = f"{physical.name}." if physical.is_bank else ""
    return f"{inside}{memory_instance(physical.name)}"


def member_signatures(depth: int, layout) -> tuple:
    """``(ReadPort.Signature, WritePort.Signature)`` of a memory of ``depth`` words of ``layout``, as the
    memory sees them (``addr`` an input)."""
    addr_width = ceil_log2(depth)
    return (ReadPort.Signature(addr_width=addr_width, shape=layout),
            WritePort.Signature(addr_width=addr_width, shape=layout))


class NamedPort:
    """The core's end of a port of ``signature`` (an interface object for :func:`amaranth.lib.wiring.connect`),
    with signals named ``<name>_<member>`` (``trace_write_en``) rather than by an interface path."""

    def __init__(self, signature: wiring.Signature, name: str):
        self.signature = signature
        for member_name, member in signature.members.items():
            setattr(self, member_name, Signal(member.shape, name=f"{name}_{member_name}", init=member.init))


class Bank(wiring.Component):
    """One single-port memory shared by the members of a bank (``docs/core.md``, "Banks").

    Each member has a read and a write port of its own word shape and address range. The bank ORs the
    enabled member's address, offset to the member's base, onto one address shared by its read and its
    write port (Yosys maps such a memory onto single-port RAM, the iCE40's SPRAM). The configuration
    guarantees that at most one member is accessed per cycle and that no read is enabled in a write cycle.
    A member packing ``pack`` words per bank word reads the slot of its last read address and writes one
    slot through the byte enables.

    Parameters
    ----------
    physical : spikecore.accel.contract.layouts.PhysicalMemory
        The bank: its width, depth and members (``physical.is_bank``).
    layouts : dict
        ``{member: data.StructLayout}``, the word of each member.
    depths : dict
        ``{member: int}``, the words of each member.

    Attributes
    ----------
    <member>_read : ReadPort.Signature(addr_width=ceil_log2(depth), shape=layout), out
        One per member, as a memory's read port: ``addr`` (``ceil_log2(depth)`` bits, in), ``en`` (1 bit,
        in), ``data`` (``layout``, out): the word at the address presented with ``en`` one cycle earlier.
    <member>_write : WritePort.Signature(addr_width=ceil_log2(depth), shape=layout), out
        One per member, as a memory's write port: ``addr`` (in), ``en`` (1 bit, in), ``data`` (``layout``,
        in), written at the clock edge.
    """

    def __init__(self, physical: PhysicalMemory, layouts: dict, depths: dict):
        self.physical, self.layouts = physical, {name: layouts[name] for name in physical.members}
        members = {}
        for name in physical.members:
            read, write = member_signatures(depths[name], layouts[name])
            members[f"{name}_read"], members[f"{name}_write"] = Out(read), Out(write)
        super().__init__(members)

    def elaborate(self, platform):
        physical = self.physical
        m = Module()
        memory = CoreMemory(physical.name, shape=physical.width, depth=physical.depth)
        m.submodules[memory_instance(physical.name)] = memory
        read_port, write_port = memory.read_port(), memory.write_port(granularity=physical.granularity)
        address = Signal(range(physical.depth), name=f"{physical.name}_address")
        addresses, read_enables, write_enables, write_data, write_granules = [], [], [], [], []
        for name, slot in physical.members.items():
            layout = self.layouts[name]
            reader, writer = getattr(self, f"{name}_read"), getattr(self, f"{name}_write")
            shift = slot.pack.bit_length() - 1
            # one address per member (its read and its write never coincide), offset once
            member_address = Mux(writer.en, writer.addr, reader.addr) >> shift
            addresses.append(Mux(reader.en | writer.en, slot.base + member_address, 0))
            read_enables.append(reader.en)
            write_enables.append(writer.en)
            granules = slot.slot_bits // physical.granularity
            padded = Signal(slot.slot_bits, name=f"{name}_write_slot")
            m.d.comb += padded.eq(writer.data.as_value())
            write_data.append(Mux(writer.en, Cat([padded] * slot.pack), 0))
            if slot.pack > 1:
                read_slot = Signal(shift, name=f"{name}_read_slot")
                with m.If(reader.en):
                    m.d.sync += read_slot.eq(reader.addr[:shift])
                m.d.comb += reader.data.eq(read_port.data.word_select(read_slot, slot.slot_bits)[:layout.size])
                mask = Const((1 << granules) - 1, granules * slot.pack) << (writer.addr[:shift] * granules)
            else:
                m.d.comb += reader.data.eq(read_port.data[:layout.size])
                mask = Const((1 << granules) - 1, granules)
            write_granules.append(Mux(writer.en, mask, 0))
        writing = Cat(write_enables).any()
        m.d.comb += [
            address.eq(or_all(addresses)),
            read_port.addr.eq(address), read_port.en.eq(Cat(read_enables).any() & ~writing),
            write_port.addr.eq(address), write_port.data.eq(or_all(write_data)),
            write_port.en.eq(or_all(write_granules)),
        ]
        return m


def or_all(values):
    """``values[0] | values[1] | ...`` as a balanced tree (the bank's address is on the core's longest path)."""
    values = list(values)
    while len(values) > 1:
        values = [values[i] | values[i + 1] for i in range(0, len(values) - 1, 2)] + \
                 ([values[-1]] if len(values) % 2 else [])
    return values[0]


def memory_ports(m: Module, arch: ArchConfig) -> tuple:
    """Add the memories of ``arch`` to ``m`` (a :class:`Bank` per bank, named as the bank, and a :class:`CoreMemory`
    ``<name>_memory`` per memory in no bank); returns ``(read, write)``: ``{memory: port}``, the core's read
    and write port of every memory (see the module docstring)."""
    layouts, depths = memory_layouts(arch), memory_depths(arch)
    read, write = {}, {}
    for physical in physical_memories(arch):
        if physical.is_bank:
            m.submodules[physical.name] = bank = Bank(physical, layouts, depths)
            for name in physical.members:
                read_signature, write_signature = member_signatures(depths[name], layouts[name])
                read[name] = NamedPort(read_signature.flip(), f"{name}_read")
                write[name] = NamedPort(write_signature.flip(), f"{name}_write")
                wiring.connect(m, read[name], getattr(bank, f"{name}_read"))
                wiring.connect(m, write[name], getattr(bank, f"{name}_write"))
        else:
            (name,) = physical.members
            memory = CoreMemory(name, shape=layouts[name], depth=physical.depth)
            m.submodules[memory_instance(name)] = memory
            read[name] = memory.read_port()
            write[name] = memory.write_port()
    return read, write
