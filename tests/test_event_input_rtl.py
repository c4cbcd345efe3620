"""Event input on the RTL (``docs/core.md``, "Event input"): frames that change every timestep, under Icarus.

A core with ``event_input`` takes an inference's input as words ``(value, index, timestep)`` sorted by timestep
(``spikecore.accel.contract.inputs.input_words``), their number in ``n_inputs``, and scans timestep ``t``'s words
into region 0 at the start of timestep ``t`` (``w_t + 2`` cycles), so that

    cycles = CLEAR + sum_t (w_t + 2) + the passes of each timestep as on a core without it.

- the hand-built program of ``tests/test_rtl_core_handmade.py`` (two linear layers, narrow accumulators that
  saturate) on a tiny event-input core, T = 5, unbanked and banked (the inputs in the single-port bank of the
  default core, one neuron per update step): random sparse frames that differ every timestep (some timesteps
  empty, one with every input nonzero), no input at all, and a static image; that file's reference (frame ``t``
  at timestep ``t``) gives the trace, the membranes, the saturations and the cycles by the formula above;
- a random construct program (``tests/contract``: convolutions, several stage kinds) compiled for an
  event-input core: the RTL's spikes and logits equal the golden model's on frames
  (``spikecore.models.hwexact.run_integer_network`` with ``[N, T, C, H, W]``); on frames that are all equal it
  emits the trace of the same program on the core without event input, in
  ``sum_t (w_t + 2) - (n_inputs + 1)`` more cycles; its cycles, saturations and trace words are the
  simulator's (``spikecore.sim.engine.simulate_batch`` on the frames);
- the end of a run without passes (``n_layers = 0`` or ``timesteps = 0``): timestep 0's scan, then done;
- words out of timestep order: each scan stops at the first word of another timestep;
- over the host bus with random idle cycles and a reset mid-inference, with the functional coverage on.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from spikecore.accel.contract.compiler import compile_stages
from spikecore.accel.contract.config import arch_from_dict
from spikecore.accel.contract.inputs import input_words
from spikecore.accel.contract.layouts import input_layout
from spikecore.accel.flows.verify import decode_rtl, golden_hw_spikes, run_golden
from spikecore.rtl.runner import run_inferences
from spikecore.sim.engine import simulate_batch
from test_rtl_core_handmade import N_INPUTS, build_network, compile_program, reference

pytestmark = pytest.mark.skipif(__import__("shutil").which("iverilog") is None, reason="needs Icarus Verilog")

#: Timesteps of the programs here (the cores hold up to 6).
T = 5
#: The construct program's input (``tests/contract``: 1 x 5 x 5 pixels up to 15).
CONSTRUCT_SIZE, CONSTRUCT_MAX = 5, 15


def event_arch(banked=False):
    """``tiny_arch`` of ``tests/test_rtl_core_handmade.py`` with event input: up to 6 timesteps and 32 input
    words (5 timesteps of 6 inputs); ``banked``: the default core's bank (the inputs in one single-port memory
    with the program, membranes and trace) and one neuron per update step."""
    banks = {"banks": [["pointers", "synapses", "weights", "state", "trace", "inputs"]], "update_lanes": 1}
    return arch_from_dict({
        "name": "tiny-events", "lanes": 4, "weight_bits": 8, "acc_bits": 10, "membrane_bits": 12, "input_bits": 4,
        "max_levels": 2, "max_timesteps": 6, "event_input": True,
        "memories": {"layers": 2, "pointers": 16, "synapses": 32, "weights": 32, "params": 4, "state": 4,
                     "events": 16, "inputs": 32, "trace": 64},
        **(banks if banked else {}),
    })


def sparse_frames(seed, count, timesteps, n_inputs, maximum, density=0.35):
    """Random integer frames ``[count, timesteps, n_inputs]`` that differ every timestep: about ``density`` of
    the values nonzero, timestep 1 empty, timestep 2 nonzero everywhere."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(1, maximum + 1, (count, timesteps, n_inputs)) * (rng.random((count, timesteps, n_inputs))
                                                                          < density)
    frames[:, 1] = 0
    frames[:, 2] = rng.integers(1, maximum + 1, (count, n_inputs))
    assert all((sample[t] != sample[t + 1]).any() for sample in frames for t in range(timesteps - 1))
    return frames.astype(np.int64)


def scan_cycles(frames):
    """``sum_t (w_t + 2)``: the input scans of one inference's frames ``[T, n_inputs]``."""
    return int(sum(np.count_nonzero(frame) + 2 for frame in frames))


