"""What each implementation is compared on, and with which reference (``implementations.reference_for``): the
table of ``docs/verification.md``, so that a changed declaration changes the documented comparisons knowingly."""
from .implementations import DenseEngine, Golden, Icarus, TablesEngine, Verilator, compared_fields, reference_for

EXPECTED = {   # implementation -> {field: reference}
    "golden": {"events": "tables", "logits": "tables", "saturations": "tables"},
    "dense": {"events": "golden", "logits": "golden", "saturations": "golden", "state": "tables", "cycles": "tables",
              "setup_cycles": "tables", "layer_cycles": "tables", "accounts": "tables", "trace_count": "tables",
              "trace_overflow": "tables"},
    "tables": {"events": "golden", "logits": "golden", "saturations": "golden", "state": "dense", "cycles": "dense",
               "setup_cycles": "dense", "layer_cycles": "dense", "accounts": "dense", "trace_count": "dense",
               "trace_overflow": "dense"},
    "icarus": {"events": "golden", "logits": "golden", "saturations": "golden", "state": "tables", "cycles": "tables",
               "trace_count": "tables", "trace_overflow": "tables"},
}
EXPECTED["verilator"] = EXPECTED["icarus"]


def test_each_implementation_is_compared_on_what_both_sides_report():
    for implementation in (Golden(), DenseEngine(), TablesEngine(), Icarus(), Verilator()):
        got = {field: reference_for(field, implementation) for field in compared_fields(implementation)}
        assert got == EXPECTED[implementation.name], implementation
        # never a reference compared with itself, and never a field one side cannot report
        assert all(ref != implementation.name for ref in got.values())
    assert reference_for("cycles", Golden()) == "tables" and "cycles" not in compared_fields(Golden())
