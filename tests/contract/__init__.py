"""The contract suite: one set of tests, written against ``implementations.Implementation``, run unchanged on the
golden model, both simulator engines and the generated Verilog under Icarus and Verilator (docs/verification.md)."""
