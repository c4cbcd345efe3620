"""The core's controller: the schedule of ``docs/core.md`` as a finite-state machine, one state per cycle.

Every state lasts exactly one cycle (``ACC`` repeats for the ``v`` additions of an event of value ``v``), so
the ``cycles`` register equals the cycle formula of ``docs/core.md`` for every program. The controller owns
the schedule's registers and the counters of the control registers; its states drive the memories' ports
over the host interface's defaults (the host owns the ports while the core is idle,
:func:`spikecore.rtl.core.connect_host`), and the :class:`spikecore.rtl.datapath.Datapath` feeds the arithmetic
units from the memories.
"""
from __future__ import annotations

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
    """

    def __init__(self, arch: ArchConfig, read: dict, write: dict, registers: dict, ac_array, neuron_update):
        self.arch, self.read, self.write, self.registers = arch, read, write, registers
        self.ac_array, self.neuron_update = ac_array, neuron_update
        self.idle = Signal()
        self.done = Signal()
        self.start = Signal()
        self.add_registers(arch)
        self.datapath = Datapath(arch, self, read, ac_array, neuron_update)

    def add_registers(self, arch: ArchConfig) -> None:
        """The schedule's registers: where it is and what it holds."""
        events_per_region, steps = arch.memories.events, arch.update_steps
        self.clear_word = Signal(arch.addr_bits("state") + 1 + (max(steps, arch.acc_slots) - 1).bit_length())
        self.pixel = Signal(arch.addr_bits("inputs") + 1)
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
        with m.FSM(name="schedule"):
            self.start_states(m)
            self.accumulate_states(m)
            self.update_states(m)
            self.emit_states(m)

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
        m.next = "URD"

    def next_group(self, m: Module) -> None:
        """Layer-major: the next group (its update steps and timesteps start from 0)."""
        self.next_block(m)
        m.next = "URD"

    def finish(self, m: Module) -> None:
        m.d.sync += self.done.eq(1)
        m.next = "IDLE"

    # ---- the states -----------------------------------------------------------------------------------
    def start_states(self, m: Module) -> None:
        """IDLE, CLEAR (the used accumulator and state words) and SCAN (the input image into region 0)."""
        arch, registers, read, write = self.arch, self.registers, self.read, self.write
        steps, slots = arch.update_steps, arch.acc_slots
        with m.State("IDLE"):
            m.d.comb += self.idle.eq(1)
            with m.If(self.start):
                m.d.sync += [
                    self.done.eq(0), registers["cycles"].eq(0), registers["trace_count"].eq(0),
                    registers["trace_overflow"].eq(0), registers["saturations"].eq(0),
                    self.clear_word.eq(0), self.pixel.eq(0), self.timestep.eq(0), self.layer.eq(0), self.step.eq(0),
                ]
                m.d.sync += [self.event_counts[region].eq(0) for region in range(arch.event_regions)]
                with m.If(registers["state_rows"] != 0):
                    m.next = "CLEAR"
                with m.Else():
                    m.next = "SCAN"

        with m.State("CLEAR"):
            # every used state word (steps per row) and accumulator word (slots per row) at once
            state_rows = registers["state_rows"]
            m.d.comb += [write["state"].addr.eq(self.clear_word), write["state"].data.eq(0),
                         write["state"].en.eq(self.clear_word < state_rows * steps),
                         write["acc"].addr.eq(self.clear_word), write["acc"].data.eq(0),
                         write["acc"].en.eq(self.clear_word < state_rows * slots)]
            m.d.sync += self.clear_word.eq(self.clear_word + 1)
            with m.If(self.clear_word + 1 == state_rows * max(steps, slots)):
                m.next = "SCAN"

        with m.State("SCAN"):
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
                    m.next = "DESC"

    def accumulate_states(self, m: Module) -> None:
        """DESC, LATCH (a pass's descriptor), then per input event EV, PTR, FAN and per synapse row SYN, WRD,
        (layer-major: ARD) and ACC: the event's value added into the accumulators of the row."""
        arch, read, write = self.arch, self.read, self.write
        layer_major, descriptor = arch.layer_major, self.descriptor
        with m.State("DESC"):
            m.d.comb += [read["layers"].addr.eq(self.layer), read["layers"].en.eq(1)]
            m.next = "LATCH"

        with m.State("LATCH"):
            m.d.sync += [descriptor.eq(read["layers"].data), self.event.eq(0), self.group.eq(0), self.block.eq(0)]
            with m.If(read["layers"].data.update):
                m.d.sync += self.event_counts[read["layers"].data.out_region].eq(0)
            m.next = "EV"

        with m.State("EV"):
            with m.If(self.event == self.event_counts[descriptor.in_region]):
                with m.If(descriptor.update):
                    m.next = "URD"
                with m.Else():
                    m.next = "NEXT"
            with m.Else():
                m.d.comb += [
                    read["events"].addr.eq(descriptor.in_region * arch.memories.events + self.event),
                    read["events"].en.eq(1),
                ]
                m.next = "PTR"

        with m.State("PTR"):
            m.d.comb += [
                read["pointers"].addr.eq(descriptor.ptr_base + read["events"].data.index),
                read["pointers"].en.eq(1),
            ]
            if layer_major:
                m.d.sync += self.event_train.eq(read["events"].data.train)
            else:
                m.d.sync += self.event_value.eq(read["events"].data.value)
            m.next = "FAN"

        with m.State("FAN"):
            m.d.sync += [
                self.fanout_start.eq(read["pointers"].data.start),
                self.fanout_count.eq(read["pointers"].data.count),
                self.synapse.eq(0),
            ]
            m.next = "SYN"

        with m.State("SYN"):
            with m.If(self.synapse == self.fanout_count):
                m.d.sync += self.event.eq(self.event + 1)
                m.next = "EV"
            with m.Else():
                m.d.comb += [read["synapses"].addr.eq(self.fanout_start + self.synapse), read["synapses"].en.eq(1)]
                if layer_major:
                    m.d.sync += self.timesteps_pending.eq(Cat(self.event_train[t] != 0
                                                              for t in range(arch.max_timesteps)))
                m.next = "WRD"

        with m.State("WRD"):
            m.d.comb += [read["weights"].addr.eq(read["synapses"].data.wrow), read["weights"].en.eq(1)]
            m.d.sync += self.acc_row.eq(read["synapses"].data.row)
            if layer_major:
                self.accumulate_timestep(m, read["synapses"].data.row)
            else:
                m.d.comb += [read["acc"].addr.eq(read["synapses"].data.row), read["acc"].en.eq(1)]
                m.d.sync += [self.repeat.eq(1), self.remaining.eq(self.event_value)]
            m.next = "ACC"

        if layer_major:
            with m.State("ARD"):
                # the synapse row's next timestep: its accumulator word, the same weight word
                self.accumulate_timestep(m, self.acc_row)
                m.next = "ACC"

        with m.State("ACC"):
            # One addition of the event's value; the sum stays in acc_partial until the last.
            m.d.sync += self.pending_saturations.eq(self.ac_array.saturation_count)
            with m.If(self.datapath.last_addition):
                m.d.comb += [
                    write["acc"].addr.eq(Cat(self.acc_timestep, self.acc_row) if layer_major else self.acc_row),
                    write["acc"].data.acc.eq(self.ac_array.acc_out), write["acc"].en.eq(1),
                ]
                if layer_major:
                    with m.If(self.timesteps_pending != 0):
                        m.next = "ARD"
                    with m.Else():
                        m.d.sync += self.synapse.eq(self.synapse + 1)
                        m.next = "SYN"
                else:
                    m.d.sync += self.synapse.eq(self.synapse + 1)
                    m.next = "SYN"
            with m.Else():
                m.d.sync += [self.acc_partial.eq(self.ac_array.acc_out), self.repeat.eq(self.repeat + 1),
                             self.remaining.eq(self.remaining & (self.remaining - 1))]

    def update_states(self, m: Module) -> None:
        """URD, USUM (a split update's registered sums) and UWR: per group and update step (layer-major: and
        timestep), the neuron unit's update of the step's lanes."""
        arch, read, write, datapath = self.arch, self.read, self.write, self.datapath
        steps, update_lanes, neuron_update = arch.update_steps, arch.neurons_per_update, self.neuron_update
        with m.State("URD"):
            with m.If(self.group == self.descriptor.n_groups):
                m.next = "NEXT"
            with m.Else():
                # the accumulator word (of the timestep) stays on its port for the group's steps
                m.d.comb += [
                    read["acc"].addr.eq(datapath.acc_update_word), read["acc"].en.eq(self.step == 0),
                    read["state"].addr.eq(datapath.state_word), read["state"].en.eq(1),
                    read["params"].addr.eq(datapath.param_word), read["params"].en.eq(1),
                ]
                m.next = "USUM" if steps > 1 else "UWR"

        if steps > 1:
            with m.State("USUM"):
                # the split update's registered level sums (NeuronUpdate(registered=True))
                m.d.comb += datapath.updating.eq(1)
                m.next = "UWR"

        with m.State("UWR"):
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
                    m.next = "URD"
                with m.Elif(self.timestep + 1 != self.registers["timesteps"]):
                    m.d.sync += [self.step.eq(0), self.timestep.eq(self.timestep + 1)]
                    m.next = "URD"
                with m.Else():
                    m.d.sync += [self.step.eq(0), self.timestep.eq(0)]
                    with m.If(fired | datapath.pending_lanes.any()):
                        m.next = "EMIT"
                    with m.Else():
                        self.next_group(m)
            else:
                m.d.sync += self.spike_counts.eq(neuron_update.value)
                with m.If(fired):
                    m.next = "EMIT"
                with m.Else():
                    self.next_step(m)

    def emit_states(self, m: Module) -> None:
        """EMIT (one event per pending lane, into the pass's output region and the trace) and NEXT (the next
        pass, the next timestep, or the end of the run)."""
        arch, registers, write, datapath = self.arch, self.registers, self.write, self.datapath
        layer_major, lane = arch.layer_major, datapath.first_pending_lane
        with m.State("EMIT"):
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

        with m.State("NEXT"):
            with m.If(self.layer + 1 == registers["n_layers"]):
                m.d.sync += self.layer.eq(0)
                # layer-major: the last pass has run every timestep
                with m.If((self.timestep + 1 == registers["timesteps"]) | layer_major):
                    self.finish(m)
                with m.Else():
                    m.d.sync += self.timestep.eq(self.timestep + 1)
                    m.next = "DESC"
            with m.Else():
                m.d.sync += self.layer.eq(self.layer + 1)
                m.next = "DESC"
