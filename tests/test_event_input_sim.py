"""The simulator on a core with ``event_input`` (``docs/core.md``, "Event input"): frames ``[N, T, n_inputs]`` that
change from one timestep to the next, region 0 holding frame ``t``'s nonzero values during timestep ``t``, and the
input scan at the start of every timestep (``w_t + 2`` cycles instead of ``n_inputs + 1`` once).

The digits network is compiled on a small event_input core; the frames are random, sparse and different at every
timestep, some of them empty. Both engines must agree exactly (every event, logit, membrane, cycle, account and
saturation); the cycles are recomputed here from the frames and the events by the cycle formula; the events of
every stage are the golden model's on the same frames; the same images as frames all equal give, on a core
without event_input, the same results but for the scan's cycles.
"""
import dataclasses

import numpy as np
import pytest
import torch

from spikecore.accel.contract.checkpoint import load_checkpoint, shipped_checkpoint_path
from spikecore.accel.contract.compiler import compile_network
from spikecore.accel.contract.config import arch_from_dict, default_arch
from spikecore.accel.contract.layouts import REGION_INPUT
from spikecore.errors import UserError
from spikecore.models import load_digits_split
from spikecore.sim.cost import setup_accesses
from spikecore.sim.engine import simulate, simulate_batch
from spikecore.sim.schedule import setup_cycles_of

SAMPLES = 6
VARIANTS = {"repeat": {}, "bitserial-split": {"multivalue": "bitserial", "update_lanes": 4}}


def small_arch(event_input: bool, **changes):
    """The default core with event_input (or without), up to 8 timesteps, its inputs memory deep enough for an
    inference's input events (memories.inputs = 256: every value of 4 frames of 64 pixels)."""
    data = default_arch().to_dict()
    data.update(name="event-digits" if event_input else "static-digits", event_input=event_input, max_timesteps=8,
                banks=[], **changes)
    data["memories"] = dict(data["memories"], inputs=256)
    return arch_from_dict(data)


@pytest.fixture(scope="module")
def digits_net():
    net, _ = load_checkpoint(shipped_checkpoint_path())
    return net


@pytest.fixture(scope="module", params=list(VARIANTS))
def compiled(request, digits_net):
    """``(program, arch)`` on the event_input core and on the same core without it, per variant."""
    event, static = small_arch(True, **VARIANTS[request.param]), small_arch(False, **VARIANTS[request.param])
    return compile_network(digits_net, event), event, compile_network(digits_net, static), static


def random_frames(program, seed: int = 3, density: float = 0.3) -> np.ndarray:
    """Sparse integer frames ``[SAMPLES, T, n_inputs]``, different at every timestep; sample n's timestep n % T is
    empty (and sample 0's last one too)."""
    rng = np.random.default_rng(seed)
    shape = (SAMPLES, program.timesteps, program.n_inputs)
    frames = rng.integers(1, program.input_max + 1, shape) * (rng.random(shape) < density)
    for n in range(SAMPLES):
        frames[n, n % program.timesteps] = 0
    frames[0, -1] = 0
    assert all(len({frames[n, t].tobytes() for t in range(program.timesteps)}) > 1 for n in range(SAMPLES))
    return frames


def additions(v: int, arch) -> int:
    """a(v): the ACC cycles of an event of value v (docs/core.md), no max stage here."""
    return bin(v).count("1") if arch.multivalue == "bitserial" else v


