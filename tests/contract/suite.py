"""The contract suite: tests written once against :class:`~contract.implementations.Implementation`, inherited by
one test class per implementation (``test_contract.py``), in the style of pymtl3's test classes written
against the reference and reused at every level.

:class:`ContractSuite` holds the tests; a subclass names its ``implementation`` and its cases (ids of
``programs.CASES``, the default run's and ``slow_cases`` under ``@pytest.mark.slow``). ``conftest.py``
parametrizes every test by the class's cases, and the comparison test by the fields the implementation
and its reference both report (``implementations.compared_fields``): a field one side cannot report is not
compared, and no test stands in for it.

The checks (every integer compared with ``==``, arrays with ``numpy.array_equal``):

- ``test_equals_reference[field]``: the field of every image equals the reference's
  (``implementations.reference_for``: the golden model for events, logits and saturations, the ``tables``
  engine for state, cycles, accounts and traces);
- ``test_outcome_is_self_consistent``: the implementation reports exactly what it declares; its events are
  well formed (ascending hardware indices inside the stage, never on a padding lane, values within what the
  stage kind can emit); where reported: cycles = setup + the per-stage cycles, the trace count and overflow
  follow from the events and the trace memory, the logits are the readout's level-0 membranes of the
  state, the measured busy time equals the ``cycles`` register, no trace word names a neuron outside its
  stage;
- ``test_cycles_follow_the_schedule``: ``docs/core.md``'s schedule walked over the implementation's own
  events and the Program's pointer counts (``spikecore.accel.flows.verify.emission_schedule``, written apart from the
  simulator) gives its cycles (the cycle reference's where it reports none: the golden model's spikes must
  explain the ``tables`` engine's cycles), and, where the RTL stamps its trace writes, the cycle of every
  trace write.

:func:`differences` is the comparison itself; ``test_planted_errors.py`` runs it on mutated implementations.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .implementations import (COMPARED_FIELDS, REFERENCE_IMPLEMENTATIONS, Implementation, Outcome, compared_fields,
                              emitting, reference_for, schedule_view)
from .programs import CASES, build

_CACHE = {}
_DRAWN = itertools.count()


@dataclass(eq=False)
class Subject:
    """What the suite runs: a program on an architecture and its images (int64 ``[N, n_inputs]``); a case of
    ``programs.CASES`` (:func:`as_subject`) or one drawn by a fuzz test (:meth:`drawn`). ``host_bus``: the RTL
    loads the program and reads its results over the host bus instead of the simulator's backdoor."""

    id: str
    program: object
    arch: object
    pixels: np.ndarray
    host_bus: bool = False

    @classmethod
    def drawn(cls, program, arch, pixels, host_bus: bool = False) -> "Subject":
        """A subject of its own (a fresh id), for programs a test draws."""
        from spikecore.accel.contract.inputs import input_frames

        frames = input_frames(program, np.asarray(pixels, np.int64))  # images stay [N, n_inputs]
        return cls(f"drawn-{next(_DRAWN)}", program, arch, frames[:, 0] if frames.strides[1] == 0 else frames,
                   host_bus)


_SUBJECTS = {}


def as_subject(case) -> Subject:
    """``case`` itself if a :class:`Subject`, else the subject of the case id (built once)."""
    if isinstance(case, Subject):
        return case
    if case not in _SUBJECTS:
        program, arch, pixels, _ = build(case)
        _SUBJECTS[case] = Subject(case, program, arch, pixels, CASES[case].host_bus)
    return _SUBJECTS[case]


def outcomes(implementation: Implementation, case, images: int | None = None, workdir=None) -> list:
    """The implementation's outcomes on the first ``images`` images of a case or subject (all by default),
    computed once per implementation object and subject."""
    subject = as_subject(case)
    images = len(subject.pixels) if images is None else images
    key = (id(implementation), subject.id, images)
    hit = _CACHE.get(key)
    if hit is None or hit[0] is not implementation or hit[1] is not subject:
        hit = (implementation, subject, implementation.run(subject.program, subject.arch, subject.pixels[:images],
                                                           workdir, host_bus=subject.host_bus))
        _CACHE[key] = hit
    return hit[2]


#: One instance of each reference implementation, shared by every test.
REFERENCES = {name: cls() for name, cls in REFERENCE_IMPLEMENTATIONS.items()}


def _first(mask: np.ndarray):
    return tuple(int(v) for v in np.argwhere(mask)[0])


