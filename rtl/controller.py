"""The core's controller: the schedule of ``docs/core.md`` as a finite-state machine, one state per cycle.

Every state lasts exactly one cycle (``ACC`` repeats for the ``v`` additions of an event of value ``v``), so
the ``cycles`` register equals the cycle formula of ``docs/core.md`` for every program. The controller owns
the schedule's registers and the counters of the control registers; its states drive the memories' ports
over the host interface's defaults (the host owns the ports while the core is idle,
:func:`spikecore.rtl.core.connect_host`), and the :class:`spikecore.rtl.datapath.Datapath` feeds the arithmetic
units from the memories.

With ``arch.event_input`` (``docs/core.md``, "Event input") the input is a list of input events, one word
``(value, index, timestep)`` each, sorted by timestep, that the host writes into the inputs memory (and their
number into ``n_inputs``) instead of a pixel image: ``SCAN`` runs at the start of every timestep instead of
once, and takes that timestep's words only (region 0 then holds frame ``t``'s nonzero values during timestep
``t``); ``NEXT`` after a timestep's last pass goes to ``SCAN`` instead of ``DESC``. Without it the generated
Verilog is that of a core without the option, byte for byte.
"""
from __future__ import annotations

from contextlib import contextmanager

from amaranth.hdl import Array, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data

from spikecore.accel.contract.config import ArchConfig
from spikecore.accel.contract.layouts import KIND_NEURON, REGION_INPUT

from .datapath import Datapath
from .layouts import memory_layouts