@pytest.mark.parametrize("banked", [False, True], ids=["unbanked", "banked"])
def test_handmade_program_on_frames(tmp_path, banked):
    """Every trace word, membrane, saturation and cycle of the hand-built program on frames, as the reference;
    the input words' count register is written per inference (the inputs differ in length)."""
    arch = event_arch(banked)
    network = build_network(arch)
    image, fanout = compile_program(arch, network)
    image["registers"]["timesteps"] = T
    frames = list(sparse_frames(3, 3, T, N_INPUTS, 15))
    frames.append(np.zeros((T, N_INPUTS), np.int64))                         # no input event at all
    frames.append(np.tile(np.array([1, 0, 2, 0, 3, 1]), (T, 1)))             # an image, the same every timestep
    words = [input_words(arch, sample) for sample in frames]
    assert len({len(w) for w in words}) == len(words) and max(len(w) for w in words) <= arch.memories.inputs
    results = run_inferences(image, words, arch, tmp_path, simulator="icarus", jobs=1)
    saturated = 0
    for number, (sample, result) in enumerate(zip(frames, results)):
        expected = reference(arch, network, fanout, image, sample)
        assert result["cycles"] == expected["cycles"], number
        assert result["cycles_measured"] == result["cycles"], number
        assert result["trace"] == expected["trace"], number
        assert result["trace_overflow"] == 0
        assert result["state"] == expected["state"], number
        assert result["saturations"] == expected["saturations"], number
        saturated += expected["saturations"] > 0
    assert saturated  # the narrow accumulators clamp on some input


def construct_program(arch):
    """The construct program of seed 9 (``tests/contract``), T = 5, compiled for ``arch``."""
    from contract.generators import random_stages

    layers, _ = random_stages(9, CONSTRUCT_SIZE, 7, arch.lanes)
    return compile_stages(layers, arch, T, (1, CONSTRUCT_SIZE, CONSTRUCT_SIZE), CONSTRUCT_MAX)


def construct_archs():
    """The contract suite's fuzz core with up to 6 timesteps and 128 input words, with and without event input."""
    from contract.generators import MEMORIES

    base = {"name": "fuzz-events", "lanes": 4, "weight_bits": 6, "acc_bits": 18, "membrane_bits": 18,
            "input_bits": 8, "max_levels": 4, "max_timesteps": 6, "event_regions": 8,
            "memories": dict(MEMORIES, inputs=128)}
    return arch_from_dict(dict(base, event_input=True)), arch_from_dict(dict(base, name="fuzz-static"))


def test_construct_program_on_frames_matches_golden_model(tmp_path):
    """Frames that differ every timestep: the RTL's spikes of every stage and logits are the golden model's; and
    frames that are all equal give the trace of the core without event input, in exactly
    ``sum_t (w_t + 2) - (n_inputs + 1)`` more cycles. The cycles, saturations and trace words are the
    simulator's."""
    arch, static = construct_archs()
    program = construct_program(arch)
    n_inputs = program.n_inputs
    frames = sparse_frames(9, 3, T, n_inputs, CONSTRUCT_MAX, density=0.3)
    images = np.random.default_rng(10).integers(0, CONSTRUCT_MAX + 1, (2, n_inputs))
    images[0, :7] = 0
    repeated = np.repeat(images[:, None, :], T, axis=1)
    samples = np.concatenate([frames, repeated])
    words = [input_words(arch, sample) for sample in samples]
    results = run_inferences(program.memory_image(arch), words, arch, tmp_path, simulator="icarus", jobs=1)

    golden = run_golden(program, arch, torch.tensor(samples).reshape(len(samples), T, 1, CONSTRUCT_SIZE,
                                                                        CONSTRUCT_SIZE))
    emitted = 0
    for number, result in enumerate(results):
        decoded = decode_rtl(program, arch, result)
        assert not decoded["stray"] and result["trace_overflow"] == 0
        for rtl, expected in zip(decoded["spikes"], golden_hw_spikes(program, arch, golden, number)):
            np.testing.assert_array_equal(rtl, expected, err_msg=f"input {number}")
        np.testing.assert_array_equal(decoded["logits"], golden["logits"][number].numpy())
        emitted += result["trace_count"]
        assert result["cycles_measured"] == result["cycles"]
    assert emitted > 0
    # the simulator's account of the same frames (its schedule: docs/core.md's formula), cycle for cycle
    simulated = simulate_batch(program, arch, samples, engine="tables")
    assert [r["cycles"] for r in results] == [r.cycles for r in simulated]
    assert [r["saturations"] for r in results] == [r.saturations for r in simulated]
    assert [r["trace_count"] for r in results] == [r.trace_count for r in simulated]

    static_program = construct_program(static)
    static_results = run_inferences(static_program.memory_image(static), [list(map(int, p)) for p in images],
                                    static, tmp_path, simulator="icarus", jobs=1)
    for number, (image, result, on_static) in enumerate(zip(images, results[len(frames):], static_results)):
        ours, theirs = decode_rtl(program, arch, result), decode_rtl(static_program, static, on_static)
        for a, b in zip(ours["spikes"], theirs["spikes"]):
            np.testing.assert_array_equal(a, b, err_msg=f"image {number}")
        np.testing.assert_array_equal(ours["logits"], theirs["logits"])
        assert result["saturations"] == on_static["saturations"]
        assert result["cycles"] - on_static["cycles"] == scan_cycles(repeated[number]) - (n_inputs + 1), number


