"""The interface every implementation of the core's contract offers the contract suite, and its five adapters.

An :class:`Implementation` runs a compiled :class:`~spikecore.accel.contract.program.Program` on an
architecture and a batch of images and returns one :class:`Outcome` per image:

- ``events``: per emitting stage (every stage but the readout, in stage order), per timestep, the pair
  ``(indices, values)`` of int64 arrays, hardware (padded) neuron indices ascending, nonzero values only
  (``docs/numerics.md`` section 5; in the layer-major schedule the trains are cut into timesteps);
- ``logits``: int64 ``[classes]``, logical order;
- ``state``: the final membranes, int64 ``[state_rows, lanes, max_levels]`` (the state memory's rows);
- ``cycles`` (total busy cycles), ``setup_cycles`` (CLEAR and SCAN), ``layer_cycles`` (per stage, summed
  over timesteps and passes), ``accounts`` (per stage, the simulator's work counters);
- ``saturations`` (clamps of accumulators and membranes, ``docs/numerics.md`` section 3);
- ``trace_count`` and ``trace_overflow`` (the trace memory after the run);
- ``cycles_measured`` (the RTL's busy time measured by the testbench) and ``event_cycles`` (the ``cycles``
  register at each trace write), the RTL's alone.

What an implementation cannot report is ``None`` and declared in its ``reports`` (the suite checks the
declaration against the outcomes). Which fields each adapter reports:

=============== ====== ===== ====== ====== =========
field           Golden Dense Tables Icarus Verilator
=============== ====== ===== ====== ====== =========
events            x      x     x      x       x
logits            x      x     x      x       x
saturations       x      x     x      x       x
state                    x     x      x       x
cycles                   x     x      x       x
setup_cycles             x     x
layer_cycles             x     x
accounts                 x     x
trace_count              x     x      x       x
trace_overflow           x     x      x       x
cycles_measured                       x       x
event_cycles                          x       x
=============== ====== ===== ====== ====== =========

The golden model (``spikecore.models.hwexact``) knows no memories, lanes or cycles: it keeps no membranes but
the readout's (the logits), and no cycles, traces or accounts. The RTL reads back only what the host can see:
registers, the trace and the state memory, not per-layer cycles.

**References** (:func:`reference_for`). Values (events, logits, saturations) are compared with the golden
model: it is the contract written as code (``docs/numerics.md`` on dense tensors, with no memory layout,
schedule or event order that could hide a shared mistake), and every other implementation is built from
the Program's memory tables. Everything the golden model cannot report (the membranes, cycles, per-layer
accounts, traces) is compared with the simulator's ``tables`` engine: it executes the memory tables event
by event in the core's schedule (``docs/core.md``), the executable statement of that schedule, whereas the
dense engine derives its cycles from aggregate counts and the RTL is what is being verified (and costs
seconds an image). A reference is never compared with itself: the golden model's values are compared with
the ``tables`` engine's, and the ``tables`` engine's cycles with the dense engine's.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from types import SimpleNamespace

import numpy as np
import torch

#: Every field of an :class:`Outcome` that implementations are compared on, in the order the suite checks them.
COMPARED_FIELDS = ("events", "logits", "saturations", "state", "cycles", "setup_cycles", "layer_cycles", "accounts",
                   "trace_count", "trace_overflow")
#: Fields of values: the golden model is their reference.
VALUE_FIELDS = ("events", "logits", "saturations")


@dataclass
class Outcome:
    """What one implementation reports for one image (``None``: it cannot report it)."""

    events: list | None = None          # [emitting stage][t] -> (int64 indices, int64 values)
    logits: np.ndarray | None = None    # int64 [classes]
    state: np.ndarray | None = None     # int64 [state_rows, lanes, max_levels]
    cycles: int | None = None
    setup_cycles: int | None = None
    layer_cycles: list | None = None    # int per stage
    accounts: list | None = None        # dict per stage (spikecore.sim.engine.LayerAccount's fields)
    saturations: int | None = None
    trace_count: int | None = None
    trace_overflow: bool | None = None
    cycles_measured: int | None = None  # RTL: busy time measured by the testbench
    event_cycles: list | None = None    # RTL: the cycles register at each trace write, in trace order
    stray: list | None = None           # RTL: trace words naming no neuron of an emitting stage

    def reported(self) -> set:
        return {f.name for f in fields(self) if getattr(self, f.name) is not None}


class Implementation:
    """One implementation of the contract. Subclasses set ``name``, ``reports`` and :meth:`run`."""

    name = "implementation"
    reports: frozenset = frozenset()
    #: True for the RTL adapters: each run costs seconds per image and a build per configuration.
    rtl = False

    def run(self, program, arch, pixels: np.ndarray, workdir=None, host_bus: bool = False) -> list:
        """One :class:`Outcome` per row of ``pixels`` (int64 ``[N, program.n_inputs]``). ``workdir``: the RTL's
        build folder; ``host_bus``: the RTL loads the program and reads its results over the host bus instead
        of the simulator's backdoor (the others have neither)."""
        raise NotImplementedError

    def __repr__(self):
        return self.name


