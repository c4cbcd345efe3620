"""Planted errors (issue 22, item 4): the contract suite's checks fail on an implementation with a deliberate bug.

Each plant loads a mutated copy of one module's source text, with exact snippets replaced (each must occur
exactly once, so a refactor that moves the code makes the plant fail loudly instead of planting nothing), as
``tests/test_formal.py``'s ``mutant()`` does for the RTL; the copy runs in-process beside the clean modules,
which stay the references. The suite's own comparisons (``suite.differences``, ``suite.consistency_problems``,
``suite.schedule_differences``) then run on :data:`PLANT_CASES`, and the test asserts the checks listed
for the plant fail (``docs/verification.md`` lists what else caught each).

In the golden model (``models/hwexact.py``, the ``Golden`` adapter on the copy):

- ``golden-leak-truncates``: the leak ``u >> shift`` rounds toward zero instead of down (floor);
- ``golden-fires-on-equal``: a neuron fires on ``v >= theta`` instead of ``v > theta``;
- ``golden-misses-membrane-saturation``: the membrane sum is not clamped to ``membrane_bits`` (nor counted);
- ``golden-max-adds``: a ``max`` stage sums its window instead of taking its maximum.

In the simulator's ``tables`` engine (the ``TablesEngine`` adapter on ``simulate_batch(..., engine="tables")``
of a copy of ``sim/engine.py`` rewired to the mutated module: :func:`simulator_with`; the clean dense engine
stays the cycle reference):

- ``tables-weight-row-off-by-one`` (``sim/tables.py``): a synapse's weight row is read one address low;
- ``tables-misses-membrane-saturation`` (``sim/kernels.py``, wired into the tables engine only): the
  membrane sum is not clamped to ``membrane_bits`` (nor counted);
- ``tables-pass-cycle-off-by-one`` (``sim/tables.py``): every timestep-major pass costs one cycle more;
- ``tables-max-adds`` (``sim/tables.py``): a ``max`` stage's pass adds its events as a sum's does.

And one the two engines share (``sim/schedule.py``, both engines rewired): ``schedule-emit-costs-two``, an
emitted event costs two cycles; the engines then agree with each other, and the schedule walk
(``verify.emission_schedule``, written apart) and the clean references catch it.

A control copy with no snippet replaced passes every check, so the failures come from the plants alone.
"""
from __future__ import annotations

import importlib
import inspect
import itertools
import sys
import types
from dataclasses import dataclass

import pytest

from .implementations import DenseEngine, Golden, TablesEngine, compared_fields
from .suite import consistency_problems, differences, schedule_differences

GOLDEN = "spikecore.models.hwexact"
KERNELS, SCHEDULE, TABLES = "spikecore.sim.kernels", "spikecore.sim.schedule", "spikecore.sim.tables"
#: The simulator's modules, each after those it imports from; ``spikecore.sim.engine.simulate_batch`` is the entry.
SIM_MODULES = ("spikecore.sim.kernels", "spikecore.sim.schedule", "spikecore.sim.results", "spikecore.sim.dense",
               "spikecore.sim.tables", "spikecore.sim.engine")
_COPIES = itertools.count()
#: The cases the plants run on: the digits network in both schedules, construct programs (every kind, in
#: both multi-value modes and schedules), the saturating one and a VGG with max stages.
PLANT_CASES = ("digits@default", "digits@layer-major", "constructs-s5@lane-parallel", "constructs-s6@bitserial",
               "constructs-s9@layer-major", "constructs-s9@narrow", "vggmax-s15@max-pool")


@dataclass(frozen=True)
class Plant:
    name: str
    module: str                 # the module whose copy is mutated
    snippets: tuple             # ((original, replacement), ...): each original occurs exactly once
    adapter: str                # "golden" or "tables": the implementation run on the mutated copy
    caught_by: frozenset        # checks that must fail: "equals_reference[FIELD]", "self_consistent", "schedule"


