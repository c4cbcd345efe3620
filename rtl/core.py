"""The whole core: memories, controller, control registers and host interface (``docs/core.md``).

:class:`Core` puts together the memories (:mod:`spikecore.rtl.banks`), the arithmetic units
(:mod:`spikecore.rtl.components`), the datapath and the controller (:mod:`spikecore.rtl.datapath`,
:mod:`spikecore.rtl.controller`) and the host interface of :data:`spikecore.rtl.hostmap.HOST_MAP`
(:func:`connect_host`). All memories have one synchronous read port (data valid the cycle after the address)
and one write port; the memories of a bank (``ArchConfig.banks``) share one single-port memory, which the
schedule never accesses twice in a cycle. While the core is idle the host owns the read addresses and the
write ports of the memories it may write.
"""
from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from spikecore.accel.contract.config import ArchConfig

from .banks import memory_ports
from .components import AcArray, NeuronUpdate
from .controller import Controller
from .hostmap import HOST_MAP


def core_signature(arch: ArchConfig) -> wiring.Signature:
    """The ports of the :class:`Core` of ``arch`` (besides the clock and reset of its ``sync`` domain)."""
    data_bits = HOST_MAP.data_bits(arch)
    return wiring.Signature({
        "host_sel": In(HOST_MAP.select_bits),
        "host_addr": In(HOST_MAP.addr_bits(arch)),
        "host_wdata": In(data_bits),
        "host_we": In(1),
        "host_rdata": Out(data_bits),
        "start": In(1),
        "busy": Out(1),
        "done": Out(1),
    })


class Core(wiring.Component):
    """The spike-driven core for one architecture configuration.

    Parameters
    ----------
    arch : accel.config.ArchConfig
        Sizes every memory, width and lane count.

    Attributes
    ----------
    host_sel : Signal(4), in
        What the host reads or writes (:data:`spikecore.rtl.hostmap.HOST_MAP`): 0 control registers,
        1 layers, 2 pointers, 3 synapses, 4 weights, 5 params, 6 inputs, 7 state, 8 trace.
    host_addr : Signal(HOST_MAP.addr_bits(arch)), in
        Word (or register) address: the widest address of a host-visible memory or of the register file.
    host_wdata : Signal(HOST_MAP.data_bits(arch)), in
        Write data, as wide as the widest host-visible word; the low bits of the selected word are used.
    host_we : Signal(1), in
        Write strobe; ignored while ``busy``. Writable: registers 0..3 and memories 1..6.
    host_rdata : Signal(HOST_MAP.data_bits(arch)), out
        Zero-extended data of the (``host_sel``, ``host_addr``) presented one cycle earlier.
    start : Signal(1), in
        Sampled while idle: begin an inference.
    busy : Signal(1), out
        High while running (every cycle counted by the ``cycles`` register).
    done : Signal(1), out
        High from the end of a run until the next ``start``.
    """

    def __new__(cls, arch, *args, **kwargs):
        # Checked before Amaranth registers the object: a rejected core never exists, so Amaranth never
        # warns that it was created but never used.
        if not isinstance(arch, ArchConfig):
            raise TypeError(f"arch must be an accel.config.ArchConfig, got {type(arch).__name__}")
        return super().__new__(cls, arch, *args, src_loc_at=1, **kwargs)

    def __init__(self, arch: ArchConfig):
        self.arch = arch
        super().__init__(core_signature(arch))

    def elaborate(self, platform):
        m = Module()
        read, write, registers, controller = core_parts(m, self.arch)
        m.d.comb += [self.busy.eq(~controller.idle), self.done.eq(controller.done), controller.start.eq(self.start)]
        connect_host(m, self, read, write, registers, controller.idle)
        controller.elaborate(m)  # after the host interface: its states override the host's port defaults
        return m


def core_parts(m: Module, arch: ArchConfig) -> tuple:
    """The core's memories, arithmetic units, control registers and controller, added to ``m`` (the controller
    not yet elaborated): ``(read ports, write ports, registers, controller)``."""
    read, write = memory_ports(m, arch)
    m.submodules.ac_array = ac_array = AcArray(arch.lanes, arch.acc_bits, arch.weight_bits,
                                               arch.value_bits - 1 if arch.multivalue == "bitserial" else 0,
                                               arch.value_bits if arch.max_pool else 0)
    m.submodules.neuron_update = neuron_update = NeuronUpdate(
        arch.neurons_per_update, arch.max_levels, arch.acc_bits, arch.membrane_bits, arch.value_bits,
        registered=arch.update_steps > 1)
    registers = {name: Signal(bits, name=name) for name, bits in HOST_MAP.register_bits(arch).items()}
    return read, write, registers, Controller(arch, read, write, registers, ac_array, neuron_update)


def connect_host(m: Module, core: Core, read: dict, write: dict, registers: dict, idle) -> None:
    """The host interface of :data:`spikecore.rtl.hostmap.HOST_MAP` on the ports of ``core``.

    While ``idle``, the host writes the control registers and the memories it may write, and its read
    addresses are on the memories' read ports; the controller's states, added to ``m`` later, override the
    ports' defaults set here. ``host_rdata`` returns the register or memory word addressed one cycle earlier.
    """
    # A read is never enabled in the cycle of a write: a memory in a bank has a single port.
    for name in HOST_MAP.memory_names:
        select = HOST_MAP.select(name)
        m.d.comb += [read[name].addr.eq(core.host_addr),
                     read[name].en.eq(idle & (core.host_sel == select) & ~core.host_we)]
    for name in read:
        if name not in HOST_MAP.memory_names:  # the core's own memories (accumulators, events)
            m.d.comb += read[name].en.eq(0)

    with m.If(idle & core.host_we):
        with m.Switch(core.host_sel):
            with m.Case(HOST_MAP.control_select):
                with m.Switch(core.host_addr):
                    for name in HOST_MAP.written_registers:
                        with m.Case(HOST_MAP.address(name)):
                            m.d.sync += registers[name].eq(core.host_wdata)
            for name in HOST_MAP.writable_memories:
                with m.Case(HOST_MAP.select(name)):
                    m.d.comb += [write[name].addr.eq(core.host_addr), write[name].data.eq(core.host_wdata),
                                 write[name].en.eq(1)]

    host_rdata_select = Signal.like(core.host_sel)
    register_rdata = Signal(max(len(register) for register in registers.values()))
    m.d.sync += host_rdata_select.eq(core.host_sel)
    with m.Switch(core.host_addr):
        for register in HOST_MAP.registers:
            with m.Case(register.address):
                m.d.sync += register_rdata.eq(registers[register.name])
        with m.Default():
            m.d.sync += register_rdata.eq(0)
    with m.Switch(host_rdata_select):
        with m.Case(HOST_MAP.control_select):
            m.d.comb += core.host_rdata.eq(register_rdata)
        for name in HOST_MAP.memory_names:
            with m.Case(HOST_MAP.select(name)):
                m.d.comb += core.host_rdata.eq(read[name].data.as_value())