def emitting(program) -> list:
    """Indices of the stages that emit events, the order of ``Outcome.events``."""
    return [i for i, layer in enumerate(program.layers) if layer.fires]


def events_from_dense(dense: list) -> list:
    """``[T, n_hw]`` arrays per emitting stage -> ``(indices, values)`` per stage and timestep."""
    out = []
    for spikes in dense:
        spikes = np.asarray(spikes, np.int64)
        per_t = []
        for row in spikes:
            idx = np.nonzero(row)[0].astype(np.int64)
            per_t.append((idx, row[idx].astype(np.int64)))
        out.append(per_t)
    return out


def dense_from_events(program, arch, events: list) -> list:
    """The inverse of :func:`events_from_dense`: ``[T, n_hw]`` int64 per emitting stage."""
    out = []
    for stage, per_t in zip(emitting(program), events):
        dense = np.zeros((program.timesteps, program.layers[stage].n_groups * arch.lanes), np.int64)
        for t, (idx, val) in enumerate(per_t):
            dense[t, idx] = val
        out.append(dense)
    return out


def schedule_view(program, events: list):
    """An object with the simulator's ``events`` layout (per stage, readout included) built from
    ``Outcome.events``, for :func:`spikecore.accel.flows.verify.emission_schedule`."""
    per_stage = [[] for _ in program.layers]
    for stage, per_t in zip(emitting(program), events):
        per_stage[stage] = per_t
    return SimpleNamespace(events=per_stage)


# ---- the golden model -----------------------------------------------------------------------------------
class Golden(Implementation):
    """``spikecore.models.hwexact.run_integer_network`` on the Program's integer stages (or on another module with
    the same function: the planted-error tests pass a mutated copy)."""

    name = "golden"
    reports = frozenset({"events", "logits", "saturations"})

    def __init__(self, module=None):
        if module is None:
            from spikecore.models import hwexact as module
        self.module = module

    def _run(self, program, arch, pixels: np.ndarray) -> dict:
        pixels = np.asarray(pixels, np.int64)   # images [N, n_inputs] or frames [N, T, n_inputs]
        images = torch.from_numpy(pixels.reshape(pixels.shape[:-1] + tuple(program.input_shape)))
        return self.module.run_integer_network(program.integer_stages(), images, program.timesteps,
                                               arch.membrane_bits, arch.value_bits)

    def run(self, program, arch, pixels, workdir=None, host_bus=False) -> list:
        from spikecore.accel.flows.verify import golden_hw_spikes

        golden = self._run(program, arch, pixels)
        # the model counts saturations over the batch: where any occurred, count them image by image
        if golden["saturations"]:
            per_image = [int(self._run(program, arch, pixels[n:n + 1])["saturations"]) for n in range(len(pixels))]
        else:
            per_image = [0] * len(pixels)
        return [Outcome(events=events_from_dense(golden_hw_spikes(program, arch, golden, n)),
                        logits=golden["logits"][n].numpy().astype(np.int64), saturations=per_image[n])
                for n in range(len(pixels))]


# ---- the simulator's two engines ----------------------------------------------------------------------------
class _Engine(Implementation):
    engine = "auto"
    reports = frozenset({"events", "logits", "saturations", "state", "cycles", "setup_cycles", "layer_cycles",
                         "accounts", "trace_count", "trace_overflow"})

    def __init__(self, simulate_batch=None):
        """``simulate_batch``: ``spikecore.sim.engine.simulate_batch`` (default) or a stand-in with its signature
        (the planted-error tests pass a mutated copy's)."""
        if simulate_batch is None:
            from spikecore.sim.engine import simulate_batch
        self.simulate_batch = simulate_batch

    def run(self, program, arch, pixels, workdir=None, host_bus=False) -> list:
        results = self.simulate_batch(program, arch, np.asarray(pixels, np.int64), engine=self.engine)
        engines = {r.engine for r in results}
        assert engines == {self.engine}, f"asked for the {self.engine} engine, {sorted(engines)} ran"
        stages = emitting(program)
        return [Outcome(events=[[(np.asarray(i, np.int64), np.asarray(v, np.int64)) for i, v in r.events[s]]
                                for s in stages],
                        logits=np.asarray(r.logits, np.int64), state=np.asarray(r.state, np.int64),
                        cycles=int(r.cycles), setup_cycles=int(r.setup_cycles),
                        layer_cycles=[int(a.cycles) for a in r.layers],
                        accounts=[{k: int(v) for k, v in vars(a).items() if k != "name"} for a in r.layers],
                        saturations=int(r.saturations), trace_count=int(r.trace_count),
                        trace_overflow=bool(r.trace_overflow))
                for r in results]


