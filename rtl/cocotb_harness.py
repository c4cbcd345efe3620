"""cocotb test module that runs inferences on the generated core (started by :mod:`spikecore.rtl.runner`).

The toplevel is the simulation top of ``rtl/verilog.py`` (the core with its own free-running clock and a
backdoor for reading memories). The job comes as JSON in the file named by ``$RTL_JOB_FILE``: the host map
(``host_map``, :meth:`spikecore.rtl.hostmap.HostMap.describe`: the ``host_sel`` of each memory and the control
registers' addresses), the memory images by name (empty when the simulator preloaded them from files), the
values of the control registers the host writes, the inputs (each a list of words: an image's pixels, or on a
core with event input its input event words), ``input_count_register`` (the control register that the host sets
to each input's number of words before its inference: ``n_inputs`` on a core with event input, whose inputs
differ in length; none otherwise, where the program's ``n_inputs`` holds for every input), how many state rows
to read back, whether to read the trace and the state through the
backdoor (``backdoor_files``) or the bus, and where to write the results. All host traffic is driven at
falling clock edges (one word per cycle) and sampled at the next falling edge, so it never races the
core's rising-edge registers. While an inference runs the harness awaits only the rising edge of
``done``: awaiting every clock edge from Python would dominate the run time.

The cycle at which the core wrote each trace word comes from the simulation top's trace monitor
(``stamps_file``: a line ``ADDRESS CYCLE TIME_NS`` per trace write, flushed when ``done`` rises); with ``waves``
the simulation time of each write is kept too, to find the event in that run's waveform. After each inference
the harness appends a line to ``progress_file``, which the runner polls for its progress bar.

With ``cycle_limit``, an inference whose ``done`` has not risen that many cycles after ``start`` ends the job: its
result is ``{"hang": true, "cycle_limit": N}`` and the later inputs are not run.

The host reads back every word it wrote (the program memories and the control registers after loading them,
the inputs and the input's word count register before each inference): a word that reads otherwise ends the
job with a result ``{"read_back": LINE}`` naming it, and the later inputs are not run.

With ``coverage_file`` (the simulator was given ``+spikecore_coverage=FILE``), the harness pulses the simulation
top's ``coverage_dump`` register after each inference, when the host has read everything back, and returns
with the inference the counters that went up since the previous one (``coverage``: ``{name: count}``, the
lines of ``FILE``; :mod:`spikecore.rtl.coverage` names them).

This module imports nothing from the project (the host map comes in the job), so the simulator finds it wherever
the package lives.
"""
import json
import os
import random
from pathlib import Path

import cocotb
from cocotb.triggers import FallingEdge, RisingEdge, SimTimeoutError, with_timeout
from cocotb.utils import get_sim_time

JOB_ENV = "RTL_JOB_FILE"