def field_differences(field: str, got: Outcome, expected: Outcome, program, sample: int) -> list:
    """Differences of one field of one image, as lines naming where (``[]``: equal)."""
    mine, theirs = getattr(got, field), getattr(expected, field)
    where = f"sample {sample}: {field}"
    if mine is None or theirs is None:
        return [f"{where}: not reported ({'got' if mine is None else 'reference'})"]
    if field == "events":
        found = []
        names = [program.layers[s].name for s in emitting(program)]
        if len(mine) != len(theirs):
            return [f"{where}: {len(mine)} emitting stages, the reference has {len(theirs)}"]
        for name, per_t, ref_t in zip(names, mine, theirs):
            if len(per_t) != len(ref_t):
                found.append(f"{where} of {name}: {len(per_t)} timesteps, the reference has {len(ref_t)}")
                continue
            for t, ((i1, v1), (i2, v2)) in enumerate(zip(per_t, ref_t)):
                if not (np.array_equal(i1, i2) and np.array_equal(v1, v2)):
                    a, b = dict(zip(i1.tolist(), v1.tolist())), dict(zip(i2.tolist(), v2.tolist()))
                    first = min(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                    found.append(f"{where} of {name} at timestep {t}: neuron {first} got {a.get(first, 0)}, "
                                 f"expected {b.get(first, 0)} ({len(i1)} events, expected {len(i2)})")
        return found
    if field in ("logits", "state"):
        mine, theirs = np.asarray(mine), np.asarray(theirs)
        if mine.shape != theirs.shape:
            return [f"{where}: shape {mine.shape}, expected {theirs.shape}"]
        if mine.dtype.kind not in "iu" or theirs.dtype.kind not in "iu":
            return [f"{where}: not integers ({mine.dtype}, {theirs.dtype})"]
        if not np.array_equal(mine, theirs):
            at = _first(mine != theirs)
            return [f"{where} differ at {at}: got {int(mine[at])}, expected {int(theirs[at])} "
                    f"({int(np.count_nonzero(mine != theirs))} differ)"]
        return []
    if field in ("layer_cycles", "accounts"):
        return [f"{where} of {program.layers[l].name}: got {a}, expected {b}"
                for l, (a, b) in enumerate(zip(mine, theirs)) if a != b] + \
            ([f"{where}: {len(mine)} stages, expected {len(theirs)}"] if len(mine) != len(theirs) else [])
    if type(mine) is not type(theirs) or mine != theirs:
        return [f"{where}: got {mine!r}, expected {theirs!r}"]
    return []


def differences(implementation: Implementation, case, field: str, images: int | None = None,
                workdir=None, reference: Implementation | None = None) -> list:
    """Every difference of ``field`` between the implementation and its reference on a case or subject."""
    if reference is None:
        name = reference_for(field, implementation)
        assert name is not None, f"no implementation but {implementation} reports {field}"
        reference = REFERENCES[name]
    subject = as_subject(case)
    program, case_id = subject.program, subject.id
    got = outcomes(implementation, subject, images, workdir)
    expected = outcomes(reference, subject, None, workdir)[:len(got)]
    found = [f"{implementation} vs {reference} on {case_id}: images {len(got)}, expected {len(expected)}"] \
        if len(got) != len(expected) or not got else []
    for n, (a, b) in enumerate(zip(got, expected)):
        found += [f"{implementation} vs {reference} on {case_id}, {line}"
                  for line in field_differences(field, a, b, program, n)]
    return found


def schedule_differences(implementation: Implementation, case, images: int | None = None,
                         workdir=None) -> list:
    """Where ``docs/core.md``'s schedule, walked over the implementation's events, disagrees with its cycles
    (or the cycle reference's, for an implementation without cycles) and with its trace-write stamps."""
    from spikecore.accel.flows.verify import emission_schedule

    subject = as_subject(case)
    program, arch, pixels, case_id = subject.program, subject.arch, subject.pixels, subject.id
    got = outcomes(implementation, subject, images, workdir)
    if "cycles" in implementation.reports:
        cycles, source = [o.cycles for o in got], implementation.name
    else:
        source = reference_for("cycles", implementation)
        cycles = [o.cycles for o in outcomes(REFERENCES[source], subject, None, workdir)[:len(got)]]
    found = []
    for n, outcome in enumerate(got):
        schedule, total = emission_schedule(program, arch, pixels[n], schedule_view(program, outcome.events))
        if total != cycles[n]:
            found.append(f"{implementation} on {case_id}, sample {n}: the schedule of its events takes {total} cycles, "
                         f"{source} reports {cycles[n]}")
        if outcome.event_cycles is not None:
            expected = [item[4] for item in schedule]
            if outcome.event_cycles != expected:
                k = next((k for k, (a, b) in enumerate(zip(outcome.event_cycles, expected)) if a != b),
                         min(len(expected), len(outcome.event_cycles)))
                found.append(f"{implementation} on {case_id}, sample {n}: trace write {k} at cycle "
                             f"{outcome.event_cycles[k] if k < len(outcome.event_cycles) else None}, the schedule "
                             f"says {expected[k] if k < len(expected) else None}")
    return found


def consistency_problems(implementation: Implementation, case, images: int | None = None,
                         workdir=None) -> list:
    """What in the implementation's own outcomes contradicts the contract (``[]``: nothing)."""
    subject = as_subject(case)
    program, arch, case_id = subject.program, subject.arch, subject.id
    got = outcomes(implementation, subject, images, workdir)
    found = []
    stages = emitting(program)
    for n, o in enumerate(got):
        where = f"{implementation} on {case_id}, sample {n}"
        if o.reported() != set(implementation.reports):
            found.append(f"{where}: reports {sorted(o.reported())}, declares {sorted(implementation.reports)}")
            continue
        if len(o.events) != len(stages):
            found.append(f"{where}: events of {len(o.events)} stages, {len(stages)} emit")
            continue
        words = 0
        for stage, per_t in zip(stages, o.events):
            layer = program.layers[stage]
            lanes_used = np.zeros(layer.n_groups * arch.lanes, bool)
            lanes_used[layer.hw_index(arch.lanes)] = True
            top = {"neuron": layer.levels, "gate": 1, "sum": (1 << arch.value_bits) - 1,
                   "max": (1 << arch.value_bits) - 1}[layer.kind]
            fired = np.zeros(layer.n_groups * arch.lanes, bool)
            if len(per_t) != program.timesteps:
                found.append(f"{where}: {layer.name} has events of {len(per_t)} timesteps, T = {program.timesteps}")
                continue
            for t, (idx, val) in enumerate(per_t):
                bad = (idx.dtype.kind != "i" or val.dtype.kind != "i" or len(idx) != len(val)
                       or np.any(np.diff(idx) <= 0) or (len(idx) and (idx.min() < 0 or idx.max() >= len(fired))))
                if bad:
                    found.append(f"{where}: {layer.name} timestep {t}: indices not ascending integers in the stage")
                    continue
                if np.any(~lanes_used[idx]):
                    padding = int(idx[~lanes_used[idx]][0])
                    found.append(f"{where}: {layer.name} timestep {t}: an event on padding lane {padding}")
                if len(val) and (val.min() < 1 or val.max() > top):
                    found.append(f"{where}: {layer.name} timestep {t}: values outside 1..{top}")
                fired[idx] = True
                words += len(idx)
            if arch.layer_major:
                words += int(fired.sum()) - sum(len(idx) for idx, _ in per_t)  # one word per train
        if o.trace_count is not None:
            if o.trace_count != min(words, arch.memories.trace) or o.trace_overflow != (words > arch.memories.trace):
                found.append(f"{where}: trace count {o.trace_count} (overflow {o.trace_overflow}) for {words} event "
                             f"words and a trace memory of {arch.memories.trace}")
        if o.layer_cycles is not None and o.cycles != o.setup_cycles + sum(o.layer_cycles):
            found.append(f"{where}: cycles {o.cycles} != setup {o.setup_cycles} + stages {sum(o.layer_cycles)}")
        if o.state is not None:
            last = program.layers[-1]
            rows = o.state[last.state_base:last.state_base + last.n_groups, :, 0].reshape(-1)
            if not np.array_equal(rows[last.hw_index(arch.lanes)], o.logits):
                found.append(f"{where}: the logits are not the readout's level-0 membranes")
        if o.cycles_measured is not None and o.cycles_measured != o.cycles:
            found.append(f"{where}: measured busy time {o.cycles_measured} != cycles register {o.cycles}")
        if o.stray:
            found.append(f"{where}: trace words naming no neuron of an emitting stage: {o.stray[:3]}")
        if o.saturations < 0:
            found.append(f"{where}: negative saturation count")
    return found


def problems(subject, implementations, workdir=None) -> list:
    """Every check of the suite on a case or subject, for each implementation: each compared field against its
    reference, self-consistency and the schedule (``[]``: the contract holds). The fuzz tests run their drawn
    programs through this."""
    found = []
    for implementation in implementations:
        for field in compared_fields(implementation):
            found += differences(implementation, subject, field, workdir=workdir)
        found += consistency_problems(implementation, subject, workdir=workdir)
        found += schedule_differences(implementation, subject, workdir=workdir)
    return found


class ContractSuite:
    """The contract's tests; subclasses set ``implementation``, ``cases`` and ``slow_cases`` (ids of
    ``programs.CASES``) and ``images`` (images to run, by case id or else by the case's program name;
    default all)."""

    implementation: Implementation = None
    cases: tuple = tuple(CASES)
    slow_cases: tuple = ()
    images: dict = {}

    def _images(self, case: str):
        return self.images.get(case, self.images.get(CASES[case].program))

    def test_equals_reference(self, case, field, contract_workdir):
        found = differences(self.implementation, case, field, self._images(case), contract_workdir)
        assert found == [], "\n".join(found[:10])

    def test_outcome_is_self_consistent(self, case, contract_workdir):
        found = consistency_problems(self.implementation, case, self._images(case), contract_workdir)
        assert found == [], "\n".join(found[:10])

    def test_cycles_follow_the_schedule(self, case, contract_workdir):
        found = schedule_differences(self.implementation, case, self._images(case), contract_workdir)
        assert found == [], "\n".join(found[:10])


__all__ = ["COMPARED_FIELDS", "ContractSuite", "Subject", "as_subject", "compared_fields", "consistency_problems",
           "differences", "outcomes", "problems", "schedule_differences"]
