"""The whole core: memories, controller, control registers and host interface (``docs/core.md``).

Every state of the controller lasts exactly one cycle (``ACC`` repeats for the ``v`` additions of an
event of value ``v``), so the ``cycles`` register equals the cycle formula of ``docs/core.md`` for every
program. All memories have one synchronous read port (data valid the cycle after the address) and one
write port; the memories of a bank (``ArchConfig.banks``) share one single-port memory, which the
schedule never accesses twice in a cycle. While the core is idle the host owns the read addresses and
the write ports of the memories it may write.
"""
from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from accel.config import ArchConfig
from accel.layouts import KIND_NEURON, REGION_INPUT, memory_depths, physical_memories

from .components import AcArray, NeuronUpdate
from .layouts import memory_layouts

# Values of ``host_sel``: 0 selects the control registers, the others one memory each.
HOST_SELECT = {
    "layers": 1, "pointers": 2, "synapses": 3, "weights": 4, "params": 5, "inputs": 6, "state": 7, "trace": 8,
}
HOST_CONTROL = 0
# Memories the host may write (the program and the input image); state and trace are read-only to it.
HOST_WRITABLE = ("layers", "pointers", "synapses", "weights", "params", "inputs")
# Control register addresses (host select 0); the first four are written by the host, all are readable.
REGISTERS = ("n_layers", "timesteps", "n_inputs", "state_rows", "cycles", "trace_count", "trace_overflow",
             "saturations")
REGISTER_ADDRESS = {name: address for address, name in enumerate(REGISTERS)}
# Width of the cycle and saturation counters (they wrap modulo 2**32).
COUNTER_BITS = 32


def host_addr_bits(arch: ArchConfig) -> int:
    """Width of ``host_addr``: the widest address of a host-visible memory or of the register file."""
    return max([arch.addr_bits(name) for name in HOST_SELECT] + [(len(REGISTERS) - 1).bit_length()])


def host_data_bits(arch: ArchConfig) -> int:
    """Width of ``host_wdata``/``host_rdata``: the widest host-visible word, at least one counter register."""
    layouts = memory_layouts(arch)
    return max([layouts[name].size for name in HOST_SELECT] + [COUNTER_BITS])


