"""The simulator's engines beyond the contract suite (which compares the dense engine with the event-by-event
``tables`` engine and the golden model in every field): each engine's performance mode (``keep_events=False``)
and batching change nothing but the events kept; the dense engine runs only where its checks against the memory
tables pass, and a program whose tables disagree with its stage graph runs on ``tables``, which follows the
tables as the core does."""
import copy
import dataclasses

import numpy as np
import pytest

from contract.generators import PIXEL_MAX, compile_random
from spikecore.sim.engine import MemoryTables, simulate, simulate_batch


@pytest.mark.parametrize("engine", ["dense", "tables"])
def test_performance_mode_and_batching_change_only_the_kept_events(digits_program, arch, digits_test_set, engine):
    pixels = digits_test_set[0][:40].reshape(40, -1).numpy()
    full = simulate_batch(digits_program, arch, pixels, engine=engine)
    fast = simulate_batch(digits_program, arch, pixels, engine=engine, keep_events=False, batch=16)
    assert [r.engine for r in fast] == [engine] * 40
    assert all(f.differences(r, events=False) == [] for f, r in zip(fast, full))
    assert all(not any(f.events) for f in fast) and all(any(r.events) for r in full)
    assert sum(r.layers[0].output_events for r in fast) > 1000  # active, so the comparison means something
    # one image alone gives the same as inside a batch
    assert simulate(digits_program, arch, pixels[7], engine=engine).differences(full[7]) == []


def test_tables_that_disagree_with_the_graph_run_event_by_event(digits_program, arch, digits_test_set):
    pixels = digits_test_set[0][:3].reshape(3, -1).numpy()
    tampered = copy.deepcopy(digits_program)
    weights = tampered.memories["weights"]["w"]
    row = int(np.nonzero(np.any(weights != 0, axis=1))[0][5])
    weights[row] = weights[row] + 1
    plan = MemoryTables(tampered).dense(tampered, arch)
    assert plan.reason is not None and "synapse tables do not encode" in plan.reason
    with pytest.raises(ValueError, match="dense engine cannot run"):
        simulate_batch(tampered, arch, pixels, engine="dense")
    auto = simulate_batch(tampered, arch, pixels)
    tables = simulate_batch(tampered, arch, pixels, engine="tables")
    assert [r.engine for r in auto] == ["tables"] * 3
    assert all(a.differences(t) == [] for a, t in zip(auto, tables))
    # the tampered weight really changed what the core computes
    clean = simulate_batch(digits_program, arch, pixels)
    assert any(a.differences(c) for a, c in zip(auto, clean))


@pytest.mark.parametrize("field, value, message", [
    ("in_region", 3, "does not read the events"),
    ("clear_acc", 0, "descriptor field clear_acc"),
    ("update", 0, "update flag"),
])
def test_descriptor_checks(digits_program, arch, field, value, message):
    tampered = copy.deepcopy(digits_program)
    p = tampered.layers[1].update_pass
    tampered.memories["layers"][field][p] = value
    plan = MemoryTables(tampered).dense(tampered, arch)
    assert plan.reason is not None and message in plan.reason


def test_unknown_engine_is_rejected(digits_program, arch, digits_test_set):
    with pytest.raises(ValueError, match="engine: expected one of"):
        simulate_batch(digits_program, arch, digits_test_set[0][:1].reshape(1, -1).numpy(), engine="fast")


def test_a_batch_whose_accumulators_saturate_runs_on_tables():
    """Accumulators narrower than the compiler proved necessary: the core clamps them after every pass, which
    only the event-by-event engine reproduces, so the batch runs there."""
    program, arch, _ = compile_random(3, 5, 6, 4, 3)
    narrow = dataclasses.replace(arch, acc_bits=6)
    program.arch_fingerprint = narrow.fingerprint()
    pixels = np.random.default_rng(1).integers(0, PIXEL_MAX + 1, size=(3, 25))
    auto = simulate_batch(program, narrow, pixels)
    tables = simulate_batch(program, narrow, pixels, engine="tables")
    assert [r.engine for r in auto] == ["tables"] * 3 and all(r.saturations > 0 for r in tables)
    assert all(a.differences(t) == [] for a, t in zip(auto, tables))
