"""Accumulators past the compiler's range proof (``docs/numerics.md``, "Accumulator rule").

The compiler rejects a network whose partial sums could leave ``acc_bits``, so no compiled program makes an
accumulator clamp; the core's adders saturate anyway, every addition clamped and counted, in the core's order.
A program built past the proof (as the mutation flow's ``saturating`` program is) must then give the same
events, logits and saturation counts on both simulator engines and the RTL as a reference written here from
the numerics contract: per accumulator, the events in turn, ``v`` additions of the weight (``repeat``) or one of
``w << b`` per set bit ``b``, lowest first (``bitserial``), each clamped.

The program is chosen so that the order matters: positive weights on the first inputs, negative ones on the
last, so an accumulator runs into its upper bound and is then pulled down (clamping once at the end of the
exact sum would give another value and another count, which :func:`test_the_program_tells_the_orders_apart`
checks: the test cannot pass by accident).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from spikecore.accel.contract.compiler import HARDWARE_PASSES, Compilation, run_passes
from spikecore.accel.contract.program import ProgramLayer, ProgramSource
from spikecore.accel.flows.verify import decode_rtl
from spikecore.rtl.runner import run_inferences
from spikecore.sim.engine import simulate

from test_rtl_core_handmade import tiny_arch

INPUTS, CHANNELS, TIMESTEPS = 6, 4, 2
PIXEL_MAX = 15


def arch_for(multivalue: str, schedule: str = "timestep_major"):
    return dataclasses.replace(tiny_arch(), name=f"tiny-{multivalue}-{schedule}", multivalue=multivalue,
                               schedule=schedule)


#: ``(multivalue, schedule)``: the layer-major schedule visits an accumulator's additions in the same order.
CORES = [("repeat", "timestep_major"), ("bitserial", "timestep_major"), ("repeat", "layer_major")]


def stem_weights() -> np.ndarray:
    """Per channel: large positive weights on inputs 0..2, large negative ones on 3..5 (signs flipped on odd
    channels), so that with bright pixels every accumulator hits a bound and is pulled back."""
    rising = np.array([120, 90, 100, -110, -127, -95])
    return np.stack([rising if c % 2 == 0 else -rising for c in range(CHANNELS)]).astype(np.int64)


def readout_weights() -> np.ndarray:
    return np.array([[3, -2, 1, 4], [-1, 2, -3, 1]], np.int64)


def past_the_proof(arch):
    """The stem (IF neurons that never fire: their membranes hold the clamped sums) and a readout, compiled
    with every hardware pass but the range check."""
    never = (1 << (arch.membrane_bits - 1)) - 1
    stem = ProgramLayer(name="stem", kind="neuron", sources=[ProgramSource(
        input=-1, op="linear", weight=stem_weights(), in_shape=(INPUTS,))], out_shape=(CHANNELS,),
        bias=np.zeros(CHANNELS, np.int64), thresholds=np.full((1, CHANNELS), 300, np.int64),
        scale=np.ones(CHANNELS), shift=1)
    readout = ProgramLayer(name="readout", kind="readout", sources=[ProgramSource(
        input=0, op="linear", weight=readout_weights(), in_shape=(CHANNELS,))], out_shape=(2,),
        bias=np.zeros(2, np.int64), thresholds=np.full((1, 2), never, np.int64), scale=np.ones(2))
    compilation = Compilation(None, arch, (INPUTS,), float(PIXEL_MAX), PIXEL_MAX, {}, layers=[stem, readout],
                              timesteps=TIMESTEPS)
    return run_passes(compilation, [step for step in HARDWARE_PASSES if step.name != "check_ranges"])


def images() -> np.ndarray:
    rng = np.random.default_rng(3)
    bright = np.full((1, INPUTS), PIXEL_MAX, np.int64)
    return np.vstack([bright, rng.integers(9, PIXEL_MAX + 1, (3, INPUTS)) * (rng.random((3, INPUTS)) < 0.9)])


def clamped_sum(weights, events, bits: int, bitserial: bool):
    """One accumulator, the contract's way: ``(sum, clamps)``."""
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    total, clamps = 0, 0
    for w, v in zip(weights, events):
        addends = [w << b for b in range(v.bit_length()) if v >> b & 1] if bitserial else [w] * v
        for addend in addends:
            exact = total + addend
            total = min(max(exact, low), high)
            clamps += total != exact
    return total, clamps


def reference(arch, pixels):
    """Events of both stages at every timestep, the logits and the saturation count (no membrane clamps:
    the test asserts the membranes stay in range)."""
    bitserial = arch.multivalue == "bitserial"
    m_low, m_high = -(1 << (arch.membrane_bits - 1)), (1 << (arch.membrane_bits - 1)) - 1
    stem_u, logits, saturations, stem_events = [0] * CHANNELS, [0, 0], 0, []
    events = [int(p) for p in pixels]
    for _ in range(TIMESTEPS):
        fired = []
        for c in range(CHANNELS):
            x, clamps = clamped_sum([int(w) for w in stem_weights()[c]], events, arch.acc_bits, bitserial)
            saturations += clamps
            v = (stem_u[c] >> 1) + x
            assert m_low <= v <= m_high
            fired.append(int(v > 300))
            stem_u[c] = 0 if v > 300 else v
        stem_events.append(fired)
        for o in range(2):
            x, clamps = clamped_sum([int(w) for w in readout_weights()[o]], fired, arch.acc_bits, bitserial)
            saturations += clamps
            logits[o] += x
            assert m_low <= logits[o] <= m_high
    return stem_events, logits, saturations


def simulated(program, arch, pixels, engine):
    result = simulate(program, arch, pixels, engine=engine)
    stem = [[0] * CHANNELS for _ in range(TIMESTEPS)]
    for t, (idx, val) in enumerate(result.events[0]):
        for i, v in zip(idx, val):
            stem[t][int(i)] = int(v)
    return stem, [int(v) for v in result.logits], int(result.saturations)


@pytest.mark.parametrize("multivalue, schedule", CORES)
@pytest.mark.parametrize("engine", ["tables", "auto"])
def test_simulator_adds_in_the_cores_order(multivalue, schedule, engine):
    arch = arch_for(multivalue, schedule)
    program = past_the_proof(arch)
    for pixels in images():
        assert simulated(program, arch, pixels, engine) == reference(arch, pixels)


def test_the_program_tells_the_orders_apart():
    """Clamping the exact sum once (the simulator's way before) gives other counts: the check can fail."""
    arch = arch_for("repeat")
    low, high = -(1 << (arch.acc_bits - 1)), (1 << (arch.acc_bits - 1)) - 1
    pixels = [int(p) for p in images()[0]]
    for c in range(CHANNELS):
        ordered, clamps = clamped_sum([int(w) for w in stem_weights()[c]], pixels, arch.acc_bits, False)
        exact = int(stem_weights()[c] @ np.array(pixels))
        assert clamps > 0 and (ordered, clamps) != (min(max(exact, low), high), int(exact != min(max(exact, low),
                                                                                                      high)))


@pytest.mark.parametrize("multivalue, schedule", CORES)
def test_core_counts_the_same_clamps(multivalue, schedule, rtl_cache):
    arch = arch_for(multivalue, schedule)
    program = past_the_proof(arch)
    pixels = images()
    results = run_inferences(program.memory_image(arch), pixels.tolist(), arch, rtl_cache / "rtl", jobs=1)
    for image, result in zip(pixels, results):
        _, logits, saturations = reference(arch, image)
        assert int(result["saturations"]) == saturations
        assert [int(v) for v in decode_rtl(program, arch, result)["logits"]] == logits
