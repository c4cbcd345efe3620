"""The host driver: a Program and input images to a board's core over the link, results back.

:class:`BoardDriver` speaks the protocol of :mod:`spikecore.rtl.link` over any byte *transport* with
``write(data)`` and ``read(n)`` (returning at most ``n`` bytes: fewer when its timeout passed), as pyserial's
``serial.Serial`` has (:func:`open_serial_port`). The cocotb testbench of the simulated board
(:mod:`spikecore.rtl.board_harness`) runs this same class over a simulated serial line.

It loads what :func:`spikecore.rtl.runner.run_inferences` loads (``Program.memory_image``: the words of
:data:`spikecore.rtl.runner.PROGRAM_MEMORIES` and the registers :data:`spikecore.rtl.runner.PROGRAM_REGISTERS`),
writes each input image into the ``inputs`` memory, starts the core, polls ``done`` and reads back what the runner
returns, in the runner's format, so that ``spikecore.accel.flows.verify`` decodes and compares it unchanged.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from spikecore.accel.contract.config import ArchConfig
from spikecore.errors import UserError

from . import link
from .hostmap import HOST_MAP
from .runner import PROGRAM_MEMORIES, PROGRAM_REGISTERS

if TYPE_CHECKING:  # the Program's module imports torch: seconds in every simulator process of the harness
    from spikecore.accel.contract.program import Program


class LinkError(UserError):
    """The board answers what the protocol does not allow."""


class NoAnswer(LinkError):
    """The board did not answer within the transport's timeout."""


def readout_words(program: "Program", arch: ArchConfig) -> range:
    """The state words holding the readout's membranes (its logits): the only state words read back."""
    last = program.layers[-1]
    return range(last.state_base * arch.update_steps, (last.state_base + last.n_groups) * arch.update_steps)