def test_run_without_passes_scans_once(tmp_path):
    """``n_layers = 0`` (or ``timesteps = 0``): timestep 0's scan, then done, as the core without event input ends
    after its scan: ``w_0 + 2`` cycles (no state row to clear)."""
    arch = event_arch()
    frames = sparse_frames(4, 2, 3, N_INPUTS, 15)
    words = [input_words(arch, sample) for sample in frames]
    for registers in ({"n_layers": 0, "timesteps": 3}, {"n_layers": 1, "timesteps": 0}):
        image = {"registers": dict(registers, n_inputs=0, state_rows=0)}
        results = run_inferences(image, words, arch, tmp_path / str(registers["n_layers"]), simulator="icarus",
                                 jobs=1)
        for sample, result in zip(frames, results):
            assert result["cycles"] == np.count_nonzero(sample[0]) + 2
            assert result["trace_count"] == 0


def test_words_out_of_timestep_order_end_the_input(tmp_path):
    """The host sorts the words by timestep: a word of another timestep ends a scan, so timestep 0's words put
    after timestep 2's are never taken, and stop the scans of timesteps 3 and 4 as well (only frame 2 enters;
    frame 1 is empty)."""
    arch = event_arch()
    network = build_network(arch)
    image, fanout = compile_program(arch, network)
    image["registers"]["timesteps"] = T
    sample = sparse_frames(5, 1, T, N_INPUTS, 15)[0]
    sample[0, 2], sample[3, 1] = 15, 7
    words = input_words(arch, sample)
    timestep = input_layout(arch).unpack(words)["timestep"]
    unsorted = ([w for w, t in zip(words, timestep) if 1 <= t <= 2] + [w for w, t in zip(words, timestep) if t == 0]
                + [w for w, t in zip(words, timestep) if t >= 3])
    sorted_run, stopped = run_inferences(image, [words, unsorted], arch, tmp_path, simulator="icarus", jobs=1)
    complete = reference(arch, network, fanout, image, sample)
    assert (sorted_run["trace"], sorted_run["cycles"]) == (complete["trace"], complete["cycles"])
    only_frame_2 = np.zeros_like(sample)
    only_frame_2[2] = sample[2]
    expected = reference(arch, network, fanout, image, only_frame_2)
    assert (stopped["trace"], stopped["state"], stopped["cycles"]) == \
        (expected["trace"], expected["state"], expected["cycles"])


def test_over_the_bus_with_idle_cycles_a_reset_and_coverage(tmp_path):
    """The program and results over the host bus with random idle cycles, the first inference aborted by a reset
    (the host writes the control registers and the input's word count again): the same results as the
    reference; the functional coverage sees the event input's transitions (SCAN after NEXT, SCAN holding) and
    nothing the states do not declare."""
    from spikecore.rtl import coverage

    arch = event_arch()
    network = build_network(arch)
    image, fanout = compile_program(arch, network)
    image["registers"]["timesteps"] = T
    frames = sparse_frames(7, 2, T, N_INPUTS, 15)
    words = [input_words(arch, sample) for sample in frames]
    results = run_inferences(image, words, arch, tmp_path, simulator="icarus", jobs=1, backdoor=False, idle_seed=7,
                             reset_after_cycles=40, coverage=True)
    for number, (sample, result) in enumerate(zip(frames, results)):
        expected = reference(arch, network, fanout, image, sample)
        assert (result["trace"], result["state"], result["cycles"], result["saturations"]) == \
            (expected["trace"], expected["state"], expected["cycles"], expected["saturations"]), number
    collection = coverage.collect(arch, [result["coverage"] for result in results])
    assert collection["unexpected"] == []
    transitions = collection["coverpoints"]["controller.transitions"]
    # every timestep's scan ends in DESC, each after the first follows NEXT (the aborted run adds a few)
    assert transitions["NEXT -> SCAN"] >= 2 * (T - 1) and transitions["SCAN -> DESC"] >= 2 * T
    assert transitions["SCAN -> SCAN"] > 0 and transitions.get("NEXT -> DESC", 0) > 0