def formula_cycles(program, arch, frames: np.ndarray, result) -> tuple:
    """``(setup cycles, cycles)`` of one inference by docs/core.md's formula, with the scan ``sum_t (w_t + 2)``,
    from the frames (region 0 at timestep t: frame t's nonzero values) and the result's events of every stage."""
    layers = {k: np.asarray(v, np.int64) for k, v in program.memories["layers"].items()}
    count = np.asarray(program.memories["pointers"]["count"], np.int64)
    pass_stage = [i for i, layer in enumerate(program.layers) for _ in layer.sources]
    steps = arch.update_steps
    c = 2 + (steps > 1)                                    # URD, UWR (+ USUM)
    setup = program.state_rows * max(steps, arch.acc_slots) \
        + sum(int(np.count_nonzero(frames[t])) + 2 for t in range(program.timesteps))
    cycles = setup
    regions = {}
    for t in range(program.timesteps):
        nz = np.nonzero(frames[t])[0]
        regions[REGION_INPUT] = (nz, frames[t][nz])
        for p, stage in enumerate(pass_stage):
            idx, val = regions[int(layers["in_region"][p])]
            rows = count[layers["ptr_base"][p] + idx]
            cycles += 3 + sum(4 + int(r) * (2 + additions(int(v), arch)) for r, v in zip(rows, val))  # DESC LATCH EV
            if layers["update"][p]:
                out = result.events[stage][t]
                regions[int(layers["out_region"][p])] = out
                cycles += 1 + int(layers["n_groups"][p]) * steps * c + len(out[0])
            cycles += 1                                    # NEXT
    return setup, cycles


def test_engines_agree_and_cycles_follow_the_formula(compiled):
    program, arch, _, _ = compiled
    frames = random_frames(program)
    tables = simulate_batch(program, arch, frames, engine="tables")
    dense = simulate_batch(program, arch, frames, engine="dense", batch=4)
    assert [r.engine for r in dense] == ["dense"] * SAMPLES and [r.engine for r in tables] == ["tables"] * SAMPLES
    assert all(d.differences(t) == [] for d, t in zip(dense, tables))
    assert all(d.layers == t.layers for d, t in zip(dense, tables))
    for n, result in enumerate(tables):
        assert (result.setup_cycles, result.cycles) == formula_cycles(program, arch, frames[n], result)
        assert result.setup_cycles == setup_cycles_of(program, arch, np.count_nonzero(frames[n], axis=1))
        assert result.cycles == result.setup_cycles + sum(a.cycles for a in result.layers)
    # the frames keep the network busy, so the comparisons mean something
    assert all(r.layers[0].output_events > 20 and r.layers[1].output_events > 0 for r in tables)
    # performance mode, and one inference alone ([T, n_inputs] or [T, C, H, W]) give the same
    fast = simulate_batch(program, arch, frames, engine="dense", keep_events=False)
    assert all(f.differences(t, events=False) == [] for f, t in zip(fast, tables))
    alone = simulate(program, arch, frames[2].reshape((program.timesteps,) + tuple(program.input_shape)))
    assert alone.engine == "dense" and alone.differences(tables[2]) == []


def test_input_events_of_timestep_t_are_frame_t(compiled):
    """The passes reading region 0 see frame t's nonzero values at timestep t: their accounts count exactly those
    events and synapse rows, and every stage's events are the golden model's on the frames."""
    from spikecore.accel.flows.verify import emitting_layers, golden_hw_spikes
    from spikecore.models.hwexact import run_integer_network

    program, arch, _, _ = compiled
    frames = random_frames(program, seed=11)
    results = simulate_batch(program, arch, frames, engine="tables")
    count = np.asarray(program.memories["pointers"]["count"], np.int64)
    for layer in program.layers:
        for src in layer.sources:
            if src.input >= 0:
                continue
            base = int(program.memories["layers"]["ptr_base"][src.pass_index])
            for n, result in enumerate(results):
                assert result.layers[program.layers.index(layer)].input_events == np.count_nonzero(frames[n])
                assert result.layers[program.layers.index(layer)].synapse_rows == \
                    sum(int(count[base + np.nonzero(frames[n, t])[0]].sum()) for t in range(program.timesteps))
    images = torch.from_numpy(frames).reshape((SAMPLES, program.timesteps) + tuple(program.input_shape))
    golden = run_integer_network(program.integer_stages(), images, program.timesteps, arch.membrane_bits,
                                 arch.value_bits)
    for n, result in enumerate(results):
        expected = golden_hw_spikes(program, arch, golden, n)
        assert len(expected) == len(emitting_layers(program)) >= 2
        for i, dense in zip(emitting_layers(program), expected):
            assert np.array_equal(result.spikes(i, dense.shape[1], program.timesteps), dense), (n, i)
        assert np.array_equal(result.logits, golden["logits"][n].numpy())
        assert result.saturations == 0 and golden["saturations"] == 0
    # the same by the verify flow
    from spikecore.accel.flows.verify import verify
    report, _ = verify(program, arch, images, None, results)
    assert report["bit_exact"], report["mismatches"][:3]


