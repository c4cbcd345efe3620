"""cocotb test module: the host driver runs the simulated board over a simulated serial line
(started by :mod:`spikecore.rtl.board_sim`).

The toplevel is ``spikecore_board_sim`` (:mod:`spikecore.rtl.board`): the bridge and the core with their own
clock, and the host's end of the serial line. The driver (:class:`spikecore.rtl.driver.BoardDriver`, the class
``accel run`` uses with a serial port) runs in a thread of its own through cocotb's ``bridge``; its transport
hands each ``write`` and ``read`` to the simulation through ``resume``, and its pauses between polls are
simulated time. Two transports put the bytes on the line bit by bit at the job's baud rate, so the board sees
what it would see from a computer:

- ``line: model`` (:class:`ModelSerial`): the simulation top's UART (Verilog) sends and receives; the testbench
  waits once per transfer. The inferences run on it.
- ``line: cocotbext-uart`` (:class:`UartSerial`): cocotbext-uart's ``UartSource`` and ``UartSink``, an
  implementation of the UART that owes nothing to this project's, one await per bit: it checks the line's format
  (bit order, start and stop bits, the bridge's timing) on short exchanges.

The job comes as JSON in the file named by ``$BOARD_JOB_FILE``: the configuration (``arch``), the program image,
the input images, the state words to read, the baud rate and where to write the results: per input the
driver's results, the bytes it moved and the simulated time it took, and the transcript of every write and
read on the line (hex), which the tests replay with planted faults.
"""
import json
import logging
import os
from pathlib import Path

import cocotb
from cocotb.task import bridge, resume
from cocotb.triggers import FallingEdge, First, RisingEdge, Timer
from cocotb.utils import get_sim_time
from cocotbext.uart import UartSink, UartSource

from spikecore.accel.contract.config import arch_from_dict
from spikecore.rtl.driver import BoardDriver

JOB_ENV = "BOARD_JOB_FILE"
#: A read gives up after this many byte times without a byte (the bridge answers within a few cycles).
READ_TIMEOUT_BYTES = 64


class UartSerial:
    """pyserial's ``write``, ``flush`` and ``read`` on the simulated line through cocotbext-uart (a thread started
    by ``bridge`` calls them): each bit is an await, so this line suits short exchanges."""

    def __init__(self, dut, baud):
        self.source = UartSource(dut.rx, baud=baud)
        self.sink = UartSink(dut.tx, baud=baud)
        for end in (self.source, self.sink):  # a log line per byte would cost more than the simulation
            end.log.setLevel(logging.WARNING)
        self.timeout_ns = READ_TIMEOUT_BYTES * 10 * 1e9 / baud
        self.transcript = []

    def write(self, data):
        self.transcript.append(["w", bytes(data).hex()])
        resume(self.source.write)(bytes(data))

    def flush(self):
        resume(self.source.wait)()

    def read(self, count):
        data = resume(self.receive)(count)
        self.transcript.append(["r", data.hex()])
        return data

    async def receive(self, count):
        data = bytearray()
        while len(data) < count:
            if self.sink.empty():
                before = get_sim_time(unit="ns")
                await self.sink.wait(timeout=round(self.timeout_ns), timeout_unit="ns")
                if self.sink.empty() and get_sim_time(unit="ns") - before >= self.timeout_ns:
                    break  # as pyserial after its timeout: fewer bytes than asked for
                continue
            data += self.sink.read_nowait(min(count - len(data), self.sink.count()))
        return bytes(data)


class ModelSerial:
    """pyserial's ``write``, ``flush`` and ``read`` on the simulated line through the simulation top's own UART
    (``spikecore.rtl.board.simulation_top``): the bytes go through files, one wait per call, not per bit."""

    def __init__(self, dut, baud, send_file, receive_file, period_ns):
        self.dut = dut
        self.send_path = Path(send_file)
        self.receive_path = Path(receive_file)
        self.period_ns = period_ns
        self.timeout_ns = READ_TIMEOUT_BYTES * 10 * 1e9 / baud
        self.sent = 0
        self.received = 0
        self.transcript = []

    def write(self, data):
        self.transcript.append(["w", bytes(data).hex()])
        with open(self.send_path, "ab") as handle:  # the simulator reads it as the total grows
            handle.write(bytes(data))
        self.sent += len(data)
        resume(self.set_total)(self.sent)

    async def set_total(self, total):
        self.dut.send_total.value = total

    def flush(self):
        resume(self.drain)()

    async def drain(self):
        # two cycles: the new total has reached the sender and its first byte is on the way
        await Timer(2 * self.period_ns, unit="ns")
        while not int(self.dut.send_idle.value):
            await RisingEdge(self.dut.send_idle)

    def read(self, count):
        data = resume(self.receive)(count)
        self.transcript.append(["r", data.hex()])
        return data

    async def receive(self, count):
        want = self.received + count
        self.dut.receive_want.value = want
        await Timer(2 * self.period_ns, unit="ns")
        while int(self.dut.received.value) < want:
            before = int(self.dut.received.value)
            await First(RisingEdge(self.dut.receive_reached), Timer(round(self.timeout_ns), unit="ns"))
            if int(self.dut.received.value) == before:
                break  # as pyserial after its timeout: fewer bytes than asked for
        lines = self.receive_path.read_text().split()[self.received:want]
        if "!!" in lines:
            raise RuntimeError("the board sent a byte whose stop bit was low")
        self.received += len(lines)
        return bytes(int(line, 16) for line in lines)


def pause(seconds):
    """``time.sleep`` for the driver's thread: simulated time passes."""
    resume(Timer)(round(seconds * 1e9), unit="ns")


def run_driver(job, serial):
    """The driver's work, in its own thread: load the program once, then every input."""
    arch = arch_from_dict(job["arch"], "the board job")
    driver = BoardDriver(serial, arch, sleep=pause, poll_interval_s=job["poll_interval_s"])
    driver.hello()
    driver.load_program(job["image"])
    state_words = range(*job["state_words"])
    results = []
    for pixels in job["inputs"]:
        started, sent, received = resume(now_ns)(), driver.bytes_sent, driver.bytes_received
        result = driver.run(pixels, state_words)
        result.update(sim_time_ns=resume(now_ns)() - started, bytes_sent=driver.bytes_sent - sent,
                      bytes_received=driver.bytes_received - received)
        results.append(result)
    return {"results": results, "program_bytes": driver.bytes_sent - sum(r["bytes_sent"] for r in results)}


async def now_ns():
    return get_sim_time(unit="ns")


@cocotb.test()
async def run_job(dut):
    job = json.loads(Path(os.environ[JOB_ENV]).read_text())
    dut.rst.value = 1
    dut.rx.value = 1
    for _ in range(2):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    if job["line"] == "cocotbext-uart":
        serial = UartSerial(dut, job["baud"])
    else:
        serial = ModelSerial(dut, job["baud"], job["send_file"], job["receive_file"], job["clock_period_ns"])
    await FallingEdge(dut.clk)
    outcome = await bridge(run_driver)(job, serial)
    outcome["transcript"] = serial.transcript
    Path(job["result_file"]).write_text(json.dumps(outcome))