class DenseEngine(_Engine):
    """The simulator's dense engine (``simulate_batch(..., engine="dense")``)."""

    name = "dense"
    engine = "dense"


class TablesEngine(_Engine):
    """The simulator's event-by-event engine (``simulate_batch(..., engine="tables")``)."""

    name = "tables"
    engine = "tables"


# ---- the generated Verilog under cocotb ---------------------------------------------------------------------
class _Rtl(Implementation):
    simulator = "icarus"
    rtl = True
    reports = frozenset({"events", "logits", "saturations", "state", "cycles", "trace_count", "trace_overflow",
                         "cycles_measured", "event_cycles", "stray"})

    def run(self, program, arch, pixels, workdir=None, host_bus=False) -> list:
        from spikecore.accel.contract.layouts import state_layout
        from spikecore.accel.flows.verify import decode_rtl
        from spikecore.rtl.runner import run_inferences

        assert workdir is not None, "the RTL adapters need a build folder"
        from spikecore.accel.contract.inputs import host_inputs, input_frames

        inputs = host_inputs(program, arch, input_frames(program, np.asarray(pixels, np.int64)))
        # a missing simulator raises RuntimeError naming what to install: the test fails with it
        results = run_inferences(program.memory_image(arch), inputs, arch, workdir, simulator=self.simulator,
                                 backdoor=not host_bus)
        outcomes = []
        for r in results:
            decoded = decode_rtl(program, arch, r)
            state = state_layout(arch).unpack(r["state"])["u"].reshape(-1, arch.lanes, arch.max_levels)
            outcomes.append(Outcome(events=events_from_dense(decoded["spikes"]),
                                    logits=np.asarray(decoded["logits"], np.int64),
                                    state=np.asarray(state, np.int64), cycles=int(r["cycles"]),
                                    saturations=int(r["saturations"]), trace_count=int(r["trace_count"]),
                                    trace_overflow=bool(r["trace_overflow"]),
                                    cycles_measured=int(r["cycles_measured"]),
                                    event_cycles=[int(c) for c in r["trace_cycles"]], stray=list(decoded["stray"])))
        return outcomes


class Icarus(_Rtl):
    """``spikecore.rtl.runner.run_inferences(..., simulator="icarus")``: the generated Verilog under Icarus."""

    name = "icarus"
    simulator = "icarus"


class Verilator(_Rtl):
    """``spikecore.rtl.runner.run_inferences(..., simulator="verilator")``: the generated Verilog under Verilator."""

    name = "verilator"
    simulator = "verilator"


#: The implementations in the order a field's reference is chosen: values from the golden model first.
VALUE_REFERENCES = ("golden", "tables", "dense")
#: ... and everything else (cycles, membranes, accounts, traces) from the tables engine first.
CYCLE_REFERENCES = ("tables", "dense")
REFERENCE_IMPLEMENTATIONS = {"golden": Golden, "tables": TablesEngine, "dense": DenseEngine}


def reference_for(field: str, implementation: Implementation) -> str | None:
    """The name of the implementation whose ``field`` the given one is compared with: the first of the
    field's reference order that reports it and is not the implementation itself (``None``: no other
    implementation reports the field, so it is not compared)."""
    order = VALUE_REFERENCES if field in VALUE_FIELDS else CYCLE_REFERENCES
    for name in order:
        if name != implementation.name and field in REFERENCE_IMPLEMENTATIONS[name].reports:
            return name
    return None


def compared_fields(implementation: Implementation) -> list:
    """The fields the suite compares for an implementation: those it reports and its reference reports."""
    return [f for f in COMPARED_FIELDS if f in implementation.reports and reference_for(f, implementation) is not None]