def test_an_image_on_the_event_core_costs_its_scans_only(compiled, digits_net):
    """The same images: as images or as frames all equal on either core, the same results; on the event core the
    cycles differ from the static core's by exactly sum_t (w_t + 2) - (n_inputs + 1)."""
    program, arch, static_program, static = compiled
    images = load_digits_split()[2][:SAMPLES].reshape(SAMPLES, -1).numpy().astype(np.int64)
    repeated = np.repeat(images[:, None], program.timesteps, axis=1)
    on_static = simulate_batch(static_program, static, images, engine="tables")
    for engine in ("tables", "dense"):
        as_images = simulate_batch(program, arch, images, engine=engine)
        as_frames = simulate_batch(program, arch, repeated, engine=engine)
        static_frames = simulate_batch(static_program, static, repeated, engine=engine)
        assert all(a.differences(b) == [] for a, b in zip(as_images, as_frames))
        assert all(a.differences(b) == [] for a, b in zip(static_frames, on_static))
        for image, event_result, static_result in zip(images, as_images, on_static):
            scans = program.timesteps * (np.count_nonzero(image) + 2) - (program.n_inputs + 1)
            assert event_result.cycles - static_result.cycles == scans
            assert event_result.setup_cycles - static_result.setup_cycles == scans
            assert event_result.differences(static_result) == ["cycles", "setup_cycles"]


def test_saturating_accumulators_run_event_by_event():
    """Accumulators narrower than the compiler's proof: the batch runs on tables in the core's order, auto equals
    it and the saturations are counted per inference."""
    net, _ = load_checkpoint(shipped_checkpoint_path())
    arch = small_arch(True)
    program = compile_network(net, arch)
    narrow = dataclasses.replace(arch, acc_bits=9)
    program.arch_fingerprint = narrow.fingerprint()
    frames = random_frames(program, seed=5, density=0.5)
    auto = simulate_batch(program, narrow, frames)
    tables = simulate_batch(program, narrow, frames, engine="tables")
    assert [r.engine for r in auto] == ["tables"] * SAMPLES and any(r.saturations for r in tables)
    assert all(a.differences(t) == [] for a, t in zip(auto, tables))


def test_frames_the_core_cannot_take_are_refused(compiled):
    program, arch, static_program, static = compiled
    frames = random_frames(program)
    with pytest.raises(UserError, match="inputs: input 0 changes from one timestep to the next"):
        simulate_batch(static_program, static, frames)
    high = frames.copy()
    high[4, 1, 3] = program.input_max + 1
    with pytest.raises(UserError, match="test frames: input 4 has values outside"):
        simulate_batch(program, arch, high, source="test frames")
    small = dataclasses.replace(arch, memories=dataclasses.replace(arch.memories, inputs=20))
    program_small = dataclasses.replace(program, arch_fingerprint=small.fingerprint())
    with pytest.raises(UserError, match=r"input \d+ has \d+ input events, more than memories.inputs = 20"):
        simulate_batch(program_small, small, frames)
    with pytest.raises(ValueError, match="inputs of shape"):
        simulate_batch(program, arch, frames[:, :2])


def test_scan_costs_need_the_words_on_an_event_core(compiled):
    program, arch, static_program, static = compiled
    with pytest.raises(ValueError, match="event_input"):
        setup_cycles_of(program, arch)
    with pytest.raises(ValueError, match="event_input"):
        setup_accesses(program.state_rows, program.n_inputs, 30, arch)
    words = np.array([[3, 0, 5, 1], [0, 0, 0, 0]])
    clear = program.state_rows * max(arch.update_steps, arch.acc_slots)
    assert list(setup_cycles_of(program, arch, words)) == [clear + 17, clear + 8]
    assert setup_accesses(program.state_rows, program.n_inputs, 9, arch, timesteps=4)["inputs"] == (13, 0)
    assert setup_accesses(program.state_rows, program.n_inputs, 9, arch, timesteps=4)["events"] == (0, 9)
    assert setup_accesses(static_program.state_rows, 64, 9, static)["inputs"] == (64, 0)