class Controller:
    """The schedule's registers and states, added to the core's module by :meth:`elaborate`.

    Parameters
    ----------
    arch : accel.contract.config.ArchConfig
    read, write : dict
        ``{memory: port}``, the core's read and write ports (:func:`spikecore.rtl.banks.memory_ports`).
    registers : dict
        ``{name: Signal}``, the control registers (:data:`spikecore.rtl.hostmap.HOST_MAP`); the controller
        counts ``cycles``, ``trace_count``, ``trace_overflow`` and ``saturations`` and reads the others.
    ac_array, neuron_update : spikecore.rtl.components.AcArray, spikecore.rtl.components.NeuronUpdate

    Attributes
    ----------
    idle : Signal(1), out
        High in the ``IDLE`` state (the host owns the memories' ports and the control registers).
    done : Signal(1), out
        High from the end of a run until the next ``start``.
    start : Signal(1), in
        Sampled while idle: begin an inference.
    fsm : amaranth.hdl.FSM
        After :meth:`elaborate`: the schedule's state machine; ``fsm.encoding`` maps each state's name to its
        value of ``fsm.state``, the state register (``schedule_state`` in the netlist).
    transitions : dict
        After :meth:`elaborate`: ``{(from state, to state): None}``, every transition the states may take, in
        the order written, a state that may last several cycles included as ``(state, state)`` (recorded by
        :meth:`goto` and :meth:`holds`; the functional coverage, :mod:`spikecore.rtl.coverage`, counts them).
    """

    def __init__(self, arch: ArchConfig, read: dict, write: dict, registers: dict, ac_array, neuron_update):
        self.arch, self.read, self.write, self.registers = arch, read, write, registers
        self.ac_array, self.neuron_update = ac_array, neuron_update
        self.idle = Signal()
        self.done = Signal()
        self.start = Signal()
        self.transitions, self.current_state = {}, None
        self.add_registers(arch)
        self.datapath = Datapath(arch, self, read, ac_array, neuron_update)

    def add_registers(self, arch: ArchConfig) -> None:
        """The schedule's registers: where it is and what it holds."""
        events_per_region, steps = arch.memories.events, arch.update_steps
        self.clear_word = Signal(arch.addr_bits("state") + 1 + (max(steps, arch.acc_slots) - 1).bit_length())
        self.pixel = Signal(arch.addr_bits("inputs") + 1)
        if arch.event_input:
            # the scan presented the word at ``pixel`` one cycle ago (it is on the inputs memory's read port)
            self.primed = Signal()
        self.timestep = Signal(arch.timestep_bits + 1)
        self.layer = Signal(arch.addr_bits("layers") + 1)
        self.event = Signal(range(events_per_region + 1))
        self.event_counts = Array(Signal(range(events_per_region + 1), name=f"event_count{region}")
                                  for region in range(arch.event_regions))
        self.descriptor = Signal(memory_layouts(arch)["layers"])
        self.event_value = Signal(arch.value_bits)
        self.fanout_start = Signal(arch.addr_bits("synapses"))
        self.fanout_count = Signal(arch.fanout_bits)
        self.synapse = Signal(arch.fanout_bits)
        self.acc_row = Signal(arch.addr_bits("state"))
        self.repeat = Signal(arch.value_bits)          # repeat mode: number of the current addition
        self.remaining = Signal(arch.value_bits)       # bit-serial mode: bits of the value still to add
        self.acc_partial = Signal.like(self.ac_array.acc_out)
        self.group = Signal(arch.addr_bits("state") + 1)
        self.step = Signal(range(steps))               # update step within the group (its lanes step*U ..)
        self.pending_saturations = Signal(range(max(arch.lanes, arch.neurons_per_update * arch.max_levels) + 1))
        self.block = Signal(arch.addr_bits("params") + 1)
        self.spike_counts = Signal.like(self.neuron_update.value)
        if arch.layer_major:
            # the event being accumulated: its value per timestep, the timesteps still to add, the current one
            self.train_shape = data.ArrayLayout(unsigned(arch.value_bits), arch.max_timesteps)
            self.event_train = Signal(self.train_shape)
            self.timesteps_pending = Signal(arch.max_timesteps)
            self.acc_timestep = Signal(arch.timestep_bits)
            # the group's outputs over the pass's timesteps, emitted after the last one
            self.group_trains = Signal(data.ArrayLayout(self.train_shape, arch.lanes))

    @property
    def last_step(self):
        return self.step == self.arch.update_steps - 1

    def elaborate(self, m: Module) -> None:
        """Add the counters, the datapath and the schedule's states to the core's module ``m`` (after the host
        interface: the states override its defaults of the memories' ports)."""
        registers = self.registers
        with m.If(~self.idle):
            m.d.sync += registers["cycles"].eq(registers["cycles"] + 1)
        # Saturation events are counted one cycle late: the 32-bit addition then starts from registers, off
        # the path from the controller's state through the arithmetic units (the core's longest otherwise).
        # A run ends at least one cycle after its last addition or update, so the count is complete at done.
        m.d.sync += [registers["saturations"].eq(registers["saturations"] + self.pending_saturations),
                     self.pending_saturations.eq(0)]
        self.datapath.elaborate(m)
        with m.FSM(name="schedule") as self.fsm:
            self.start_states(m)
            self.accumulate_states(m)
            self.update_states(m)
            self.emit_states(m)

    # ---- the states' declarations: every transition goes through these, so the coverage knows them ------
    @contextmanager
    def state(self, m: Module, name: str):
        """``m.State(name)``, the state whose transitions :meth:`goto` and :meth:`holds` record."""
        with m.State(name):
            self.current_state = name
            yield
        self.current_state = None

    def goto(self, m: Module, target: str) -> None:
        """``m.next = target`` from the current state, recorded in :attr:`transitions`."""
        self.transitions[(self.current_state, target)] = None
        m.next = target

    def holds(self) -> None:
        """Record that the current state may last more than one cycle (a path through it sets no next state)."""
        self.transitions[(self.current_state, self.current_state)] = None

    # ---- helpers of the states ------------------------------------------------------------------------
    def append_event(self, m: Module, region, index, payload) -> None:
        """Write (index, value) (layer-major: (index, train)) after the last event of ``region``; a full
        region drops the event."""
        events, per_region = self.write["events"], self.arch.memories.events
        count = self.event_counts[region]
        with m.If(count < per_region):
            m.d.comb += [
                events.addr.eq(region * per_region + count),
                events.data.index.eq(index),
                (events.data.train if self.arch.layer_major else events.data.value).eq(payload),
                events.en.eq(1),
            ]
            m.d.sync += count.eq(count + 1)

    def accumulate_timestep(self, m: Module, row) -> None:
        """Layer-major: start the additions of the event's first pending timestep into its accumulator word
        of row ``row`` (read now); the weight word stays on its port for all of them."""
        timestep = self.datapath.first_pending_timestep
        value = self.event_train[timestep]
        m.d.comb += [self.read["acc"].addr.eq(Cat(timestep, row)), self.read["acc"].en.eq(1)]
        pending = self.timesteps_pending
        m.d.sync += [self.acc_timestep.eq(timestep), self.event_value.eq(value), self.remaining.eq(value),
                     self.repeat.eq(1), pending.eq(pending & (pending - 1))]

    def next_block(self, m: Module) -> None:
        """The next group, and its params block."""
        m.d.sync += self.group.eq(self.group + 1)
        m.d.sync += self.block.eq(Mux(self.block + 1 == self.descriptor.n_blocks, 0, self.block + 1))

    def next_step(self, m: Module) -> None:
        """The group's next update step, or the next group."""
        m.d.sync += self.step.eq(Mux(self.last_step, 0, self.step + 1))
        with m.If(self.last_step):
            self.next_block(m)
        self.goto(m, "URD")

    def next_group(self, m: Module) -> None:
        """Layer-major: the next group (its update steps and timesteps start from 0)."""
        self.next_block(m)
        self.goto(m, "URD")

    def finish(self, m: Module) -> None:
        m.d.sync += self.done.eq(1)
        self.goto(m, "IDLE")

    # ---- the states -----------------------------------------------------------------------------------
    def start_states(self, m: Module) -> None:
        """IDLE, CLEAR (the used accumulator and state words) and SCAN (the input image into region 0; with
        event input, :meth:`event_scan`: the timestep's input events, at the start of every timestep)."""
        arch, registers, read, write = self.arch, self.registers, self.read, self.write
        steps, slots = arch.update_steps, arch.acc_slots
        with self.state(m, "IDLE"):
            self.holds()  # until start
            m.d.comb += self.idle.eq(1)
            with m.If(self.start):
                m.d.sync += [
                    self.done.eq(0), registers["cycles"].eq(0), registers["trace_count"].eq(0),
                    registers["trace_overflow"].eq(0), registers["saturations"].eq(0),
                    self.clear_word.eq(0), self.pixel.eq(0), self.timestep.eq(0), self.layer.eq(0), self.step.eq(0),
                ]
                m.d.sync += [self.event_counts[region].eq(0) for region in range(arch.event_regions)]
                if arch.event_input:
                    m.d.sync += self.primed.eq(0)
                with m.If(registers["state_rows"] != 0):
                    self.goto(m, "CLEAR")
                with m.Else():
                    self.goto(m, "SCAN")

        with self.state(m, "CLEAR"):
            self.holds()  # a cycle per word
            # every used state word (steps per row) and accumulator word (slots per row) at once
            state_rows = registers["state_rows"]
            m.d.comb += [write["state"].addr.eq(self.clear_word), write["state"].data.eq(0),
                         write["state"].en.eq(self.clear_word < state_rows * steps),
                         write["acc"].addr.eq(self.clear_word), write["acc"].data.eq(0),
                         write["acc"].en.eq(self.clear_word < state_rows * slots)]
            m.d.sync += self.clear_word.eq(self.clear_word + 1)
            with m.If(self.clear_word + 1 == state_rows * max(steps, slots)):
                self.goto(m, "SCAN")

        if arch.event_input:
            self.event_scan(m)
            return
        with self.state(m, "SCAN"):
            self.holds()  # a cycle per pixel
            # Present pixel i; the pixel presented one cycle earlier (i - 1) is on the read port now.
            m.d.comb += [read["inputs"].addr.eq(self.pixel), read["inputs"].en.eq(1)]
            previous_value = read["inputs"].data.value
            with m.If((self.pixel != 0) & (previous_value != 0)):
                if arch.layer_major:  # the pixel at every timestep of the run
                    pixel_train = Signal(self.train_shape)
                    m.d.comb += [pixel_train[t].eq(Mux(t < registers["timesteps"], previous_value, 0))
                                 for t in range(arch.max_timesteps)]
                    self.append_event(m, REGION_INPUT, self.pixel - 1, pixel_train)
                else:
                    self.append_event(m, REGION_INPUT, self.pixel - 1, previous_value)
            m.d.sync += self.pixel.eq(self.pixel + 1)
            with m.If(self.pixel == registers["n_inputs"]):
                with m.If((registers["n_layers"] == 0) | (registers["timesteps"] == 0)):
                    self.finish(m)
                with m.Else():
                    self.goto(m, "DESC")

    def event_scan(self, m: Module) -> None:
        """SCAN with event input, at the start of every timestep ``t``: ``w_t + 2`` cycles for the ``w_t`` words of
        timestep ``t``.

        The word cursor ``pixel`` runs on over the inference's words (0 at start, never reset between
        timesteps). With ``primed`` low the scan presents the word at ``pixel`` and resets region 0's event
        count; then, each cycle, the word at ``pixel`` is on the read port: while ``pixel < n_inputs`` and its
        timestep is ``t``, it is taken (appended as ``(index, value)`` to region 0 when its value is nonzero) and
        the next one presented; the first word that is not (the next timestep's, or none left) ends the scan,
        ``primed`` low again, to ``DESC`` (or the end of the run when ``n_layers`` or ``timesteps`` is 0).
        Words out of timestep order (the host sorts them) end the input there."""
        registers, read = self.registers, self.read
        with self.state(m, "SCAN"):
            self.holds()  # a cycle per word of the timestep, and two more
            word = read["inputs"].data
            with m.If(~self.primed):
                m.d.comb += [read["inputs"].addr.eq(self.pixel), read["inputs"].en.eq(1)]
                m.d.sync += [self.primed.eq(1), self.event_counts[REGION_INPUT].eq(0)]
            with m.Elif((self.pixel < registers["n_inputs"]) & (word.timestep == self.timestep)):
                with m.If(word.value != 0):
                    self.append_event(m, REGION_INPUT, word.index, word.value)
                m.d.comb += [read["inputs"].addr.eq(self.pixel + 1), read["inputs"].en.eq(1)]
                m.d.sync += self.pixel.eq(self.pixel + 1)
            with m.Else():
                m.d.sync += self.primed.eq(0)
                with m.If((registers["n_layers"] == 0) | (registers["timesteps"] == 0)):
                    self.finish(m)
                with m.Else():
                    self.goto(m, "DESC")

    def accumulate_states(self, m: Module) -> None:
        """DESC, LATCH (a pass's descriptor), then per input event EV, PTR, FAN and per synapse row SYN, WRD,
        (layer-major: ARD) and ACC: the event's value added into the accumulators of the row."""
        arch, read, write = self.arch, self.read, self.write
        layer_major, descriptor = arch.layer_major, self.descriptor
        with self.state(m, "DESC"):
            m.d.comb += [read["layers"].addr.eq(self.layer), read["layers"].en.eq(1)]
            self.goto(m, "LATCH")

        with self.state(m, "LATCH"):
            m.d.sync += [descriptor.eq(read["layers"].data), self.event.eq(0), self.group.eq(0), self.block.eq(0)]
            with m.If(read["layers"].data.update):
                m.d.sync += self.event_counts[read["layers"].data.out_region].eq(0)
            self.goto(m, "EV")

        with self.state(m, "EV"):
            with m.If(self.event == self.event_counts[descriptor.in_region]):
                with m.If(descriptor.update):
                    self.goto(m, "URD")
                with m.Else():
                    self.goto(m, "NEXT")
            with m.Else():
                m.d.comb += [
                    read["events"].addr.eq(descriptor.in_region * arch.memories.events + self.event),
                    read["events"].en.eq(1),
                ]
                self.goto(m, "PTR")

        with self.state(m, "PTR"):
            m.d.comb += [
                read["pointers"].addr.eq(descriptor.ptr_base + read["events"].data.index),
                read["pointers"].en.eq(1),
            ]
            if layer_major:
                m.d.sync += self.event_train.eq(read["events"].data.train)
            else:
                m.d.sync += self.event_value.eq(read["events"].data.value)
            self.goto(m, "FAN")

        with self.state(m, "FAN"):
            m.d.sync += [
                self.fanout_start.eq(read["pointers"].data.start),
                self.fanout_count.eq(read["pointers"].data.count),
                self.synapse.eq(0),
            ]
            self.goto(m, "SYN")

        with self.state(m, "SYN"):
            with m.If(self.synapse == self.fanout_count):
                m.d.sync += self.event.eq(self.event + 1)
                self.goto(m, "EV")
            with m.Else():
                m.d.comb += [read["synapses"].addr.eq(self.fanout_start + self.synapse), read["synapses"].en.eq(1)]
                if layer_major:
                    m.d.sync += self.timesteps_pending.eq(Cat(self.event_train[t] != 0
                                                              for t in range(arch.max_timesteps)))
                self.goto(m, "WRD")

        with self.state(m, "WRD"):
            m.d.comb += [read["weights"].addr.eq(read["synapses"].data.wrow), read["weights"].en.eq(1)]
            m.d.sync += self.acc_row.eq(read["synapses"].data.row)
            if layer_major:
                self.accumulate_timestep(m, read["synapses"].data.row)
            else:
                m.d.comb += [read["acc"].addr.eq(read["synapses"].data.row), read["acc"].en.eq(1)]
                m.d.sync += [self.repeat.eq(1), self.remaining.eq(self.event_value)]
            self.goto(m, "ACC")

        if layer_major:
            with self.state(m, "ARD"):
                # the synapse row's next timestep: its accumulator word, the same weight word
                self.accumulate_timestep(m, self.acc_row)
                self.goto(m, "ACC")

        with self.state(m, "ACC"):
            self.holds()  # an addition per cycle
            # One addition of the event's value; the sum stays in acc_partial until the last.
            m.d.sync += self.pending_saturations.eq(self.ac_array.saturation_count)
            with m.If(self.datapath.last_addition):
                m.d.comb += [
                    write["acc"].addr.eq(Cat(self.acc_timestep, self.acc_row) if layer_major else self.acc_row),
                    write["acc"].data.acc.eq(self.ac_array.acc_out), write["acc"].en.eq(1),
                ]
                if layer_major:
                    with m.If(self.timesteps_pending != 0):
                        self.goto(m, "ARD")
                    with m.Else():
                        m.d.sync += self.synapse.eq(self.synapse + 1)
                        self.goto(m, "SYN")
                else:
                    m.d.sync += self.synapse.eq(self.synapse + 1)
                    self.goto(m, "SYN")
            with m.Else():
                m.d.sync += [self.acc_partial.eq(self.ac_array.acc_out), self.repeat.eq(self.repeat + 1),
                             self.remaining.eq(self.remaining & (self.remaining - 1))]

    def update_states(self, m: Module) -> None:
        """URD, USUM (a split update's registered sums) and UWR: per group and update step (layer-major: and
        timestep), the neuron unit's update of the step's lanes."""
        arch, read, write, datapath = self.arch, self.read, self.write, self.datapath
        steps, update_lanes, neuron_update = arch.update_steps, arch.neurons_per_update, self.neuron_update
        with self.state(m, "URD"):
            with m.If(self.group == self.descriptor.n_groups):
                self.goto(m, "NEXT")
            with m.Else():
                # the accumulator word (of the timestep) stays on its port for the group's steps
                m.d.comb += [
                    read["acc"].addr.eq(datapath.acc_update_word), read["acc"].en.eq(self.step == 0),
                    read["state"].addr.eq(datapath.state_word), read["state"].en.eq(1),
                    read["params"].addr.eq(datapath.param_word), read["params"].en.eq(1),
                ]
                self.goto(m, "USUM" if steps > 1 else "UWR")

        if steps > 1:
            with self.state(m, "USUM"):
                # the split update's registered level sums (NeuronUpdate(registered=True))
                m.d.comb += datapath.updating.eq(1)
                self.goto(m, "UWR")

        with self.state(m, "UWR"):
            m.d.comb += datapath.updating.eq(steps == 1)
            m.d.comb += [
                write["state"].addr.eq(datapath.state_word), write["state"].data.u.eq(neuron_update.membrane_next),
                write["state"].en.eq(self.descriptor.kind == KIND_NEURON),
                write["acc"].addr.eq(datapath.acc_update_word), write["acc"].data.eq(0),
                write["acc"].en.eq(self.descriptor.clear_acc & self.last_step),
            ]
            m.d.sync += self.pending_saturations.eq(neuron_update.saturation_count)
            fired = Cat(neuron_update.value[lane] != 0 for lane in range(update_lanes)).any()
            if arch.layer_major:
                # the group's next step, its next timestep, or its events (one per lane that fired at all)
                m.d.sync += [self.group_trains[self.step * update_lanes + lane][self.timestep].eq(
                    neuron_update.value[lane]) for lane in range(update_lanes)]
                with m.If(~self.last_step):
                    m.d.sync += self.step.eq(self.step + 1)
                    self.goto(m, "URD")
                with m.Elif(self.timestep + 1 != self.registers["timesteps"]):
                    m.d.sync += [self.step.eq(0), self.timestep.eq(self.timestep + 1)]
                    self.goto(m, "URD")
                with m.Else():
                    m.d.sync += [self.step.eq(0), self.timestep.eq(0)]
                    with m.If(fired | datapath.pending_lanes.any()):
                        self.goto(m, "EMIT")
                    with m.Else():
                        self.next_group(m)
            else:
                m.d.sync += self.spike_counts.eq(neuron_update.value)
                with m.If(fired):
                    self.goto(m, "EMIT")
                with m.Else():
                    self.next_step(m)

    def emit_states(self, m: Module) -> None:
        """EMIT (one event per pending lane, into the pass's output region and the trace) and NEXT (the next
        pass, the next timestep (with event input: its SCAN first), or the end of the run)."""
        arch, registers, write, datapath = self.arch, self.registers, self.write, self.datapath
        layer_major, lane = arch.layer_major, datapath.first_pending_lane
        with self.state(m, "EMIT"):
            if (arch.lanes if layer_major else arch.neurons_per_update) > 1:
                self.holds()  # an event per cycle, while lanes of the group (of the step) are pending
            if layer_major:
                index = Cat(lane, self.group)
                payload = self.group_trains[lane]
            else:
                index = Cat(lane, self.step, self.group)
                payload = self.spike_counts[lane]
            self.append_event(m, self.descriptor.out_region, index, payload)
            trace_count = registers["trace_count"]
            with m.If(trace_count < arch.memories.trace):
                m.d.comb += [
                    write["trace"].addr.eq(trace_count),
                    write["trace"].data.layer.eq(self.layer),
                    write["trace"].data.index.eq(index),
                    write["trace"].en.eq(1),
                ]
                if layer_major:
                    m.d.comb += write["trace"].data.train.eq(payload)
                else:
                    m.d.comb += [write["trace"].data.timestep.eq(self.timestep), write["trace"].data.value.eq(payload)]
                m.d.sync += trace_count.eq(trace_count + 1)
            with m.Else():
                m.d.sync += registers["trace_overflow"].eq(1)
            m.d.sync += payload.eq(0)
            # Clearing the lowest set bit leaves the lanes still to emit after this one.
            with m.If((datapath.pending_lanes & (datapath.pending_lanes - 1)) == 0):
                if layer_major:
                    self.next_group(m)
                else:
                    self.next_step(m)

        with self.state(m, "NEXT"):
            with m.If(self.layer + 1 == registers["n_layers"]):
                m.d.sync += self.layer.eq(0)
                # layer-major: the last pass has run every timestep
                with m.If((self.timestep + 1 == registers["timesteps"]) | layer_major):
                    self.finish(m)
                with m.Else():
                    m.d.sync += self.timestep.eq(self.timestep + 1)
                    self.goto(m, "SCAN" if arch.event_input else "DESC")
            with m.Else():
                m.d.sync += self.layer.eq(self.layer + 1)
                self.goto(m, "DESC")
