"""The host bridge: a UART and a decoder of the link's commands driving the core's host port.

:class:`UARTReceiver` and :class:`UARTTransmitter` turn the serial line into byte streams
(``amaranth.lib.stream``), :class:`CommandDecoder` executes the commands of :mod:`spikecore.rtl.link` on the
host port of :class:`spikecore.rtl.core.Core`, and :class:`HostBridge` puts the three together. No memory is
used (the UP5K's block RAM is all the core's): the bridge is a few hundred flip-flops.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from spikecore.accel.contract.config import ArchConfig

from . import link
from .core import core_signature
from .hostmap import HOST_MAP


def check_clocks_per_bit(clocks_per_bit) -> int:
    """``clocks_per_bit`` if it is an integer of at least :data:`spikecore.rtl.link.MIN_CLOCKS_PER_BIT`."""
    if isinstance(clocks_per_bit, bool) or not isinstance(clocks_per_bit, int) \
            or clocks_per_bit < link.MIN_CLOCKS_PER_BIT:
        raise TypeError(f"clocks_per_bit must be an integer of at least {link.MIN_CLOCKS_PER_BIT}, "
                        f"got {clocks_per_bit!r}")
    return clocks_per_bit


def check_arch(arch) -> ArchConfig:
    """``arch`` if it is an architecture configuration."""
    if not isinstance(arch, ArchConfig):
        raise TypeError(f"arch must be an accel.config.ArchConfig, got {type(arch).__name__}")
    return arch


class UARTReceiver(wiring.Component):
    """Receives 8N1 bytes from a serial line.

    The line is synchronised by two flip-flops; a start bit is confirmed in its middle, every bit is sampled
    in its middle.

    Parameters
    ----------
    clocks_per_bit : int
        Clock cycles per bit (at least :data:`spikecore.rtl.link.MIN_CLOCKS_PER_BIT`).

    Attributes
    ----------
    rx : Signal(1), in
        The serial line (idle high).
    stream : stream.Signature(8), out
        Each received byte; ``valid`` stays high until ``ready``.
    overrun : Signal(1), out
        Sticky: a byte completed while the previous one was still not taken (it replaced it).
    framing_error : Signal(1), out
        Sticky: a byte's stop bit was low (the byte was dropped).
    """

    def __new__(cls, clocks_per_bit, *args, **kwargs):
        # checked before Amaranth registers the object: a rejected block never warns that it was never used
        check_clocks_per_bit(clocks_per_bit)
        return super().__new__(cls, clocks_per_bit, *args, src_loc_at=1, **kwargs)

    def __init__(self, clocks_per_bit: int):
        self.clocks_per_bit = clocks_per_bit
        super().__init__({"rx": In(1, init=1), "stream": Out(stream.Signature(8)), "overrun": Out(1),
                          "framing_error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        cycles = self.clocks_per_bit
        line = Signal(init=1)
        m.submodules.synchronizer = FFSynchronizer(self.rx, line, init=1)
        timer = Signal(range(cycles))
        bit = Signal(range(8))
        shift = Signal(8)
        with m.If(self.stream.valid & self.stream.ready):
            m.d.sync += self.stream.valid.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(cycles // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(cycles - 1), bit.eq(0)]
                    with m.If(line):  # a glitch, not a start bit
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "DATA"
            with m.State("DATA"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(cycles - 1), shift.eq(Cat(shift[1:], line)), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    with m.If(line):
                        m.d.sync += [self.stream.payload.eq(shift), self.stream.valid.eq(1)]
                        with m.If(self.stream.valid & ~self.stream.ready):
                            m.d.sync += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += self.framing_error.eq(1)
                    m.next = "IDLE"
        return m


class UARTTransmitter(wiring.Component):
    """Sends 8N1 bytes on a serial line.

    Parameters
    ----------
    clocks_per_bit : int
        Clock cycles per bit (at least :data:`spikecore.rtl.link.MIN_CLOCKS_PER_BIT`).

    Attributes
    ----------
    stream : stream.Signature(8), in
        Bytes to send; ``ready`` while the line is idle (one byte takes ``10 * clocks_per_bit`` cycles).
    tx : Signal(1), out
        The serial line, from a register (idle high).
    """

    def __new__(cls, clocks_per_bit, *args, **kwargs):
        # checked before Amaranth registers the object: a rejected block never warns that it was never used
        check_clocks_per_bit(clocks_per_bit)
        return super().__new__(cls, clocks_per_bit, *args, src_loc_at=1, **kwargs)

    def __init__(self, clocks_per_bit: int):
        self.clocks_per_bit = clocks_per_bit
        super().__init__({"stream": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        cycles = self.clocks_per_bit
        timer = Signal(range(cycles))
        shift = Signal(9)  # the data bits, then the stop bit
        left = Signal(range(10))  # bits still to put on the line after the current one
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.stream.ready.eq(1)
                with m.If(self.stream.valid):
                    m.d.sync += [self.tx.eq(0), shift.eq(Cat(self.stream.payload, Const(1, 1))),
                                 timer.eq(cycles - 1), left.eq(9)]
                    m.next = "SEND"
            with m.State("SEND"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += timer.eq(cycles - 1)
                    with m.If(left == 0):  # the stop bit has lasted its time
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [self.tx.eq(shift[0]), shift.eq(shift >> 1), left.eq(left - 1)]
        return m


class CommandDecoder(wiring.Component):
    """Executes the commands of :mod:`spikecore.rtl.link` on the host port of a core of ``arch``.

    Parameters
    ----------
    arch : accel.config.ArchConfig
        The core's configuration: the widths of its host port and of each select's words.

    Attributes
    ----------
    rx : stream.Signature(8), in
        Bytes from the host.
    tx : stream.Signature(8), out
        Bytes to the host.
    host : flipped :func:`spikecore.rtl.core.core_signature`
        The core's host port seen from the bridge: ``host_sel`` (out, 4), ``host_addr`` (out,
        ``HOST_MAP.addr_bits(arch)``), ``host_wdata`` (out, ``HOST_MAP.data_bits(arch)``), ``host_we`` (out, 1),
        ``host_rdata`` (in, ``HOST_MAP.data_bits(arch)``), ``start`` (out, 1), ``busy`` (in, 1), ``done`` (in, 1).
    overrun : Signal(1), in
        The receiver's sticky overrun flag (reported by ``STATUS``).
    framing_error : Signal(1), in
        The receiver's sticky framing error flag (reported by ``STATUS``).
    """

    def __new__(cls, arch, *args, **kwargs):
        check_arch(arch)  # before Amaranth registers the object (see UARTReceiver)
        return super().__new__(cls, arch, *args, src_loc_at=1, **kwargs)

    def __init__(self, arch: ArchConfig):
        self.arch = arch
        super().__init__({"rx": In(stream.Signature(8)), "tx": Out(stream.Signature(8)),
                          "host": Out(core_signature(arch).flip()), "overrun": In(1), "framing_error": In(1)})

    def elaborate(self, platform):
        m = Module()
        arch, host = self.arch, self.host
        widths = link.select_widths(arch)
        n_address = link.address_bytes(arch)
        hello = link.hello_answer(arch)
        # one register holds a word in flight or an answer, least significant byte first
        word_bytes = max(max(-(-width // 8) for width in widths.values()), len(hello), link.STATUS_ANSWER_BYTES)
        word = Signal(8 * word_bytes)
        size = Signal(range(word_bytes + 1))  # bytes of a word of the current select
        answer_size = Signal(range(word_bytes + 1))
        index = Signal(range(max(word_bytes, n_address, link.COUNT_BYTES)))
        command = Signal(8)
        select = Signal(len(host.host_sel))
        address = Signal(8 * n_address)
        count = Signal(8 * link.COUNT_BYTES)
        busy_cycles = Signal(8 * link.BUSY_COUNT_BYTES)
        status = Signal(8)

        with m.Switch(select):
            for value, width in widths.items():
                with m.Case(value):
                    m.d.comb += size.eq(-(-width // 8))
            with m.Default():  # a select outside the map (the core ignores it): words of the control select's size
                m.d.comb += size.eq(-(-widths[HOST_MAP.control_select] // 8))
        m.d.comb += [host.host_sel.eq(select), host.host_addr.eq(address), host.host_wdata.eq(word),
                     status.eq(Cat(*[{"busy": host.busy, "done": host.done, "overrun": self.overrun,
                                      "framing_error": self.framing_error}[name]
                                     for name, _ in sorted(link.STATUS_BITS.items(), key=lambda item: item[1])]))]
        # the bridge's own count of the core's busy cycles: an independent measure of the cycles register
        with m.If(host.start):
            m.d.sync += busy_cycles.eq(0)
        with m.Elif(host.busy):
            m.d.sync += busy_cycles.eq(busy_cycles + 1)

        def answer(data):
            """Send ``data`` (constant bytes, or a ``(value, length in bytes)`` pair) and return to IDLE."""
            value, length = (int.from_bytes(data, "little"), len(data)) if isinstance(data, bytes) else data
            m.d.sync += [word.eq(value), answer_size.eq(length), index.eq(0)]
            m.next = "ANSWER"

        def collect(state, target, length, next_state):
            """A state taking ``length`` bytes from the line into ``target``, least significant first."""
            with m.State(state):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid):
                    m.d.sync += [target.word_select(index, 8).eq(self.rx.payload), index.eq(index + 1)]
                    with m.If(index == length - 1):
                        m.d.sync += index.eq(0)
                        m.next = next_state

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid):
                    m.d.sync += [command.eq(self.rx.payload), index.eq(0)]
                    with m.Switch(self.rx.payload):
                        with m.Case(link.WRITE, link.READ):
                            m.next = "SELECT"
                        with m.Case(link.START):
                            m.next = "START"
                        with m.Case(link.STATUS):
                            answer((Cat(status, busy_cycles), link.STATUS_ANSWER_BYTES))
                        with m.Case(link.HELLO):
                            answer(hello)
                        with m.Default():
                            answer(bytes([link.NAK]))
            with m.State("SELECT"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid):
                    m.d.sync += select.eq(self.rx.payload)
                    m.next = "ADDRESS"
            collect("ADDRESS", address, n_address, "COUNT")
            collect("COUNT", count, link.COUNT_BYTES, "TRANSFER")
            with m.State("TRANSFER"):
                with m.If(command == link.WRITE):
                    with m.If(count == 0):
                        answer(bytes([link.ACK]))
                    with m.Else():
                        m.next = "RECEIVE"
                with m.Elif(count == 0):
                    m.next = "IDLE"
                with m.Else():
                    m.next = "READ"
            collect("RECEIVE", word, size, "STORE")
            with m.State("STORE"):
                m.d.comb += host.host_we.eq(1)
                m.d.sync += [address.eq(address + 1), count.eq(count - 1)]
                with m.If(count == 1):
                    answer(bytes([link.ACK]))
                with m.Else():
                    m.next = "RECEIVE"
            with m.State("READ"):  # the address is on the memories' read ports: the data follows a cycle later
                m.next = "LATCH"
            with m.State("LATCH"):
                m.d.sync += [word.eq(host.host_rdata), index.eq(0)]
                m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(word.word_select(index, 8))]
                with m.If(self.tx.ready):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == size - 1):
                        m.d.sync += [address.eq(address + 1), count.eq(count - 1)]
                        m.next = "IDLE"
                        with m.If(count != 1):
                            m.next = "READ"
            with m.State("START"):
                m.d.comb += host.start.eq(1)
                answer(bytes([link.ACK]))
            with m.State("ANSWER"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(word[:8])]
                with m.If(self.tx.ready):
                    m.d.sync += [word.eq(word >> 8), index.eq(index + 1)]
                    with m.If(index == answer_size - 1):
                        m.next = "IDLE"
        return m


class HostBridge(wiring.Component):
    """The UART and the command decoder: a serial line in, a core's host port out.

    Parameters
    ----------
    arch : accel.config.ArchConfig
        The configuration of the core behind the bridge.
    clocks_per_bit : int
        Clock cycles per bit on the line (:func:`spikecore.rtl.link.clocks_per_bit`).

    Attributes
    ----------
    rx : Signal(1), in
        The serial line from the host (idle high).
    tx : Signal(1), out
        The serial line to the host (idle high).
    host : flipped :func:`spikecore.rtl.core.core_signature`
        The core's host port, as :class:`CommandDecoder` drives it.
    """

    def __new__(cls, arch, clocks_per_bit, *args, **kwargs):
        check_arch(arch)  # before Amaranth registers the object (see UARTReceiver)
        check_clocks_per_bit(clocks_per_bit)
        return super().__new__(cls, arch, clocks_per_bit, *args, src_loc_at=1, **kwargs)

    def __init__(self, arch: ArchConfig, clocks_per_bit: int):
        self.arch = arch
        self.clocks_per_bit = clocks_per_bit
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "host": Out(core_signature(arch).flip())})

    def elaborate(self, platform):
        m = Module()
        m.submodules.receiver = receiver = UARTReceiver(self.clocks_per_bit)
        m.submodules.transmitter = transmitter = UARTTransmitter(self.clocks_per_bit)
        m.submodules.decoder = decoder = CommandDecoder(self.arch)
        wiring.connect(m, receiver.stream, decoder.rx)
        wiring.connect(m, decoder.tx, transmitter.stream)
        wiring.connect(m, wiring.flipped(self.host), decoder.host)
        m.d.comb += [receiver.rx.eq(self.rx), self.tx.eq(transmitter.tx), decoder.overrun.eq(receiver.overrun),
                     decoder.framing_error.eq(receiver.framing_error)]
        return m
