"""Random small Programs mixing every construct the core runs, from hypothesis-drawn seeds.

A seed builds an integer stage graph (``models.IntegerStage``) at random: neurons with K = 1..4, leaks 0..2
and per-channel thresholds, fed by 3x3/1x1/strided convolutions of the pixels or of earlier stages (one
or two sources), MS-style membrane shortcuts (carry), sum joins and sum pooling, logic gates over two or
three binary stages with a random truth table, and a linear readout (``contract.generators.random_stages``).
Every draw runs through the contract suite's checks (``contract.suite.problems``) on the golden model and both
simulator engines, in both multi-value modes and both schedules; the modes and schedules must compute the
same, bit-serial in no more cycles, layer-major with no more synapse rows. The RTL runs the suite's construct
programs (seeds 5, 6 and 9) in both modes and schedules. Hypothesis runs derandomized and prints the failing
seed, so a failure reproduces exactly.
"""
import dataclasses

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from contract.generators import PIXEL_MAX, compile_random, random_stages
from contract.suite import REFERENCES, Subject, outcomes, problems

FUZZ = settings(derandomize=True, deadline=None, print_blob=True, max_examples=40,
                suppress_health_check=[HealthCheck.too_slow])
#: The implementations a drawn program runs on (the RTL runs the suite's construct programs).
SIMULATOR_SIDE = (REFERENCES["golden"], REFERENCES["dense"], REFERENCES["tables"])


def same_events(a, b) -> bool:
    return all(np.array_equal(i1, i2) and np.array_equal(v1, v2)
               for per_a, per_b in zip(a.events, b.events) for (i1, v1), (i2, v2) in zip(per_a, per_b))


def total(outcome, counter: str) -> int:
    return sum(account[counter] for account in outcome.accounts)


def golden_equals_sim(program, arch, seed, size, samples=3) -> list:
    """The contract suite's checks on the golden model and both engines for random images; the dense engine's
    outcomes."""
    pixels = np.random.default_rng(seed).integers(0, PIXEL_MAX + 1, size=(samples, size * size))
    subject = Subject.drawn(program, arch, pixels)
    found = problems(subject, SIMULATOR_SIDE)
    assert found == [], (seed, found[:3])
    return outcomes(REFERENCES["dense"], subject)


@FUZZ
@given(seed=st.integers(0, 2**20), size=st.integers(3, 6), n_stages=st.integers(1, 7),
       lanes=st.sampled_from([1, 2, 4, 8]), timesteps=st.integers(1, 4))
def test_random_construct_programs_golden_equals_simulator(seed, size, n_stages, lanes, timesteps):
    program, arch, _ = compile_random(seed, size, n_stages, lanes, timesteps)
    repeat = golden_equals_sim(program, arch, seed, size)
    # the same program in bit-serial mode: identical outputs, fewer or equal accumulate cycles
    serial_arch = dataclasses.replace(arch, multivalue="bitserial")
    program.arch_fingerprint = serial_arch.fingerprint()
    serial = golden_equals_sim(program, serial_arch, seed, size)
    for a, b in zip(repeat, serial):
        assert np.array_equal(a.logits, b.logits) and a.cycles >= b.cycles
    # the same program in the layer-major schedule: every event, logit and membrane the same; each synapse row
    # fetched once for all the timesteps its input fired in, into as many accumulator words
    layer_arch = dataclasses.replace(arch, schedule="layer_major")
    program.arch_fingerprint = layer_arch.fingerprint()
    layer_major = golden_equals_sim(program, layer_arch, seed, size)
    for a, b in zip(repeat, layer_major):
        assert same_events(a, b) and np.array_equal(a.logits, b.logits) and np.array_equal(a.state, b.state)
        assert (a.saturations, a.trace_overflow) == (b.saturations, b.trace_overflow)
        assert total(a, "acc_updates") == total(b, "acc_updates")
        assert total(b, "synapse_rows") <= total(a, "synapse_rows")


def test_the_generator_covers_every_construct():
    kinds = set()
    for seed in range(40):
        kinds |= random_stages(seed, 6, 7, 4)[1]
    assert kinds == {"neuron", "sum", "gate", "readout", "carry"}