PLANTS = [
    Plant("golden-leak-truncates", GOLDEN,
          (("u = torch.floor(u * 2.0 ** -shift) if u.is_floating_point() else u >> shift",
            "u = torch.trunc(u * 2.0 ** -shift) if u.is_floating_point() else "
            "torch.div(u, 1 << shift, rounding_mode='trunc')"),),
          "golden", frozenset({"equals_reference[events]", "equals_reference[logits]", "schedule"})),
    Plant("golden-fires-on-equal", GOLDEN,
          (("fired = torch.sub(v, thresholds, out=out.unsqueeze(0) if single else None).clamp_(0, 1)",
            "fired = torch.sub(v, thresholds - 1, out=out.unsqueeze(0) if single else None).clamp_(0, 1)"),
           ("fired = v > thresholds", "fired = v >= thresholds")),
          "golden", frozenset({"equals_reference[events]", "equals_reference[logits]", "schedule"})),
    Plant("golden-misses-membrane-saturation", GOLDEN,
          (("v, saturations = saturate(u + x.unsqueeze(0), bits)", "v, saturations = u + x.unsqueeze(0), 0"),),
          "golden", frozenset({"equals_reference[saturations]", "equals_reference[events]"})),
    Plant("golden-max-adds", GOLDEN,
          (('accumulate = max_map if stage.kind == "max" else linear_map', "accumulate = linear_map"),),
          "golden", frozenset({"equals_reference[events]", "equals_reference[logits]", "schedule"})),
    Plant("tables-weight-row-off-by-one", TABLES,
          (("self.weights[self.syn_wrow[offsets]]", "self.weights[self.syn_wrow[offsets] - 1]"),),
          "tables", frozenset({"equals_reference[events]", "equals_reference[logits]", "equals_reference[state]",
                               "equals_reference[cycles]", "self_consistent"})),
    Plant("tables-misses-membrane-saturation", KERNELS,
          (("v, saturations = saturate(leak(u, shift) + x, membrane_bits)",
            "v, saturations = leak(u, shift) + x, 0"),),
          "tables", frozenset({"equals_reference[saturations]", "equals_reference[events]",
                               "equals_reference[state]"})),
    Plant("tables-pass-cycle-off-by-one", TABLES,
          (("a.cycles = PASS_CYCLES + a.accumulate_cycles", "a.cycles = PASS_CYCLES + 1 + a.accumulate_cycles"),),
          "tables", frozenset({"equals_reference[cycles]", "equals_reference[layer_cycles]",
                               "equals_reference[accounts]", "schedule"})),
    Plant("tables-max-adds", TABLES,
          (('maximum = arch.max_pool and int(d["kind"][p]) == KIND_MAX', "maximum = False"),),
          "tables", frozenset({"equals_reference[events]", "equals_reference[logits]", "equals_reference[cycles]",
                               "equals_reference[accounts]", "schedule"})),
]
#: A mistake in the cycle model both engines share: they agree with each other, the schedule walk does not.
SHARED_PLANT = Plant("schedule-emit-costs-two", SCHEDULE,
                     (("EMIT = 1    # per emitted event", "EMIT = 2    # per emitted event"),),
                     "tables", frozenset({"equals_reference[cycles]", "equals_reference[layer_cycles]", "schedule"}))


def mutant(module, snippets) -> types.ModuleType:
    """A copy of ``module`` with every ``(original, replacement)`` applied; each original must occur exactly once."""
    source = inspect.getsource(module)
    for original, replacement in snippets:
        assert source.count(original) == 1, f"{original!r} must occur exactly once in {module.__name__}"
        source = source.replace(original, replacement)
    copy = types.ModuleType(f"{module.__name__}_mutant_{next(_COPIES)}")
    copy.__package__ = module.__package__
    copy.__file__ = module.__file__
    sys.modules[copy.__name__] = copy   # dataclasses look their module up while the classes are made
    try:
        exec(compile(source, module.__file__, "exec"), vars(copy))
    finally:
        del sys.modules[copy.__name__]
    return copy


