"""The contract suite's programs are worth comparing on: the cases together cover every construct
kind and every architecture feature, every case's network is active (events at every emitting stage in some
image; for the methods' random networks, somewhere), and one case saturates."""
from .implementations import Golden, emitting
from .programs import CASES, CONSTRUCT_KINDS, build
from .suite import REFERENCES, outcomes


def test_the_cases_cover_every_construct_kind_and_architecture():
    kinds = set().union(*(build(case)[3] for case in CASES))
    assert kinds == CONSTRUCT_KINDS
    archs = {build(case)[1] for case in CASES}
    assert {arch.schedule for arch in archs} == {"timestep_major", "layer_major"}
    assert {arch.multivalue for arch in archs} == {"repeat", "bitserial"}
    assert {arch.update_steps > 1 for arch in archs} == {True, False}   # one neuron per step, and every lane
    assert {bool(arch.banks) for arch in archs} == {True, False}


def test_every_case_is_active_and_one_saturates():
    golden = REFERENCES["golden"]
    assert isinstance(golden, Golden)
    saturating = []
    for case in CASES:
        program = build(case)[0]
        got = outcomes(golden, case)
        if CASES[case].program.startswith("method-"):
            assert sum(len(idx) for o in got for stage in o.events for idx, _ in stage) > 0, case
            continue
        for position, stage in enumerate(emitting(program)):
            assert sum(len(idx) for o in got for idx, _ in o.events[position]) > 0, \
                (case, program.layers[stage].name)
        if any(o.saturations for o in got):
            saturating.append(case)
            assert len({o.saturations for o in got}) > 1, case   # counted per image, not per batch
    assert saturating == ["constructs-s9@narrow"]


#: The construct each method's network must use on the core (a neuron for the others).
METHOD_KINDS = {"ds-resnet": "sum", "sew-add": "sum", "dst-dsnn": "sum", "sew-and": "gate", "sew-iand": "gate",
                "sew-or": "gate", "sew-xor": "gate", "lsn": "gate", "dst-fsnn": "gate"}


def test_every_method_runs_its_construct():
    for case in CASES:
        if not case.startswith("method-"):
            continue
        name = case.split("@")[0][len("method-"):]
        kinds = build(case)[3]
        assert METHOD_KINDS.get(name, "neuron") in kinds, (name, kinds)
        if name == "ms-resnet":
            assert "carry" in kinds   # the membrane shortcut is used
