"""Arithmetic units of the core: the accumulate (AC) array and the neuron update unit.

Both are combinational (the neuron unit optionally registers its level sums halfway, for the split
update's clock); the controller (:mod:`spikecore.rtl.core`) registers their results. Their integer
semantics are those of ``docs/numerics.md`` and are tested against :func:`spikecore.models.hwexact.neuron_step_int`.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out


def check_width(name: str, value, lo: int, hi: int) -> None:
    """Refuse a parameter ``name`` that is not an integer in ``[lo, hi]``.

    The units check their parameters in ``__new__``, before Amaranth registers the object: a rejected unit
    never exists, so Amaranth never warns that it was created but never used.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")


def saturate(m: Module, value, bits: int, name: str):
    """Clamp ``value`` to the signed range of ``bits`` bits (combinationally).

    Returns ``(clamped, saturated)``: a ``signed(bits)`` signal and a 1-bit flag that is high when the clamp
    changed the value (one saturation event).
    """
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    # The value fits iff all bits from bits-1 up equal its sign; testing that is cheaper than two
    # comparisons against the limits, in gates and in an event-driven simulator alike.
    exact = Signal.like(value, name=f"{name}_exact")
    clamped = Signal(signed(bits), name=f"{name}_sat")
    saturated = Signal(name=f"{name}_saturated")
    upper = exact[bits - 1:]
    m.d.comb += [
        exact.eq(value),
        saturated.eq(upper.any() & ~upper.all()),
        clamped.eq(Mux(saturated, Mux(exact[-1], lo, hi), exact[:bits])),
    ]
    return clamped, saturated


def population_count(bits):
    """Sum of a list of 1-bit values (an adder tree; Amaranth widens each sum as needed)."""
    bits = list(bits)
    while len(bits) > 1:
        paired = [bits[i] + bits[i + 1] for i in range(0, len(bits) - 1, 2)]
        bits = paired + ([bits[-1]] if len(bits) % 2 else [])
    return bits[0]


class AcArray(wiring.Component):
    """``lanes`` saturating signed adders: ``acc_out[i] = sat_acc_bits(acc_in[i] + (weight[i] << shift))``.

    The shift serves bit-serial multi-valued inputs (one addition per set bit of the value); with
    ``max_shift = 0`` there is no shifter and ``shift`` is ignored. With ``value_bits > 0`` (a core with
    ``max_pool``) each lane also has a comparator: while ``compare`` is high,
    ``acc_out[i] = max(acc_in[i], value)`` on the lanes with ``weight[i] != 0`` and ``acc_in[i]`` on the
    others, and nothing saturates (a ``max`` stage's accumulation).

    Parameters
    ----------
    lanes : int
        Number of lanes ``L`` (1 .. 256).
    acc_bits : int
        Signed accumulator width ``A``.
    weight_bits : int
        Signed weight width ``W`` (``W <= A``).
    max_shift : int
        Largest shift ``S`` (0 .. 31).
    value_bits : int
        Unsigned width ``V`` of the compared event value (``V < A``); 0: no comparators.

    Attributes
    ----------
    acc_in : In, ``ArrayLayout(signed(A), L)``
        Accumulator row before the addition.
    weight : In, ``ArrayLayout(signed(W), L)``
        Weight row to add (sign-extended to ``A`` bits).
    shift : In, ``range(S + 1)``
        Left shift of the weights (a power-of-two multiple, wired, no multiplier).
    compare, value : In, 1 bit and ``unsigned(V)`` (only with ``V > 0``)
        Take the maximum with ``value`` instead of adding.
    acc_out : Out, ``ArrayLayout(signed(A), L)``
        Saturated sums.
    saturated : Out, ``L`` bits
        Bit ``i`` is high when lane ``i`` clamped.
    saturation_count : Out, ``unsigned(ceil(log2(L + 1)))``
        Number of lanes that clamped (saturation events of this addition).
    """

    def __new__(cls, lanes: int, acc_bits: int, weight_bits: int, max_shift: int = 0, value_bits: int = 0):
        check_width("lanes", lanes, 1, 256)
        check_width("acc_bits", acc_bits, 2, 64)
        check_width("weight_bits", weight_bits, 2, acc_bits)
        check_width("max_shift", max_shift, 0, 31)
        check_width("value_bits", value_bits, 0, acc_bits - 1)
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, lanes: int, acc_bits: int, weight_bits: int, max_shift: int = 0, value_bits: int = 0):
        self.lanes, self.acc_bits, self.weight_bits, self.max_shift = lanes, acc_bits, weight_bits, max_shift
        self.value_bits = value_bits
        ports = {
            "acc_in": In(data.ArrayLayout(signed(acc_bits), lanes)),
            "weight": In(data.ArrayLayout(signed(weight_bits), lanes)),
            "shift": In(range(max_shift + 1)),
            "acc_out": Out(data.ArrayLayout(signed(acc_bits), lanes)),
            "saturated": Out(lanes),
            "saturation_count": Out(range(lanes + 1)),
        }
        if value_bits:
            ports.update(compare=In(1), value=In(unsigned(value_bits)))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        for lane in range(self.lanes):
            addend = self.weight[lane] << self.shift if self.max_shift else self.weight[lane]
            clamped, saturated = saturate(m, self.acc_in[lane] + addend, self.acc_bits, f"lane{lane}")
            if self.value_bits:
                acc_in = self.acc_in[lane]
                larger = (self.weight[lane] != 0) & (self.value > acc_in)
                clamped = Mux(self.compare, Mux(larger, self.value, acc_in), clamped)
                saturated = ~self.compare & saturated
            m.d.comb += [self.acc_out[lane].eq(clamped), self.saturated[lane].eq(saturated)]
        m.d.comb += self.saturation_count.eq(population_count(self.saturated[lane] for lane in range(self.lanes)))
        return m


