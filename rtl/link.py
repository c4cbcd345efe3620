"""The byte protocol between a host computer and the board's bridge, defined once (``docs/board.md``).

The host bridge (:mod:`spikecore.rtl.bridge`) implements it in gates, the host driver
(:mod:`spikecore.rtl.driver`) in Python; both take every number below from here, and the selects, registers
and word widths from :data:`spikecore.rtl.hostmap.HOST_MAP` and the configuration's word layouts.

The line is a UART: 8 data bits, no parity, one stop bit, :data:`DEFAULT_BAUD` unless the board was built for
another rate. The host sends a command byte and its arguments; the bridge answers every command:

============  ======================================================  ============================================
command       request (after the command byte)                        answer
============  ======================================================  ============================================
``HELLO``     nothing                                                 :data:`MAGIC`, :data:`VERSION`, address bytes,
                                                                      the first :data:`FINGERPRINT_BYTES` bytes of
                                                                      the configuration's fingerprint
``WRITE``     select (1 byte), address, count (:data:`COUNT_BYTES`),  :data:`ACK` once the last word is written
              then ``count`` words
``READ``      select, address, count                                  ``count`` words
``START``     nothing                                                 :data:`ACK` once ``start`` was pulsed
``STATUS``    nothing                                                 status byte (:data:`STATUS_BITS`), then the
                                                                      bridge's busy-cycle count of the last run
                                                                      (:data:`BUSY_COUNT_BYTES`)
anything else                                                         :data:`NAK`
============  ======================================================  ============================================

Numbers (addresses, counts, words) are little-endian, least significant byte first. An address is
:func:`address_bytes` bytes: a word address of the selected memory, or a register address for the control
select. ``count`` words follow each other at consecutive addresses; a word of select ``s`` is
:func:`word_bytes` bytes (its width rounded up to whole bytes; the bits above the width are zero in what the
bridge sends and ignored in what it receives).

Plain Python (no Amaranth), so the driver imports it cheaply.
"""
from __future__ import annotations

from spikecore.accel.contract.config import ArchConfig
from spikecore.accel.contract.layouts import all_layouts

from .hostmap import HOST_MAP

#: Command bytes (printable, so that a terminal session on the port can be read).
HELLO = ord("H")
WRITE = ord("W")
READ = ord("R")
START = ord("S")
STATUS = ord("?")
#: Answer bytes.
ACK = 0x06
NAK = 0x15
#: The first bytes of the answer to ``HELLO``, then the version of this protocol.
MAGIC = b"SPK"
VERSION = 1
#: Bytes of the configuration's fingerprint (hex) in the answer to ``HELLO``: the host checks that the board
#: was built for the configuration of the Program it loads.
FINGERPRINT_BYTES = 4
COUNT_BYTES = 2
#: The most words one ``WRITE`` or ``READ`` moves (the driver splits longer transfers).
MAX_WORDS = (1 << (8 * COUNT_BYTES)) - 1
BUSY_COUNT_BYTES = 4
#: Bits of the status byte: the core's ``busy`` and ``done``, and two sticky errors of the receiver (a byte
#: that came before the previous one was taken; a byte whose stop bit was low).
STATUS_BITS = {"busy": 0, "done": 1, "overrun": 2, "framing_error": 3}
#: The documented line rate of the boards (``accel board --baud`` changes it).
DEFAULT_BAUD = 115200
#: Bits on the line per byte: start, 8 data, stop.
LINE_BITS_PER_BYTE = 10
#: The fewest clock cycles per bit the bridge's receiver works with (it samples the middle of a bit).
MIN_CLOCKS_PER_BIT = 4
#: The largest error of the bit time a UART tolerates comfortably (the receiver samples mid-bit, so 10 bits may
#: drift by less than half a bit in all: 5%; half of it is left for the other end's error).
MAX_BAUD_ERROR = 0.025


