"""spikecore: train spiking networks, compile them to fixed point, simulate, generate Verilog and verify.

The packages (``docs/architecture.md`` draws how they depend on each other):

- :mod:`spikecore.models`: neurons, blocks, networks, datasets, training and the golden model;
- :mod:`spikecore.accel.contract`: configuration, layouts, Program, lowering, quantizer, compiler passes;
- :mod:`spikecore.sim`: the cycle-level simulator (two engines);
- :mod:`spikecore.rtl`: the Amaranth core, its Verilog and the cocotb runner;
- :mod:`spikecore.accel.flows`: the command line and the flows built on the rest;
- :mod:`spikecore.api`: the Python API for notebooks (``docs/api.md``), on which the command line is built.

The API's functions are importable from here (``spikecore.compile``, ``spikecore.simulate``, ...); importing
this package alone loads nothing heavy.
"""
from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("spikecore")
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

API = ("load_arch", "load_network", "compile", "load_program", "load_images", "simulate", "verify",
       "read_report")


def __getattr__(name):
    if name in API:
        from spikecore import api
        return getattr(api, name)
    raise AttributeError(f"module 'spikecore' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(API))