class Core(wiring.Component):
    """The spike-driven core for one architecture configuration.

    Parameters
    ----------
    arch : accel.config.ArchConfig
        Sizes every memory, width and lane count.

    Attributes
    ----------
    host_sel : In, 4 bits
        0 control registers, 1 layers, 2 pointers, 3 synapses, 4 weights, 5 params, 6 inputs, 7 state,
        8 trace.
    host_addr : In, ``host_addr_bits(arch)`` bits
        Word (or register) address.
    host_wdata : In, ``host_data_bits(arch)`` bits
        Write data; the low bits of the selected word are used.
    host_we : In, 1 bit
        Write strobe; ignored while ``busy``. Writable: registers 0..3 and memories 1..6.
    host_rdata : Out, ``host_data_bits(arch)`` bits
        Zero-extended data of the (``host_sel``, ``host_addr``) presented one cycle earlier.
    start : In, 1 bit
        Sampled while idle: begin an inference.
    busy : Out, 1 bit
        High while running (every cycle counted by the ``cycles`` register).
    done : Out, 1 bit
        High from the end of a run until the next ``start``.
    """

    def __init__(self, arch: ArchConfig):
        problem = None
        if not isinstance(arch, ArchConfig):
            problem = TypeError(f"arch must be an accel.config.ArchConfig, got {type(arch).__name__}")
        if problem is not None:
            self._MustUse__silence = True  # never elaborated: no "created but never used" warning
            raise problem
        self.arch = arch
        super().__init__({
            "host_sel": In(4),
            "host_addr": In(host_addr_bits(arch)),
            "host_wdata": In(host_data_bits(arch)),
            "host_we": In(1),
            "host_rdata": Out(host_data_bits(arch)),
            "start": In(1),
            "busy": Out(1),
            "done": Out(1),
        })

    def elaborate(self, platform):
        arch = self.arch
        lanes, events_per_region = arch.lanes, arch.memories.events
        layouts = memory_layouts(arch)
        depths = memory_depths(arch)
        m = Module()

        read, write = {}, {}
        for physical in physical_memories(arch):
            if physical.is_bank:
                _bank(m, physical, layouts, depths, read, write)
            else:
                (name,) = physical.members
                memory = Memory(shape=layouts[name], depth=physical.depth, init=[])
                m.submodules[f"{name}_memory"] = memory
                read[name] = memory.read_port()
                write[name] = memory.write_port()

        bitserial = arch.multivalue == "bitserial"
        m.submodules.ac_array = ac_array = AcArray(lanes, arch.acc_bits, arch.weight_bits,
                                                   arch.value_bits - 1 if bitserial else 0)
        update_lanes, steps = arch.neurons_per_update, arch.update_steps
        m.submodules.neuron_update = neuron_update = NeuronUpdate(
            update_lanes, arch.max_levels, arch.acc_bits, arch.membrane_bits, arch.value_bits,
            registered=steps > 1)

        # ---- control registers --------------------------------------------------------------------
        n_layers = Signal(arch.addr_bits("layers") + 1)
        timesteps = Signal(arch.timestep_bits + 1)
        n_inputs = Signal(arch.addr_bits("inputs") + 1)
        state_rows = Signal(arch.addr_bits("state") + 1)
        cycles = Signal(COUNTER_BITS)
        trace_count = Signal(range(arch.memories.trace + 1))
        trace_overflow = Signal()
        saturations = Signal(COUNTER_BITS)
        done = Signal()
        registers = {
            "n_layers": n_layers, "timesteps": timesteps, "n_inputs": n_inputs, "state_rows": state_rows,
            "cycles": cycles, "trace_count": trace_count, "trace_overflow": trace_overflow,
            "saturations": saturations,
        }

        # ---- controller state ---------------------------------------------------------------------
        layer_major, slots = arch.layer_major, arch.acc_slots
        clear_word = Signal(arch.addr_bits("state") + 1 + (max(steps, slots) - 1).bit_length())
        pixel = Signal(arch.addr_bits("inputs") + 1)
        timestep = Signal(arch.timestep_bits + 1)
        layer = Signal(arch.addr_bits("layers") + 1)
        event = Signal(range(events_per_region + 1))
        event_counts = Array(Signal(range(events_per_region + 1), name=f"event_count{region}")
                             for region in range(arch.event_regions))
        descriptor = Signal(layouts["layers"])
        event_value = Signal(arch.value_bits)
        fanout_start = Signal(arch.addr_bits("synapses"))
        fanout_count = Signal(arch.fanout_bits)
        synapse = Signal(arch.fanout_bits)
        acc_row = Signal(arch.addr_bits("state"))
        repeat = Signal(arch.value_bits)          # repeat mode: number of the current addition
        remaining = Signal(arch.value_bits)       # bit-serial mode: bits of the value still to add
        acc_partial = Signal.like(ac_array.acc_out)
        group = Signal(arch.addr_bits("state") + 1)
        step = Signal(range(steps))               # update step within the group (its lanes step*U ..)
        last_step = step == steps - 1
        pending_saturations = Signal(range(max(lanes, update_lanes * arch.max_levels) + 1))
        block = Signal(arch.addr_bits("params") + 1)
        spike_counts = Signal.like(neuron_update.value)
        if layer_major:
            # the event being accumulated: its value per timestep, the timesteps still to add, the current one
            train_shape = data.ArrayLayout(unsigned(arch.value_bits), arch.max_timesteps)
            event_train = Signal(train_shape)
            timesteps_pending = Signal(arch.max_timesteps)
            acc_timestep = Signal(arch.timestep_bits)
            first_pending_timestep = Signal(arch.timestep_bits)
            for t in reversed(range(arch.max_timesteps)):
                with m.If(timesteps_pending[t]):
                    m.d.comb += first_pending_timestep.eq(t)
            # the group's outputs over the pass's timesteps, emitted after the last one
            group_trains = Signal(data.ArrayLayout(train_shape, lanes))

        idle = Signal()
        updating = Signal()
        m.d.comb += [self.busy.eq(~idle), self.done.eq(done)]
        with m.If(~idle):
            m.d.sync += cycles.eq(cycles + 1)
        # Saturation events are counted one cycle late: the 32-bit addition then starts from registers, off
        # the path from the controller's state through the arithmetic units (the core's longest otherwise).
        # A run ends at least one cycle after its last addition or update, so the count is complete at done.
        m.d.sync += [saturations.eq(saturations + pending_saturations), pending_saturations.eq(0)]

        # ---- host interface -----------------------------------------------------------------------
        # Read ports follow the host while idle; the controller's states override address and enable.
        # A read is never enabled in the cycle of a write: a memory in a bank has a single port.
        for name, select in HOST_SELECT.items():
            m.d.comb += [read[name].addr.eq(self.host_addr),
                         read[name].en.eq(idle & (self.host_sel == select) & ~self.host_we)]
        for name in ("acc", "events"):
            m.d.comb += read[name].en.eq(0)
        host_rdata_select = Signal.like(self.host_sel)
        register_rdata = Signal(COUNTER_BITS)
        m.d.sync += host_rdata_select.eq(self.host_sel)
        with m.Switch(self.host_addr):
            for name, address in REGISTER_ADDRESS.items():
                with m.Case(address):
                    m.d.sync += register_rdata.eq(registers[name])
            with m.Default():
                m.d.sync += register_rdata.eq(0)
        with m.Switch(host_rdata_select):
            with m.Case(HOST_CONTROL):
                m.d.comb += self.host_rdata.eq(register_rdata)
            for name, select in HOST_SELECT.items():
                with m.Case(select):
                    m.d.comb += self.host_rdata.eq(read[name].data.as_value())

        # ---- helpers of the schedule --------------------------------------------------------------
        def append_event(region, index, payload):
            """Write (index, value) (layer-major: (index, train)) after the last event of ``region``; a full
            region drops the event."""
            count = event_counts[region]
            with m.If(count < events_per_region):
                m.d.comb += [
                    write["events"].addr.eq(region * events_per_region + count),
                    write["events"].data.index.eq(index),
                    (write["events"].data.train if layer_major else write["events"].data.value).eq(payload),
                    write["events"].en.eq(1),
                ]
                m.d.sync += count.eq(count + 1)

        def accumulate_timestep(row):
            """Layer-major: start the additions of the event's first pending timestep into its accumulator word
            of row ``row`` (read now); the weight word stays on its port for all of them."""
            value = event_train[first_pending_timestep]
            m.d.comb += [read["acc"].addr.eq(Cat(first_pending_timestep, row)), read["acc"].en.eq(1)]
            m.d.sync += [acc_timestep.eq(first_pending_timestep), event_value.eq(value), remaining.eq(value),
                         repeat.eq(1), timesteps_pending.eq(timesteps_pending & (timesteps_pending - 1))]

        def next_step():
            """The group's next update step, or the next group."""
            m.d.sync += step.eq(Mux(last_step, 0, step + 1))
            with m.If(last_step):
                m.d.sync += group.eq(group + 1)
                m.d.sync += block.eq(Mux(block + 1 == descriptor.n_blocks, 0, block + 1))
            m.next = "URD"

        def next_group():
            """Layer-major: the next group (its update steps and timesteps start from 0)."""
            m.d.sync += group.eq(group + 1)
            m.d.sync += block.eq(Mux(block + 1 == descriptor.n_blocks, 0, block + 1))
            m.next = "URD"

        def finish():
            m.d.sync += done.eq(1)
            m.next = "IDLE"

        # The arithmetic units read the memories directly; the states decide when their results count.
        # Multi-valued events: `repeat` adds the weight v times; `bitserial` adds w << b for each set bit b
        # of v, lowest first (`remaining` holds the bits still to add).
        if bitserial:
            first_addition = remaining == event_value
            last_addition = (remaining & (remaining - 1)) == 0
            lowest_bit = Signal(range(arch.value_bits))
            for bit in reversed(range(arch.value_bits)):
                with m.If(remaining[bit]):
                    m.d.comb += lowest_bit.eq(bit)
            m.d.comb += ac_array.shift.eq(lowest_bit)
        else:
            first_addition = repeat == 1
            last_addition = repeat == event_value
        m.d.comb += [
            ac_array.acc_in.eq(Mux(first_addition, read["acc"].data.acc.as_value(), acc_partial.as_value())),
            ac_array.weight.eq(read["weights"].data.w),
            neuron_update.membrane.eq(read["state"].data.u),
            # Operand isolation: the accumulator port changes on every synapse row, but the neuron unit
            # needs it only in UWR (USUM in a split update); holding its input at 0 otherwise stops it from
            # switching needlessly.
            # The accumulator row stays on its port for all the group's steps; step s takes lanes s*U ..
            neuron_update.acc.eq(Mux(updating, read["acc"].data.acc.as_value().word_select(
                step, update_lanes * arch.acc_bits) if steps > 1 else read["acc"].data.acc.as_value(), 0)),
            neuron_update.bias.eq(read["params"].data.bias),
            neuron_update.threshold.eq(read["params"].data.threshold),
            neuron_update.shift.eq(descriptor.shift),
            neuron_update.levels.eq(descriptor.levels),
            neuron_update.kind.eq(descriptor.kind),
            neuron_update.truth_table.eq(descriptor.truth_table),
        ]
        acc_group_row = descriptor.acc_base + group
        # layer-major: an accumulator row is `slots` words, one per timestep (the lowest address bits)
        acc_update_word = Cat(timestep[:arch.timestep_bits], acc_group_row) if layer_major else acc_group_row
        # A state and a params row are `steps` consecutive words (steps is a power of two).
        state_word = Cat(step, descriptor.state_base + group)
        param_word = Cat(step, descriptor.param_base + block)
        # lanes whose events are still to emit: of the update step (timestep-major) or of the group (layer-major)
        emit_lanes = lanes if layer_major else update_lanes
        pending_lanes = Cat(Value.cast(group_trains[lane] if layer_major else spike_counts[lane]) != 0
                            for lane in range(emit_lanes))
        first_pending_lane = Signal(range(emit_lanes))
        for lane in reversed(range(emit_lanes)):
            with m.If(pending_lanes[lane]):
                m.d.comb += first_pending_lane.eq(lane)

        # ---- the schedule: one state per cycle ----------------------------------------------------
        with m.FSM(name="schedule"):
            with m.State("IDLE"):
                m.d.comb += idle.eq(1)
                with m.If(self.host_we):
                    with m.Switch(self.host_sel):
                        with m.Case(HOST_CONTROL):
                            with m.Switch(self.host_addr):
                                for name in ("n_layers", "timesteps", "n_inputs", "state_rows"):
                                    with m.Case(REGISTER_ADDRESS[name]):
                                        m.d.sync += registers[name].eq(self.host_wdata)
                        for name in HOST_WRITABLE:
                            with m.Case(HOST_SELECT[name]):
                                m.d.comb += [
                                    write[name].addr.eq(self.host_addr),
                                    write[name].data.eq(self.host_wdata),
                                    write[name].en.eq(1),
                                ]
                with m.If(self.start):
                    m.d.sync += [
                        done.eq(0), cycles.eq(0), trace_count.eq(0), trace_overflow.eq(0), saturations.eq(0),
                        clear_word.eq(0), pixel.eq(0), timestep.eq(0), layer.eq(0), step.eq(0),
                    ]
                    m.d.sync += [event_counts[region].eq(0) for region in range(arch.event_regions)]
                    with m.If(state_rows != 0):
                        m.next = "CLEAR"
                    with m.Else():
                        m.next = "SCAN"

            with m.State("CLEAR"):
                # every used state word (steps per row) and accumulator word (slots per row) at once
                m.d.comb += [write["state"].addr.eq(clear_word), write["state"].data.eq(0),
                             write["state"].en.eq(clear_word < state_rows * steps),
                             write["acc"].addr.eq(clear_word), write["acc"].data.eq(0),
                             write["acc"].en.eq(clear_word < state_rows * slots)]
                m.d.sync += clear_word.eq(clear_word + 1)
                with m.If(clear_word + 1 == state_rows * max(steps, slots)):
                    m.next = "SCAN"

            with m.State("SCAN"):
                # Present pixel i; the pixel presented one cycle earlier (i - 1) is on the read port now.
                m.d.comb += [read["inputs"].addr.eq(pixel), read["inputs"].en.eq(1)]
                previous_value = read["inputs"].data.value
                with m.If((pixel != 0) & (previous_value != 0)):
                    if layer_major:  # the pixel at every timestep of the run
                        pixel_train = Signal(train_shape)
                        m.d.comb += [pixel_train[t].eq(Mux(t < timesteps, previous_value, 0))
                                     for t in range(arch.max_timesteps)]
                        append_event(REGION_INPUT, pixel - 1, pixel_train)
                    else:
                        append_event(REGION_INPUT, pixel - 1, previous_value)
                m.d.sync += pixel.eq(pixel + 1)
                with m.If(pixel == n_inputs):
                    with m.If((n_layers == 0) | (timesteps == 0)):
                        finish()
                    with m.Else():
                        m.next = "DESC"

            with m.State("DESC"):
                m.d.comb += [read["layers"].addr.eq(layer), read["layers"].en.eq(1)]
                m.next = "LATCH"

            with m.State("LATCH"):
                m.d.sync += [descriptor.eq(read["layers"].data), event.eq(0), group.eq(0), block.eq(0)]
                with m.If(read["layers"].data.update):
                    m.d.sync += event_counts[read["layers"].data.out_region].eq(0)
                m.next = "EV"

            with m.State("EV"):
                with m.If(event == event_counts[descriptor.in_region]):
                    with m.If(descriptor.update):
                        m.next = "URD"
                    with m.Else():
                        m.next = "NEXT"
                with m.Else():
                    m.d.comb += [
                        read["events"].addr.eq(descriptor.in_region * events_per_region + event),
                        read["events"].en.eq(1),
                    ]
                    m.next = "PTR"

            with m.State("PTR"):
                m.d.comb += [
                    read["pointers"].addr.eq(descriptor.ptr_base + read["events"].data.index),
                    read["pointers"].en.eq(1),
                ]
                if layer_major:
                    m.d.sync += event_train.eq(read["events"].data.train)
                else:
                    m.d.sync += event_value.eq(read["events"].data.value)
                m.next = "FAN"

            with m.State("FAN"):
                m.d.sync += [
                    fanout_start.eq(read["pointers"].data.start),
                    fanout_count.eq(read["pointers"].data.count),
                    synapse.eq(0),
                ]
                m.next = "SYN"

            with m.State("SYN"):
                with m.If(synapse == fanout_count):
                    m.d.sync += event.eq(event + 1)
                    m.next = "EV"
                with m.Else():
                    m.d.comb += [read["synapses"].addr.eq(fanout_start + synapse), read["synapses"].en.eq(1)]
                    if layer_major:
                        m.d.sync += timesteps_pending.eq(Cat(event_train[t] != 0
                                                                    for t in range(arch.max_timesteps)))
                    m.next = "WRD"

            with m.State("WRD"):
                m.d.comb += [read["weights"].addr.eq(read["synapses"].data.wrow), read["weights"].en.eq(1)]
                m.d.sync += acc_row.eq(read["synapses"].data.row)
                if layer_major:
                    accumulate_timestep(read["synapses"].data.row)
                else:
                    m.d.comb += [read["acc"].addr.eq(read["synapses"].data.row), read["acc"].en.eq(1)]
                    m.d.sync += [repeat.eq(1), remaining.eq(event_value)]
                m.next = "ACC"

            if layer_major:
                with m.State("ARD"):
                    # the synapse row's next timestep: its accumulator word, the same weight word
                    accumulate_timestep(acc_row)
                    m.next = "ACC"

            with m.State("ACC"):
                # One addition of the event's value; the sum stays in acc_partial until the last.
                m.d.sync += pending_saturations.eq(ac_array.saturation_count)
                with m.If(last_addition):
                    m.d.comb += [
                        write["acc"].addr.eq(Cat(acc_timestep, acc_row) if layer_major else acc_row),
                        write["acc"].data.acc.eq(ac_array.acc_out), write["acc"].en.eq(1),
                    ]
                    if layer_major:
                        with m.If(timesteps_pending != 0):
                            m.next = "ARD"
                        with m.Else():
                            m.d.sync += synapse.eq(synapse + 1)
                            m.next = "SYN"
                    else:
                        m.d.sync += synapse.eq(synapse + 1)
                        m.next = "SYN"
                with m.Else():
                    m.d.sync += [acc_partial.eq(ac_array.acc_out), repeat.eq(repeat + 1),
                                 remaining.eq(remaining & (remaining - 1))]

            with m.State("URD"):
                with m.If(group == descriptor.n_groups):
                    m.next = "NEXT"
                with m.Else():
                    # the accumulator word (of the timestep) stays on its port for the group's steps
                    m.d.comb += [
                        read["acc"].addr.eq(acc_update_word), read["acc"].en.eq(step == 0),
                        read["state"].addr.eq(state_word), read["state"].en.eq(1),
                        read["params"].addr.eq(param_word), read["params"].en.eq(1),
                    ]
                    m.next = "USUM" if steps > 1 else "UWR"

            if steps > 1:
                with m.State("USUM"):
                    # the split update's registered level sums (NeuronUpdate(registered=True))
                    m.d.comb += updating.eq(1)
                    m.next = "UWR"

            with m.State("UWR"):
                m.d.comb += updating.eq(steps == 1)
                m.d.comb += [
                    write["state"].addr.eq(state_word), write["state"].data.u.eq(neuron_update.membrane_next),
                    write["state"].en.eq(descriptor.kind == KIND_NEURON),
                    write["acc"].addr.eq(acc_update_word), write["acc"].data.eq(0),
                    write["acc"].en.eq(descriptor.clear_acc & last_step),
                ]
                m.d.sync += pending_saturations.eq(neuron_update.saturation_count)
                fired = Cat(neuron_update.value[lane] != 0 for lane in range(update_lanes)).any()
                if layer_major:
                    # the group's next step, its next timestep, or its events (one per lane that fired at all)
                    m.d.sync += [group_trains[step * update_lanes + lane][timestep].eq(neuron_update.value[lane])
                                 for lane in range(update_lanes)]
                    with m.If(~last_step):
                        m.d.sync += step.eq(step + 1)
                        m.next = "URD"
                    with m.Elif(timestep + 1 != timesteps):
                        m.d.sync += [step.eq(0), timestep.eq(timestep + 1)]
                        m.next = "URD"
                    with m.Else():
                        m.d.sync += [step.eq(0), timestep.eq(0)]
                        with m.If(fired | pending_lanes.any()):
                            m.next = "EMIT"
                        with m.Else():
                            next_group()
                else:
                    m.d.sync += spike_counts.eq(neuron_update.value)
                    with m.If(fired):
                        m.next = "EMIT"
                    with m.Else():
                        next_step()

            with m.State("EMIT"):
                if layer_major:
                    index = Cat(first_pending_lane, group)
                    payload = group_trains[first_pending_lane]
                else:
                    index = Cat(first_pending_lane, step, group)
                    payload = spike_counts[first_pending_lane]
                append_event(descriptor.out_region, index, payload)
                with m.If(trace_count < arch.memories.trace):
                    m.d.comb += [
                        write["trace"].addr.eq(trace_count),
                        write["trace"].data.layer.eq(layer),
                        write["trace"].data.index.eq(index),
                        write["trace"].en.eq(1),
                    ]
                    if layer_major:
                        m.d.comb += write["trace"].data.train.eq(payload)
                    else:
                        m.d.comb += [write["trace"].data.timestep.eq(timestep), write["trace"].data.value.eq(payload)]
                    m.d.sync += trace_count.eq(trace_count + 1)
                with m.Else():
                    m.d.sync += trace_overflow.eq(1)
                m.d.sync += payload.eq(0)
                # Clearing the lowest set bit leaves the lanes still to emit after this one.
                with m.If((pending_lanes & (pending_lanes - 1)) == 0):
                    if layer_major:
                        next_group()
                    else:
                        next_step()

            with m.State("NEXT"):
                with m.If(layer + 1 == n_layers):
                    m.d.sync += layer.eq(0)
                    # layer-major: the last pass has run every timestep
                    with m.If((timestep + 1 == timesteps) | layer_major):
                        finish()
                    with m.Else():
                        m.d.sync += timestep.eq(timestep + 1)
                        m.next = "DESC"
                with m.Else():
                    m.d.sync += layer.eq(layer + 1)
                    m.next = "DESC"
        return m