class Host:
    """Drives the host interface of ``dut`` as ``host_map`` (the job's) describes it; every method starts and
    ends just after a falling edge.

    With ``idle_seed``, 0..3 idle cycles with random select, address and data (write strobe low) precede
    every transaction: the core must ignore the bus whenever the strobe is low.
    """

    def __init__(self, dut, clock_period_ns, host_map, idle_seed=None, cycle_limit=None):
        self.dut = dut
        self.clock_period_ns = clock_period_ns
        self.host_map = host_map
        self.random = None if idle_seed is None else random.Random(idle_seed)
        self.cycle_limit = cycle_limit

    async def write_memory(self, memory, address, value):
        await self.write(self.host_map["memories"][memory]["select"], address, value)

    async def read_memory(self, memory, address):
        return await self.read(self.host_map["memories"][memory]["select"], address)

    async def write_register(self, register, value):
        await self.write(self.host_map["control_select"], self.host_map["registers"][register]["address"], value)

    async def read_register(self, register):
        return await self.read(self.host_map["control_select"], self.host_map["registers"][register]["address"])

    async def write_registers(self, values):
        """Write the control registers ``{name: value}``, in order."""
        for register, value in values.items():
            await self.write_register(register, value)

    async def read_counters(self):
        """``{name: value}`` of the control registers the core writes (the cycle and trace counters, ...)."""
        return {register: await self.read_register(register)
                for register, described in self.host_map["registers"].items() if not described["writable"]}

    async def idle(self):
        if self.random is None:
            return
        dut = self.dut
        for _ in range(self.random.randrange(4)):
            dut.host_we.value = 0
            dut.host_sel.value = self.random.randrange(1 << len(dut.host_sel))
            dut.host_addr.value = self.random.randrange(1 << len(dut.host_addr))
            dut.host_wdata.value = self.random.randrange(1 << len(dut.host_wdata))
            await FallingEdge(dut.clk)

    async def write(self, select, address, value):
        await self.idle()
        dut = self.dut
        dut.host_sel.value = select
        dut.host_addr.value = address
        dut.host_wdata.value = value
        dut.host_we.value = 1
        await FallingEdge(dut.clk)

    async def read(self, select, address):
        await self.idle()
        dut = self.dut
        dut.host_sel.value = select
        dut.host_addr.value = address
        dut.host_we.value = 0
        await FallingEdge(dut.clk)
        return int(dut.host_rdata.value)

    async def read_back(self, memories, registers):
        """Read back every word of ``memories`` (``{name: [word, ...]}``, from address 0) and every register of
        ``registers`` (``{name: value}``) that the host wrote, as ``docs/core.md``'s host interface promises:
        the first that reads otherwise, as a line naming it, or None when all read as written."""
        for memory, words in memories.items():
            for address, word in enumerate(words):
                value = await self.read_memory(memory, address)
                if value != word:
                    return f"{memory} word {address} reads {value:#x}, {word:#x} was written"
        for register, word in registers.items():
            value = await self.read_register(register)
            if value != word:
                return f"register {register} reads {value:#x}, {word:#x} was written"
        return None

    async def coverage(self, path, before):
        """The simulation top's coverage counters (written to ``path`` on a rising ``coverage_dump``), less
        those of ``before``: ``(counts since before, all counts)``, ``{name: count}`` without zeros."""
        dut = self.dut
        dut.coverage_dump.value = 1
        await FallingEdge(dut.clk)
        dut.coverage_dump.value = 0
        counts = {}
        for line in Path(path).read_text().splitlines():
            name, count = line.split()
            counts[name] = int(count)
        return {name: count - before.get(name, 0) for name, count in counts.items()
                if count != before.get(name, 0)}, counts

    async def abort_by_reset(self, after_cycles):
        """Start an inference, then assert ``rst`` for two cycles after ``after_cycles`` cycles."""
        dut = self.dut
        dut.host_we.value = 0
        dut.start.value = 1
        await FallingEdge(dut.clk)
        dut.start.value = 0
        for _ in range(after_cycles):
            await FallingEdge(dut.clk)
        assert int(dut.busy.value) == 1, "the reset was meant to land in the middle of an inference"
        dut.rst.value = 1
        for _ in range(2):
            await FallingEdge(dut.clk)
        dut.rst.value = 0

    async def run(self):
        """Pulse ``start`` and wait for ``done``; returns the busy cycles measured from simulation time, or
        ``None`` when ``done`` has not risen ``cycle_limit`` cycles after ``start`` (the core hangs)."""
        await self.idle()
        dut = self.dut
        dut.host_we.value = 0
        dut.start.value = 1
        await RisingEdge(dut.clk)  # the core samples start here; its first busy cycle follows
        started = get_sim_time(unit="ns")
        await FallingEdge(dut.clk)
        dut.start.value = 0
        if self.cycle_limit is None:
            await RisingEdge(dut.done)
        else:
            try:
                await with_timeout(RisingEdge(dut.done), self.cycle_limit * self.clock_period_ns, "ns")
            except SimTimeoutError:
                return None
        finished = get_sim_time(unit="ns")
        await FallingEdge(dut.clk)
        return round((finished - started) / self.clock_period_ns)

    async def dump(self, trace_words, state_words, files, packs):
        """The backdoor: the simulator writes the words of its physical memories that hold the first
        ``trace_words`` trace words and ``state_words`` state words to ``files`` (``$writememh``); returns
        those physical words as ints (``packs``: words per physical word of each, in a bank)."""
        dut = self.dut
        dut.dump_trace_words.value = trace_words
        dut.dump_state_words.value = state_words
        dut.dump.value = 1
        await FallingEdge(dut.clk)
        dut.dump.value = 0
        return [_read_memh(files["trace"], -(-trace_words // packs["trace"])),
                _read_memh(files["state"], -(-state_words // packs["state"]))]


def _read_stamps(handle, trace_count):
    """The ``(cycle, time in ns)`` of trace words ``0 .. trace_count - 1`` among the trace monitor's lines that
    ``handle`` has not read yet (an inference aborted by a reset wrote some before the real run rewrote them)."""
    stamps = {}
    for line in handle.read().splitlines():
        address, cycle, time_ns = (int(field) for field in line.split())
        stamps[address] = (cycle, time_ns)
    missing = [address for address in range(trace_count) if address not in stamps]
    if missing:
        raise RuntimeError(f"the trace monitor saw no write of trace word {missing[0]} ({len(missing)} missing)")
    return [stamps[address] for address in range(trace_count)]


def _read_memh(path, words):
    """The first ``words`` data words of a ``$writememh`` file (comments and address lines skipped)."""
    if words == 0:
        return []
    values = []
    for line in Path(path).read_text().splitlines():
        line = line.split("//")[0].strip()
        if line and not line.startswith("@"):
            values.append(int(line, 16))
    if len(values) < words:
        raise RuntimeError(f"{path}: {len(values)} words dumped, {words} expected")
    return values[:words]


@cocotb.test()
async def run_job(dut):
    job = json.loads(Path(os.environ[JOB_ENV]).read_text())
    # The clock runs inside the simulation top; host signals change only at its falling edges.
    host = Host(dut, job["clock_period_ns"], job["host_map"], job.get("idle_seed"), job.get("cycle_limit"))
    dut.rst.value = 1
    dut.start.value = 0
    dut.host_we.value = 0
    dut.dump.value = 0
    for _ in range(2):
        await FallingEdge(dut.clk)
    dut.rst.value = 0

    for memory, words in job["memories"].items():
        for address, word in enumerate(words):
            await host.write_memory(memory, address, word)
    await host.write_registers(job["registers"])
    misread = await host.read_back(job["memories"], job["registers"])

    results = []
    if misread:  # the host interface lost a word of the program: no inference would mean anything
        results.append({"read_back": misread})

    counted = {}  # the coverage counters after the previous inference
    stamps = open(job["stamps_file"])  # the simulator created it at time zero
    count_register = job.get("input_count_register")
    for number, pixels in enumerate([] if misread else job["inputs"]):
        for address, pixel in enumerate(pixels):
            await host.write_memory("inputs", address, pixel)
        # event input: the input's number of words (its length changes from one input to the next)
        per_input = {count_register: len(pixels)} if count_register else {}
        await host.write_registers(per_input)
        misread = await host.read_back({"inputs": pixels}, per_input)
        if misread:
            results.append({"read_back": misread})
            break
        if number == 0 and job.get("reset_after_cycles") is not None:
            await host.abort_by_reset(job["reset_after_cycles"])
            await host.write_registers(job["registers"])  # reset cleared them; the memories kept the program
            await host.write_registers(per_input)
        cycles_measured = await host.run()
        if cycles_measured is None:  # a hung core: the runner reports it, the later inputs are not run
            results.append({"hang": True, "cycle_limit": job["cycle_limit"]})
            break
        registers = await host.read_counters()
        if job.get("backdoor_files"):
            trace, state = await host.dump(registers["trace_count"], job["state_words"], job["backdoor_files"],
                                           job["dump_packs"])
        else:
            trace = [await host.read_memory("trace", a) for a in range(registers["trace_count"])]
            state = [await host.read_memory("state", word) for word in range(job["state_words"])]
        stamped = _read_stamps(stamps, registers["trace_count"])
        results.append({
            "cycles": registers["cycles"], "cycles_measured": cycles_measured, "trace": trace,
            "trace_count": registers["trace_count"],
            "trace_overflow": registers["trace_overflow"], "saturations": registers["saturations"],
            "state": state, "trace_cycles": [cycle for cycle, _ in stamped],
        })
        if job.get("waves"):  # where the events lie in this run's waveform
            results[-1]["trace_times_ns"] = [time_ns for _, time_ns in stamped]
        if job.get("coverage_file"):
            results[-1]["coverage"], counted = await host.coverage(job["coverage_file"], counted)
        with open(job["progress_file"], "a") as progress:
            progress.write(f"{number}\n")
    stamps.close()
    Path(job["result_file"]).write_text(json.dumps(results))
