"""Arithmetic units of the core: the accumulate (AC) array and the neuron update unit.

Both are purely combinational; the controller (:mod:`rtl.core`) registers their results. Their integer
semantics are those of ``docs/numerics.md`` and are tested against :func:`models.hwexact.neuron_step_int`.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out


def _check_width(unit, name: str, value, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        # A rejected unit is never elaborated: silence Amaranth's "created but never used" warning for it,
        # as Amaranth does for its own rejected constructs.
        unit._MustUse__silence = True
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
    """``lanes`` saturating signed adders: ``acc_out[i] = sat_acc_bits(acc_in[i] + weight[i])``.

    Parameters
    ----------
    lanes : int
        Number of lanes ``L`` (1 .. 256).
    acc_bits : int
        Signed accumulator width ``A``.
    weight_bits : int
        Signed weight width ``W`` (``W <= A``).

    Attributes
    ----------
    acc_in : In, ``ArrayLayout(signed(A), L)``
        Accumulator row before the addition.
    weight : In, ``ArrayLayout(signed(W), L)``
        Weight row to add (sign-extended to ``A`` bits).
    acc_out : Out, ``ArrayLayout(signed(A), L)``
        Saturated sums.
    saturated : Out, ``L`` bits
        Bit ``i`` is high when lane ``i`` clamped.
    saturation_count : Out, ``unsigned(ceil(log2(L + 1)))``
        Number of lanes that clamped (saturation events of this addition).
    """

    def __init__(self, lanes: int, acc_bits: int, weight_bits: int):
        _check_width(self, "lanes", lanes, 1, 256)
        _check_width(self, "acc_bits", acc_bits, 2, 64)
        _check_width(self, "weight_bits", weight_bits, 2, acc_bits)
        self.lanes, self.acc_bits, self.weight_bits = lanes, acc_bits, weight_bits
        super().__init__({
            "acc_in": In(data.ArrayLayout(signed(acc_bits), lanes)),
            "weight": In(data.ArrayLayout(signed(weight_bits), lanes)),
            "acc_out": Out(data.ArrayLayout(signed(acc_bits), lanes)),
            "saturated": Out(lanes),
            "saturation_count": Out(range(lanes + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        for lane in range(self.lanes):
            clamped, saturated = saturate(m, self.acc_in[lane] + self.weight[lane], self.acc_bits, f"lane{lane}")
            m.d.comb += [self.acc_out[lane].eq(clamped), self.saturated[lane].eq(saturated)]
        m.d.comb += self.saturation_count.eq(population_count(self.saturated[lane] for lane in range(self.lanes)))
        return m


class NeuronUpdate(wiring.Component):
    """One timestep of ``lanes`` multi-level neurons (``docs/numerics.md`` section 3), combinationally.

    For lane ``i`` and level ``k < levels``::

        v        = sat_M((membrane[i][k] >> shift) + acc[i] + bias[i])     arithmetic shift (floor)
        fire     = v > threshold[i][k]                                      strict
        next[i][k] = 0 if fire else v
        count[i] = number of levels that fired

    Levels ``k >= levels`` are held at 0, never fire and never count a saturation.

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
        Leak shift of the layer (0 .. 7).
    levels : In, ``unsigned(K.bit_length())``
        Active levels of the layer (1 .. K).
    membrane_next : Out, ``ArrayLayout(ArrayLayout(signed(M), K), L)``
        Membranes to store.
    count : Out, ``ArrayLayout(unsigned(K.bit_length()), L)``
        Spike count (0 .. levels) of each lane.
    saturation_count : Out, ``unsigned(ceil(log2(L * K + 1)))``
        Number of active (lane, level) pairs whose sum was clamped.
    """

    def __init__(self, lanes: int, max_levels: int, acc_bits: int, membrane_bits: int):
        _check_width(self, "lanes", lanes, 1, 256)
        _check_width(self, "max_levels", max_levels, 1, 8)
        _check_width(self, "membrane_bits", membrane_bits, 2, 64)
        _check_width(self, "acc_bits", acc_bits, 2, membrane_bits)
        self.lanes, self.max_levels = lanes, max_levels
        self.acc_bits, self.membrane_bits = acc_bits, membrane_bits
        membranes = data.ArrayLayout(data.ArrayLayout(signed(membrane_bits), max_levels), lanes)
        level_count = unsigned(max_levels.bit_length())
        super().__init__({
            "membrane": In(membranes),
            "acc": In(data.ArrayLayout(signed(acc_bits), lanes)),
            "bias": In(data.ArrayLayout(signed(membrane_bits), lanes)),
            "threshold": In(membranes),
            "shift": In(3),
            "levels": In(level_count),
            "membrane_next": Out(membranes),
            "count": Out(data.ArrayLayout(level_count, lanes)),
            "saturation_count": Out(range(lanes * max_levels + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        saturation_flags = []
        for lane in range(self.lanes):
            # acc is narrower than the membrane: the sum is formed exactly, then clamped once per level.
            current = self.acc[lane] + self.bias[lane]
            fired_levels = []
            for level in range(self.max_levels):
                active = level < self.levels
                name = f"lane{lane}_level{level}"
                value, saturated = saturate(m, (self.membrane[lane][level] >> self.shift) + current,
                                            self.membrane_bits, name)
                fired = Signal(name=f"{name}_fired")
                m.d.comb += [
                    fired.eq(active & (value > self.threshold[lane][level])),
                    self.membrane_next[lane][level].eq(Mux(fired | ~active, 0, value)),
                ]
                fired_levels.append(fired)
                saturation_flags.append(active & saturated)
            m.d.comb += self.count[lane].eq(population_count(fired_levels))
        m.d.comb += self.saturation_count.eq(population_count(saturation_flags))
        return m
