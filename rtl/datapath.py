"""The core's datapath: the operands of the arithmetic units and the addresses and selections that the
controller's states present (``docs/core.md``, "Schedule").

The arithmetic units (:class:`spikecore.rtl.components.AcArray`, :class:`spikecore.rtl.components.NeuronUpdate`)
read the memories directly; the controller (:mod:`spikecore.rtl.controller`) decides in which states their
results count. Everything here is combinational, from the controller's registers and the memories' read data.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, Value

from spikecore.accel.contract.config import ArchConfig
from spikecore.accel.contract.layouts import KIND_MAX, KIND_SUM


class Datapath:
    """Wires the arithmetic units to the memories and derives the schedule's addresses.

    Parameters
    ----------
    arch : accel.contract.config.ArchConfig
    schedule : spikecore.rtl.controller.Controller
        Whose registers (``descriptor``, ``group``, ``step``, ``repeat``, ...) the datapath reads.
    read : dict
        ``{memory: read port}`` (:func:`spikecore.rtl.banks.memory_ports`).
    ac_array, neuron_update : spikecore.rtl.components.AcArray, spikecore.rtl.components.NeuronUpdate

    Attributes
    ----------
    updating : Signal(1), in
        Set by the controller in the cycle the neuron unit's inputs count (UWR; USUM in a split update); the
        unit's accumulator input is held at 0 otherwise.
    first_addition, last_addition : Value(1), out
        The current addition of an event's value is its first (reads the accumulator word) or its last
        (writes it back); a ``max`` stage's one comparison is both.
    is_max : Value(1), out
        Only with ``max_pool``: the pass is a ``max`` stage's.
    acc_update_word, state_word, param_word : Value, out
        The update's accumulator, state and params word of the current group, timestep and step.
    pending_lanes : Value(lanes to emit), out
        Lanes with an event still to emit: of the update step (timestep-major) or of the group (layer-major).
    first_pending_lane : Signal(range(lanes to emit)), out
        The lowest of them.
    first_pending_timestep : Signal(timestep_bits), out
        Layer-major: the lowest timestep still to add of the current event.
    """

    def __init__(self, arch: ArchConfig, schedule, read: dict, ac_array, neuron_update):
        self.arch, self.schedule, self.read = arch, schedule, read
        self.ac_array, self.neuron_update = ac_array, neuron_update
        self.updating = Signal()
        if arch.multivalue == "bitserial":
            # `remaining` holds the bits of the value still to add, lowest first
            self.first_addition = schedule.remaining == schedule.event_value
            self.last_addition = (schedule.remaining & (schedule.remaining - 1)) == 0
        else:
            self.first_addition = schedule.repeat == 1
            self.last_addition = schedule.repeat == schedule.event_value
        if arch.max_pool:   # a max stage's event is one comparison: its first addition is its last
            self.is_max = schedule.descriptor.kind == KIND_MAX
            self.last_addition = self.last_addition | self.is_max
        descriptor, group, step = schedule.descriptor, schedule.group, schedule.step
        acc_group_row = descriptor.acc_base + group
        # layer-major: an accumulator row is `slots` words, one per timestep (the lowest address bits)
        self.acc_update_word = (Cat(schedule.timestep[:arch.timestep_bits], acc_group_row) if arch.layer_major
                                else acc_group_row)
        # A state and a params row are `steps` consecutive words (steps is a power of two).
        self.state_word = Cat(step, descriptor.state_base + group)
        self.param_word = Cat(step, descriptor.param_base + schedule.block)
        emit_lanes = arch.lanes if arch.layer_major else arch.neurons_per_update
        values = schedule.group_trains if arch.layer_major else schedule.spike_counts
        self.pending_lanes = Cat(Value.cast(values[lane]) != 0 for lane in range(emit_lanes))
        self.first_pending_lane = Signal(range(emit_lanes))
        if arch.layer_major:
            self.first_pending_timestep = Signal(arch.timestep_bits)

    def elaborate(self, m: Module) -> None:
        """Add the datapath's combinational logic to the core's module ``m``."""
        arch, schedule, read = self.arch, self.schedule, self.read
        ac_array, neuron_update = self.ac_array, self.neuron_update
        if arch.layer_major:
            lowest_set_bit(m, schedule.timesteps_pending, self.first_pending_timestep)
        lowest_set_bit(m, self.pending_lanes, self.first_pending_lane)
        # Multi-valued events: `repeat` adds the weight v times; `bitserial` adds w << b for each set bit b of
        # v, lowest first.
        if arch.multivalue == "bitserial":
            lowest_bit = Signal(range(arch.value_bits))
            lowest_set_bit(m, schedule.remaining, lowest_bit)
            m.d.comb += ac_array.shift.eq(lowest_bit)
        acc_row = read["acc"].data.acc.as_value()
        update_lanes = arch.neurons_per_update
        m.d.comb += [
            ac_array.acc_in.eq(Mux(self.first_addition, acc_row, schedule.acc_partial.as_value())),
            ac_array.weight.eq(read["weights"].data.w),
            neuron_update.membrane.eq(read["state"].data.u),
            # Operand isolation: the accumulator port changes on every synapse row, but the neuron unit
            # needs it only in UWR (USUM in a split update); holding its input at 0 otherwise stops it from
            # switching needlessly.
            # The accumulator row stays on its port for all the group's steps; step s takes lanes s*U ..
            neuron_update.acc.eq(Mux(self.updating, acc_row.word_select(schedule.step, update_lanes * arch.acc_bits)
                                     if arch.update_steps > 1 else acc_row, 0)),
            neuron_update.bias.eq(read["params"].data.bias),
            neuron_update.threshold.eq(read["params"].data.threshold),
            neuron_update.shift.eq(schedule.descriptor.shift),
            neuron_update.levels.eq(schedule.descriptor.levels),
            # a max stage updates as a sum
            neuron_update.kind.eq(Mux(self.is_max, KIND_SUM, schedule.descriptor.kind) if arch.max_pool
                                  else schedule.descriptor.kind),
            neuron_update.truth_table.eq(schedule.descriptor.truth_table),
        ]
        if arch.max_pool:   # the comparators take the event's value
            m.d.comb += [ac_array.compare.eq(self.is_max), ac_array.value.eq(schedule.event_value)]


def lowest_set_bit(m: Module, bits, index: Signal) -> None:
    """Drive ``index`` with the position of the lowest set bit of ``bits`` (0 when none is set)."""
    for bit in reversed(range(len(bits))):
        with m.If(bits[bit]):
            m.d.comb += index.eq(bit)