def _bank(m: Module, physical, layouts: dict, depths: dict, read: dict, write: dict) -> None:
    """One single-port memory shared by the members of a bank (``docs/core.md``, "Banks").

    Each member gets a read and a write port of its own shape (``addr``, ``en``, ``data``, as an Amaranth
    memory port has) for the controller to drive; the bank ORs the enabled member's address, offset to the
    member's base, onto one address shared by its read and write port (Yosys maps such a memory onto
    single-port RAM, the iCE40's SPRAM). The configuration guarantees that at most one member is accessed
    per cycle and that no read is enabled in a write cycle. A member packing ``pack`` words per bank word
    reads the slot of its last read address and writes one slot through the byte enables.
    """
    memory = Memory(shape=physical.width, depth=physical.depth, init=[])
    m.submodules[f"{physical.name}_memory"] = memory
    read_port, write_port = memory.read_port(), memory.write_port(granularity=physical.granularity)
    address = Signal(range(physical.depth), name=f"{physical.name}_address")
    addresses, read_enables, write_enables, write_data, write_granules = [], [], [], [], []
    for name, slot in physical.members.items():
        layout, depth = layouts[name], depths[name]
        reader = SimpleNamespace(addr=Signal(range(depth), name=f"{name}_read_addr"),
                                 en=Signal(name=f"{name}_read_en"), data=Signal(layout, name=f"{name}_read_data"))
        writer = SimpleNamespace(addr=Signal(range(depth), name=f"{name}_write_addr"),
                                 en=Signal(name=f"{name}_write_en"), data=Signal(layout, name=f"{name}_write_data"))
        read[name], write[name] = reader, writer
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
        address.eq(_or_all(addresses)),
        read_port.addr.eq(address), read_port.en.eq(Cat(read_enables).any() & ~writing),
        write_port.addr.eq(address), write_port.data.eq(_or_all(write_data)),
        write_port.en.eq(_or_all(write_granules)),
    ]


def _or_all(values):
    """``values[0] | values[1] | ...`` as a balanced tree (the bank's address is on the core's longest path)."""
    values = list(values)
    while len(values) > 1:
        values = [values[i] | values[i + 1] for i in range(0, len(values) - 1, 2)] + \
                 ([values[-1]] if len(values) % 2 else [])
    return values[0]