class BoardDriver:
    """Runs inferences on a core behind the bridge at the other end of ``transport``.

    Parameters
    ----------
    transport : object
        ``write(bytes)`` and ``read(n) -> bytes`` (at most ``n`` bytes; fewer only after a timeout), and
        optionally ``flush()``, which waits until the bytes written are on the line.
    arch : accel.config.ArchConfig
        The configuration the board was built for (checked by :meth:`hello`).
    sleep : callable
        ``sleep(seconds)`` between two polls of ``STATUS`` (the simulated line waits simulated time).
    poll_interval_s : float
        Time between two polls while the core runs.
    max_polls : int
        Polls before :meth:`wait_done` gives up.

    Attributes
    ----------
    bytes_sent, bytes_received : int
        Every byte moved so far (the link's load, for its throughput).
    """

    def __init__(self, transport, arch: ArchConfig, sleep=time.sleep, poll_interval_s: float = 1e-3,
                 max_polls: int = 100_000):
        if not (callable(getattr(transport, "write", None)) and callable(getattr(transport, "read", None))):
            raise TypeError(f"transport must have write() and read(), got {type(transport).__name__}")
        if not isinstance(arch, ArchConfig):
            raise TypeError(f"arch must be an accel.config.ArchConfig, got {type(arch).__name__}")
        self.transport = transport
        self.arch = arch
        self.sleep = sleep
        self.poll_interval_s = poll_interval_s
        self.max_polls = max_polls
        self.bytes_sent = 0
        self.bytes_received = 0

    # ---- bytes ----------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.transport.write(data)
        # pyserial's write returns once the bytes are queued; a long WRITE takes seconds on the line, which the
        # timeout of the answer's read must not count
        if callable(getattr(self.transport, "flush", None)):
            self.transport.flush()
        self.bytes_sent += len(data)

    def receive(self, count: int, what: str) -> bytes:
        """Exactly ``count`` bytes, or a :class:`LinkError` naming ``what`` was awaited."""
        data = b""
        while len(data) < count:
            chunk = self.transport.read(count - len(data))
            if not chunk:
                raise NoAnswer(f"the board did not answer {what} ({len(data)} of {count} bytes came)")
            data += bytes(chunk)
        self.bytes_received += len(data)
        return data

    def expect_ack(self, what: str) -> None:
        answer = self.receive(1, what)[0]
        if answer != link.ACK:
            raise LinkError(f"the board answered {what} with {answer:#04x}, not ACK")

    # ---- commands -------------------------------------------------------------------------------
    def hello(self) -> dict:
        """Ask the bridge who it is; check the protocol version and the configuration.

        Raises
        ------
        LinkError
            No answer, not a spikecore bridge, another protocol version, or another configuration.
        """
        self.send(bytes([link.HELLO]))
        expected = link.hello_answer(self.arch)
        answer = self.receive(len(expected), "HELLO")
        if answer[:len(link.MAGIC)] != link.MAGIC:
            raise LinkError(f"the device answered HELLO with {answer.hex()}: not a spikecore board")
        if answer[len(link.MAGIC)] != link.VERSION:
            raise LinkError(f"the board speaks link version {answer[len(link.MAGIC)]}, this driver {link.VERSION}")
        if answer != expected:
            raise LinkError(f"the board was built for another configuration (fingerprint "
                            f"{answer[-link.FINGERPRINT_BYTES:].hex()}..., {self.arch.name} has "
                            f"{self.arch.fingerprint()}); build it with accel board --arch for this one")
        return {"version": answer[len(link.MAGIC)], "fingerprint": answer[-link.FINGERPRINT_BYTES:].hex()}

    def write_words(self, select: int, address: int, words) -> None:
        """Write ``words`` at consecutive addresses of ``select`` (in transfers of at most ``MAX_WORDS``)."""
        words = [int(word) for word in words]
        size = link.word_bytes(self.arch, select)
        for first in range(0, len(words), link.MAX_WORDS):
            part = words[first:first + link.MAX_WORDS]
            self.send(link.request(link.WRITE, select, address + first, len(part), self.arch)
                      + link.encode_words(part, size))
            self.expect_ack(f"WRITE of {len(part)} words at select {select}, address {address + first}")

    def read_words(self, select: int, address: int, count: int) -> list:
        """``count`` words of ``select`` from ``address``."""
        size = link.word_bytes(self.arch, select)
        words = []
        for first in range(0, count, link.MAX_WORDS):
            part = min(link.MAX_WORDS, count - first)
            self.send(link.request(link.READ, select, address + first, part, self.arch))
            words += link.decode_words(self.receive(part * size, f"READ of {part} words at select {select}"),
                                       size)
        return words

    def write_register(self, name: str, value: int) -> None:
        self.write_words(HOST_MAP.control_select, HOST_MAP.address(name), [value])

    def read_register(self, name: str) -> int:
        return self.read_words(HOST_MAP.control_select, HOST_MAP.address(name), 1)[0]

    def start(self) -> None:
        self.send(bytes([link.START]))
        self.expect_ack("START")

    def status(self) -> dict:
        """``{busy, done, overrun, framing_error, busy_cycles}`` (:func:`spikecore.rtl.link.decode_status`)."""
        self.send(bytes([link.STATUS]))
        return link.decode_status(self.receive(link.STATUS_ANSWER_BYTES, "STATUS"))

    def wait_done(self) -> dict:
        """Poll ``STATUS`` until the core is done; returns the last status.

        Raises
        ------
        LinkError
            If the receiver saw a damaged byte, or the core is not done after ``max_polls`` polls.
        """
        for _ in range(self.max_polls):
            status = self.status()
            if status["overrun"] or status["framing_error"]:
                raise LinkError(f"the bridge received a damaged byte (overrun {status['overrun']}, framing error "
                                f"{status['framing_error']}): check the baud rate and the cable")
            if status["done"] and not status["busy"]:
                return status
            self.sleep(self.poll_interval_s)
        raise LinkError(f"the core is not done after {self.max_polls} polls of STATUS")

    # ---- inferences -----------------------------------------------------------------------------
    def load_program(self, image: dict) -> None:
        """Write a program image (``Program.memory_image(arch)``): its memories, then its registers."""
        for name in PROGRAM_MEMORIES:
            words = image.get(name, [])
            if words:
                self.write_words(HOST_MAP.select(name), 0, words)
        for name in PROGRAM_REGISTERS:
            self.write_register(name, int(image["registers"][name]))

    def run(self, pixels, state_words: range) -> dict:
        """One inference on ``pixels``; the results as :func:`spikecore.rtl.runner.run_inferences` gives them.

        Parameters
        ----------
        pixels : sequence of int
            The input image, written to the inputs memory from address 0; on a core with ``event_input``, the
            inference's input words (:func:`spikecore.accel.contract.inputs.input_words`), and the ``n_inputs``
            register is set to their number first.
        state_words : range
            The state words to read back (:func:`readout_words`); the words before them are not moved over the
            link and are zero in ``state`` (``spikecore.accel.flows.verify.decode_rtl`` reads only the
            readout's rows).

        Returns
        -------
        dict
            ``cycles`` (the core's register), ``cycles_measured`` (the bridge's own count of busy cycles),
            ``trace`` (words ``0 .. trace_count - 1``), ``trace_count``, ``trace_overflow``, ``saturations``,
            ``state``.
        """
        if self.arch.event_input:
            self.write_register("n_inputs", len(pixels))
        self.write_words(HOST_MAP.select("inputs"), 0, pixels)
        self.start()
        status = self.wait_done()
        counters = {register.name: self.read_register(register.name)
                    for register in HOST_MAP.registers if not register.writable}
        trace = (self.read_words(HOST_MAP.select("trace"), 0, counters["trace_count"])
                 if counters["trace_count"] else [])
        state = [0] * state_words.start + self.read_words(HOST_MAP.select("state"), state_words.start,
                                                          len(state_words))
        return {"cycles": counters["cycles"], "cycles_measured": status["busy_cycles"], "trace": trace,
                "trace_count": counters["trace_count"], "trace_overflow": counters["trace_overflow"],
                "saturations": counters["saturations"], "state": state}


def open_serial_port(port: str, baud: int, timeout_s: float):
    """``serial.Serial`` on ``port`` at ``baud`` (8N1), ``read`` returning after ``timeout_s`` at most.

    Raises
    ------
    UserError
        If the port does not exist or cannot be opened.
    """
    import serial

    try:
        return serial.Serial(port, baudrate=baud, timeout=timeout_s, write_timeout=timeout_s)
    except (serial.SerialException, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"--port {port}: cannot open the serial port ({reason})") from None
