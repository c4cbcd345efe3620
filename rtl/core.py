"""The whole core: memories, controller, control registers and host interface (``docs/core.md``).

Every state of the controller lasts exactly one cycle (``ACC`` repeats for the ``v`` additions of an
event of value ``v``), so the ``cycles`` register equals the cycle formula of ``docs/core.md`` for every
program. All memories have one synchronous read port (data valid the cycle after the address) and one
write port; while the core is idle the host owns the read addresses and the write ports of the memories
it may write.
"""
from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from accel.config import ArchConfig
from accel.layouts import KIND_NEURON, REGION_INPUT, memory_depths

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
        for name, depth in depths.items():
            memory = Memory(shape=layouts[name], depth=depth, init=[])
            m.submodules[f"{name}_memory"] = memory
            read[name] = memory.read_port()
            write[name] = memory.write_port()

        bitserial = arch.multivalue == "bitserial"
        m.submodules.ac_array = ac_array = AcArray(lanes, arch.acc_bits, arch.weight_bits,
                                                   arch.value_bits - 1 if bitserial else 0)
        m.submodules.neuron_update = neuron_update = NeuronUpdate(
            lanes, arch.max_levels, arch.acc_bits, arch.membrane_bits, arch.value_bits)

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
        clear_row = Signal(arch.addr_bits("state") + 1)
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
        block = Signal(arch.addr_bits("params") + 1)
        spike_counts = Signal.like(neuron_update.value)

        idle = Signal()
        updating = Signal()
        m.d.comb += [self.busy.eq(~idle), self.done.eq(done)]
        with m.If(~idle):
            m.d.sync += cycles.eq(cycles + 1)

        # ---- host interface -----------------------------------------------------------------------
        # Read ports follow the host while idle; the controller's states override address and enable.
        for name in HOST_SELECT:
            m.d.comb += [read[name].addr.eq(self.host_addr), read[name].en.eq(idle)]
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
        def append_event(region, index, value):
            """Write (index, value) after the last event of ``region``; a full region drops the event."""
            count = event_counts[region]
            with m.If(count < events_per_region):
                m.d.comb += [
                    write["events"].addr.eq(region * events_per_region + count),
                    write["events"].data.index.eq(index),
                    write["events"].data.value.eq(value),
                    write["events"].en.eq(1),
                ]
                m.d.sync += count.eq(count + 1)

        def next_group():
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
            # needs it only in UWR; holding its input at 0 otherwise stops it from switching needlessly.
            neuron_update.acc.eq(Mux(updating, read["acc"].data.acc.as_value(), 0)),
            neuron_update.bias.eq(read["params"].data.bias),
            neuron_update.threshold.eq(read["params"].data.threshold),
            neuron_update.shift.eq(descriptor.shift),
            neuron_update.levels.eq(descriptor.levels),
            neuron_update.kind.eq(descriptor.kind),
            neuron_update.truth_table.eq(descriptor.truth_table),
        ]
        acc_group_row = descriptor.acc_base + group
        state_group_row = descriptor.state_base + group
        pending_lanes = Cat(spike_counts[lane] != 0 for lane in range(lanes))
        first_pending_lane = Signal(range(lanes))
        for lane in reversed(range(lanes)):
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
                        clear_row.eq(0), pixel.eq(0), timestep.eq(0), layer.eq(0),
                    ]
                    m.d.sync += [event_counts[region].eq(0) for region in range(arch.event_regions)]
                    with m.If(state_rows != 0):
                        m.next = "CLEAR"
                    with m.Else():
                        m.next = "SCAN"

            with m.State("CLEAR"):
                for name in ("acc", "state"):
                    m.d.comb += [write[name].addr.eq(clear_row), write[name].data.eq(0), write[name].en.eq(1)]
                m.d.sync += clear_row.eq(clear_row + 1)
                with m.If(clear_row + 1 == state_rows):
                    m.next = "SCAN"

            with m.State("SCAN"):
                # Present pixel i; the pixel presented one cycle earlier (i - 1) is on the read port now.
                m.d.comb += [read["inputs"].addr.eq(pixel), read["inputs"].en.eq(1)]
                previous_value = read["inputs"].data.value
                with m.If((pixel != 0) & (previous_value != 0)):
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
                    m.next = "WRD"

            with m.State("WRD"):
                m.d.comb += [
                    read["weights"].addr.eq(read["synapses"].data.wrow), read["weights"].en.eq(1),
                    read["acc"].addr.eq(read["synapses"].data.row), read["acc"].en.eq(1),
                ]
                m.d.sync += [acc_row.eq(read["synapses"].data.row), repeat.eq(1), remaining.eq(event_value)]
                m.next = "ACC"

            with m.State("ACC"):
                # One addition of the event's value; the sum stays in acc_partial until the last.
                m.d.sync += saturations.eq(saturations + ac_array.saturation_count)
                with m.If(last_addition):
                    m.d.comb += [
                        write["acc"].addr.eq(acc_row), write["acc"].data.acc.eq(ac_array.acc_out),
                        write["acc"].en.eq(1),
                    ]
                    m.d.sync += synapse.eq(synapse + 1)
                    m.next = "SYN"
                with m.Else():
                    m.d.sync += [acc_partial.eq(ac_array.acc_out), repeat.eq(repeat + 1),
                                 remaining.eq(remaining & (remaining - 1))]

            with m.State("URD"):
                with m.If(group == descriptor.n_groups):
                    m.next = "NEXT"
                with m.Else():
                    m.d.comb += [
                        read["acc"].addr.eq(acc_group_row), read["acc"].en.eq(1),
                        read["state"].addr.eq(state_group_row), read["state"].en.eq(1),
                        read["params"].addr.eq(descriptor.param_base + block), read["params"].en.eq(1),
                    ]
                    m.next = "UWR"

            with m.State("UWR"):
                m.d.comb += updating.eq(1)
                m.d.comb += [
                    write["state"].addr.eq(state_group_row), write["state"].data.u.eq(neuron_update.membrane_next),
                    write["state"].en.eq(descriptor.kind == KIND_NEURON),
                    write["acc"].addr.eq(acc_group_row), write["acc"].data.eq(0),
                    write["acc"].en.eq(descriptor.clear_acc),
                ]
                m.d.sync += [
                    saturations.eq(saturations + neuron_update.saturation_count),
                    spike_counts.eq(neuron_update.value),
                ]
                with m.If(Cat(neuron_update.value[lane] != 0 for lane in range(lanes)).any()):
                    m.next = "EMIT"
                with m.Else():
                    next_group()

            with m.State("EMIT"):
                index = Cat(first_pending_lane, group)
                value = spike_counts[first_pending_lane]
                append_event(descriptor.out_region, index, value)
                with m.If(trace_count < arch.memories.trace):
                    m.d.comb += [
                        write["trace"].addr.eq(trace_count),
                        write["trace"].data.timestep.eq(timestep),
                        write["trace"].data.layer.eq(layer),
                        write["trace"].data.index.eq(index),
                        write["trace"].data.value.eq(value),
                        write["trace"].en.eq(1),
                    ]
                    m.d.sync += trace_count.eq(trace_count + 1)
                with m.Else():
                    m.d.sync += trace_overflow.eq(1)
                m.d.sync += spike_counts[first_pending_lane].eq(0)
                # Clearing the lowest set bit leaves the lanes still to emit after this one.
                with m.If((pending_lanes & (pending_lanes - 1)) == 0):
                    next_group()

            with m.State("NEXT"):
                with m.If(layer + 1 == n_layers):
                    m.d.sync += layer.eq(0)
                    with m.If(timestep + 1 == timesteps):
                        finish()
                    with m.Else():
                        m.d.sync += timestep.eq(timestep + 1)
                        m.next = "DESC"
                with m.Else():
                    m.d.sync += layer.eq(layer + 1)
                    m.next = "DESC"
        return m