def simulator_with(module_name: str, mutated) -> types.ModuleType:
    """``spikecore.sim.engine`` (a copy) whose engines run on the mutated copy of one of the simulator's
    modules: every simulator module that imports from a replaced one is copied in turn, with each name it
    took from the original (a module, function, class or constant) bound to the copy's."""
    replaced = {module_name: (importlib.import_module(module_name), mutated)}
    for name in SIM_MODULES:
        if name in replaced:
            continue
        try:
            module = importlib.import_module(name)
        except ImportError:   # an older layout of the simulator
            continue
        rebinds = {}
        for key, value in vars(module).items():
            for original, copy in replaced.values():
                if value is original:
                    rebinds[key] = copy
                elif not key.startswith("__") and vars(original).get(key, rebinds) is value:
                    rebinds[key] = getattr(copy, key)
        if rebinds:
            copy = mutant(module, ())
            for key, value in rebinds.items():
                setattr(copy, key, value)
            replaced[name] = (module, copy)
    engine = "spikecore.sim.engine"
    return replaced[engine][1] if engine in replaced else importlib.import_module(engine)


def planted(plant: Plant, snippets=None, adapter=None):
    """The adapter of a plant on its mutated copy (``snippets`` overrides the plant's: ``()`` for the control;
    ``adapter`` its adapter: ``"dense"`` runs the dense engine of a mutated simulator)."""
    module = importlib.import_module(plant.module)
    mutated = mutant(module, plant.snippets if snippets is None else snippets)
    adapter = adapter or plant.adapter
    if adapter == "golden":
        return Golden(module=mutated)
    simulate_batch = simulator_with(plant.module, mutated).simulate_batch
    engine = DenseEngine if adapter == "dense" else TablesEngine
    return engine(simulate_batch=simulate_batch)


def failing_checks(implementation) -> dict:
    """Every check of the suite that fails on the implementation: check -> ids of the cases (:data:`PLANT_CASES`)."""
    failed = {}
    for case in PLANT_CASES:
        checks = {f"equals_reference[{field}]": differences(implementation, case, field)
                  for field in compared_fields(implementation)}
        checks["self_consistent"] = consistency_problems(implementation, case)
        checks["schedule"] = schedule_differences(implementation, case)
        for check, found in checks.items():
            if found:
                failed.setdefault(check, []).append(case)
    return failed


@pytest.mark.parametrize("plant", PLANTS, ids=[p.name for p in PLANTS])
def test_a_planted_error_fails_the_contract(plant):
    failed = failing_checks(planted(plant))
    missing = plant.caught_by - set(failed)
    assert not missing, f"{plant.name}: checks {sorted(missing)} did not fail; failed: {failed}"


@pytest.mark.parametrize("adapter", ["golden", "tables"])
def test_an_unmutated_copy_passes_every_check(adapter):
    plant = next(p for p in PLANTS if p.adapter == adapter)
    assert failing_checks(planted(plant, snippets=())) == {}


def test_a_mistake_both_engines_share_is_caught_by_the_schedule_walk():
    """Both engines take their cycle costs from ``sim/schedule.py``: with EMIT costing two cycles there, the two
    agree with each other on every case, and only the schedule walked apart (``verify.emission_schedule``; the
    RTL's cycles, where it runs) and a clean reference fail them."""
    tables, dense = planted(SHARED_PLANT), planted(SHARED_PLANT, adapter="dense")
    for case in PLANT_CASES:
        for field in ("cycles", "layer_cycles", "accounts", "events"):
            assert differences(dense, case, field, reference=tables) == [], (case, field)
    for implementation in (tables, dense):
        failed = failing_checks(implementation)
        assert SHARED_PLANT.caught_by <= set(failed), (implementation, failed)