def address_bytes(arch: ArchConfig) -> int:
    """Bytes of an address on the link: ``host_addr``'s width rounded up to whole bytes."""
    return -(-HOST_MAP.addr_bits(arch) // 8)


def select_widths(arch: ArchConfig) -> dict:
    """``{host_sel: bits of its words}``: the widest control register for the control select, the memory's word
    width for each memory of :data:`spikecore.rtl.hostmap.HOST_MAP`."""
    layouts = all_layouts(arch)
    widths = {HOST_MAP.control_select: max(HOST_MAP.register_bits(arch).values())}
    widths.update({memory.select: layouts[memory.name].width for memory in HOST_MAP.memories})
    return widths


def word_bytes(arch: ArchConfig, select: int) -> int:
    """Bytes of one word of ``select`` on the link."""
    widths = select_widths(arch)
    if select not in widths:
        raise ValueError(f"select {select} is not in the host map (selects {sorted(widths)})")
    return -(-widths[select] // 8)


def fingerprint_bytes(arch: ArchConfig) -> bytes:
    """The bytes of the configuration's fingerprint that ``HELLO`` answers with."""
    return bytes.fromhex(arch.fingerprint()[:2 * FINGERPRINT_BYTES])


def hello_answer(arch: ArchConfig) -> bytes:
    """The bridge's whole answer to ``HELLO`` for a core of ``arch``."""
    return MAGIC + bytes([VERSION, address_bytes(arch)]) + fingerprint_bytes(arch)


def clocks_per_bit(clock_hz: float, baud: int) -> int:
    """The bridge's bit time in clock cycles for ``baud`` from a ``clock_hz`` clock.

    Raises
    ------
    ValueError
        If the rate is not a positive integer, the clock gives fewer than :data:`MIN_CLOCKS_PER_BIT` cycles per
        bit, or the rounded bit time is more than :data:`MAX_BAUD_ERROR` off.
    """
    if isinstance(baud, bool) or not isinstance(baud, int) or baud < 1:
        raise ValueError(f"baud must be a positive integer, got {baud!r}")
    cycles = round(clock_hz / baud)
    if cycles < MIN_CLOCKS_PER_BIT:
        raise ValueError(f"{baud} baud from a {clock_hz / 1e6:g} MHz clock is {clock_hz / baud:.2f} cycles per bit; "
                         f"the bridge needs at least {MIN_CLOCKS_PER_BIT}")
    error = abs(clock_hz / cycles - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise ValueError(f"{baud} baud from a {clock_hz / 1e6:g} MHz clock: {cycles} cycles per bit give "
                         f"{clock_hz / cycles:.0f} baud, {100 * error:.1f}% off (at most "
                         f"{100 * MAX_BAUD_ERROR:g}%)")
    return cycles


def little_endian(value: int, size: int) -> bytes:
    """``value`` as ``size`` bytes, least significant first (the link's order)."""
    return int(value).to_bytes(size, "little")


def request(command: int, select: int, address: int, count: int, arch: ArchConfig) -> bytes:
    """The header of a ``WRITE`` or ``READ`` of ``count`` words of ``select`` from ``address``."""
    if command not in (WRITE, READ):
        raise ValueError(f"a transfer is a WRITE or a READ, got command {command!r}")
    if not 1 <= count <= MAX_WORDS:
        raise ValueError(f"a transfer moves 1 to {MAX_WORDS} words, got {count}")
    return (bytes([command, select]) + little_endian(address, address_bytes(arch))
            + little_endian(count, COUNT_BYTES))


def encode_words(words, size: int) -> bytes:
    """Words on the link, ``size`` bytes each."""
    return b"".join(little_endian(word, size) for word in words)


def decode_words(data: bytes, size: int) -> list:
    """The words of ``size`` bytes each in ``data``."""
    return [int.from_bytes(data[k:k + size], "little") for k in range(0, len(data), size)]


def decode_status(data: bytes) -> dict:
    """The answer to ``STATUS``: ``{busy, done, overrun, framing_error: bool, busy_cycles: int}``."""
    status = {name: bool(data[0] >> bit & 1) for name, bit in STATUS_BITS.items()}
    status["busy_cycles"] = int.from_bytes(data[1:1 + BUSY_COUNT_BYTES], "little")
    return status


#: Bytes of the answer to ``STATUS``.
STATUS_ANSWER_BYTES = 1 + BUSY_COUNT_BYTES