class NeuronUpdate(wiring.Component):
    """The update phase of ``lanes`` neurons of one stage (``docs/numerics.md``), combinationally.

    With ``current[i] = acc[i] + bias[i]`` and the stage ``kind``:

    - ``0`` neuron, for lane ``i`` and level ``k < levels``::

        v          = sat_M((membrane[i][k] >> shift) + current[i])     arithmetic shift (floor)
        fire       = v > threshold[i][k]                                strict
        next[i][k] = 0 if fire else v
        value[i]   = number of levels that fired

      Levels ``k >= levels`` are held at 0, never fire and never count a saturation.
    - ``1`` sum: ``value[i] = clamp(current[i], 0, 2**V - 1)`` (a clamp counts one saturation).
    - ``2`` gate: ``value[i] = truth_table[clamp(current[i], 0, 7)]`` (a clamp counts one saturation).

    Parameters
    ----------
    lanes : int
        Number of lanes ``L`` (1 .. 256).
    max_levels : int
        Membranes per neuron ``K`` (1 .. 8).
    acc_bits : int
        Signed accumulator width ``A`` (``A <= M``).
    membrane_bits : int
        Signed membrane, bias and threshold width ``M``.
    value_bits : int
        Unsigned event value width ``V`` (``2**V > K``).
    registered : bool
        Register the saturated level sums and the current (``acc + bias``) on the clock: the unit then
        takes two cycles, ``membrane``, ``acc`` and ``bias`` in the first, ``threshold``, ``shift``,
        ``levels``, ``kind`` and ``truth_table`` held through both, and its outputs (all of them) valid in
        the second. Halves the unit's combinational depth (the split update's clock, ``spikecore.rtl.core``).

    Attributes
    ----------
    membrane : In, ``ArrayLayout(ArrayLayout(signed(M), K), L)``
        Stored (post-reset) membranes.
    acc : In, ``ArrayLayout(signed(A), L)``
        Synaptic accumulators of this timestep.
    bias : In, ``ArrayLayout(signed(M), L)``
        Per-lane bias.
    threshold : In, ``ArrayLayout(ArrayLayout(signed(M), K), L)``
        Per-lane, per-level thresholds.
    shift : In, 3 bits
        Leak shift of the stage (0 .. MAX_SHIFT, accel.contract.layouts).
    levels : In, ``unsigned(K.bit_length())``
        Active levels of the stage (1 .. K).
    kind : In, 2 bits
        0 neuron, 1 sum, 2 gate.
    truth_table : In, 8 bits
        The gate's output for each index 0 .. 7.
    membrane_next : Out, ``ArrayLayout(ArrayLayout(signed(M), K), L)``
        Membranes to store (neuron kind).
    value : Out, ``ArrayLayout(unsigned(V), L)``
        Event value of each lane (0: no event).
    saturation_count : Out, ``unsigned(ceil(log2(L * K + 1)))``
        Number of clamps of this update.
    """

    def __new__(cls, lanes: int, max_levels: int, acc_bits: int, membrane_bits: int, value_bits: int,
                registered: bool = False):
        check_width("lanes", lanes, 1, 256)
        check_width("max_levels", max_levels, 1, 8)
        check_width("membrane_bits", membrane_bits, 2, 64)
        check_width("acc_bits", acc_bits, 2, membrane_bits)
        check_width("value_bits", value_bits, max_levels.bit_length(), 32)
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, lanes: int, max_levels: int, acc_bits: int, membrane_bits: int, value_bits: int,
                 registered: bool = False):
        self.lanes, self.max_levels = lanes, max_levels
        self.acc_bits, self.membrane_bits, self.value_bits = acc_bits, membrane_bits, value_bits
        self.registered = bool(registered)
        membranes = data.ArrayLayout(data.ArrayLayout(signed(membrane_bits), max_levels), lanes)
        super().__init__({
            "membrane": In(membranes),
            "acc": In(data.ArrayLayout(signed(acc_bits), lanes)),
            "bias": In(data.ArrayLayout(signed(membrane_bits), lanes)),
            "threshold": In(membranes),
            "shift": In(3),
            "levels": In(unsigned(max_levels.bit_length())),
            "kind": In(2),
            "truth_table": In(8),
            "membrane_next": Out(membranes),
            "value": Out(data.ArrayLayout(unsigned(value_bits), lanes)),
            "saturation_count": Out(range(lanes * max_levels + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        saturation_flags = []
        is_neuron, is_sum, is_gate = self.kind == 0, self.kind == 1, self.kind == 2
        value_max = (1 << self.value_bits) - 1
        def stage(signal, name):
            """``signal`` itself, or its value one cycle later in the registered unit."""
            if not self.registered:
                return signal
            held = Signal.like(signal, name=f"{name}_held")
            m.d.sync += held.eq(signal)
            return held

        for lane in range(self.lanes):
            # acc is narrower than the membrane: the sum is formed exactly, then clamped once per level.
            sum_in = Signal(signed(self.membrane_bits + 1), name=f"lane{lane}_current")
            m.d.comb += sum_in.eq(self.acc[lane] + self.bias[lane])
            current = stage(sum_in, f"lane{lane}_current")
            fired_levels = []
            for level in range(self.max_levels):
                active = is_neuron & (level < self.levels)
                name = f"lane{lane}_level{level}"
                value, saturated = saturate(m, (self.membrane[lane][level] >> self.shift) + sum_in,
                                            self.membrane_bits, name)
                value, saturated = stage(value, name), stage(saturated, f"{name}_saturated")
                fired = Signal(name=f"{name}_fired")
                m.d.comb += [
                    fired.eq(active & (value > self.threshold[lane][level])),
                    self.membrane_next[lane][level].eq(Mux(fired | ~active, 0, value)),
                ]
                fired_levels.append(fired)
                saturation_flags.append(active & saturated)
            # sum and gate: clamp the current to the event range or the gate's index range
            upper = Mux(is_gate, 7, value_max)
            below, above = current < 0, current > upper
            clamped = Signal(range(max(value_max, 7) + 1), name=f"lane{lane}_clamped")
            m.d.comb += clamped.eq(Mux(below, 0, Mux(above, upper, current)))
            saturation_flags.append((is_sum | is_gate) & (below | above))
            with m.Switch(self.kind):
                with m.Case(0):
                    m.d.comb += self.value[lane].eq(population_count(fired_levels))
                with m.Case(1):
                    m.d.comb += self.value[lane].eq(clamped)
                with m.Case(2):
                    m.d.comb += self.value[lane].eq(self.truth_table.bit_select(clamped[:3], 1))
        m.d.comb += self.saturation_count.eq(population_count(saturation_flags))
        return m
