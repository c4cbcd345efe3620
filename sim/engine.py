"""Execution of a Program's memory tables, bit-exact and cycle-exact with the core: the simulator's entry point.

The simulator reads the same memory columns the core's memories are loaded with (``Program.memories``)
and follows the schedule of ``docs/core.md``: input scan, then per timestep and pass (one per synaptic
source of a stage) the accumulate phase (the input events and their synapse rows) and, on a stage's
last pass, the update phase (one update per group of ``lanes`` neurons, then one emit per nonzero lane).

The simulator is split into:

- :mod:`spikecore.sim.kernels`: its integer arithmetic (``docs/numerics.md``), independent of the golden model;
- :mod:`spikecore.sim.schedule`: the cycle cost of every state of the schedule and the cycle formula, once;
- :mod:`spikecore.sim.tables`: the ``tables`` engine, event by event, as the core does;
- :mod:`spikecore.sim.dense`: the ``dense`` engine, the passes recognised as convolutions and linear maps and
  checked against the tables, run stage by stage over all timesteps and a batch of images;
- :mod:`spikecore.sim.results`: what both return (:class:`SimResult`, :class:`LayerAccount`);
- :mod:`spikecore.sim.cost`: memory traffic and energy from the accounts.

Both engines compute the same results (``docs/core.md``, "Simulator engines"); ``engine="auto"`` (the
default) takes ``dense`` wherever its checks pass.
"""
from __future__ import annotations

import numpy as np

from spikecore.accel.contract.config import ArchConfig
from spikecore.accel.contract.program import Program
from spikecore.sim.dense import simulate_dense
from spikecore.sim.results import LayerAccount, SimResult
from spikecore.sim.tables import MemoryTables, simulate_tables

__all__ = ["ENGINES", "DenseEngineUnsuitable", "LayerAccount", "MemoryTables", "SimResult", "simulate",
           "simulate_batch"]

ENGINES = ("auto", "dense", "tables")


def simulate(program: Program, arch: ArchConfig, pixels, tables: MemoryTables | None = None,
             keep_events: bool = True, engine: str = "auto") -> SimResult:
    """Run one inference of ``program`` on integer ``pixels`` (flat, ``program.n_inputs`` values).

    ``keep_events=False`` is the performance mode: logits, cycles, accounts and saturations only (the
    per-stage event lists, i.e. the full trace, are not kept). ``engine``: one of ``ENGINES`` (module
    docstring)."""
    return simulate_batch(program, arch, np.asarray(pixels).reshape(1, -1), tables=tables,
                          keep_events=keep_events, engine=engine)[0]


class DenseEngineUnsuitable(ValueError):
    """``engine="dense"`` was asked for a program whose tables are not convolutions it can run."""


def simulate_batch(program: Program, arch: ArchConfig, pixels_batch, progress=None,
                   tables: MemoryTables | None = None, keep_events: bool = True, engine: str = "auto",
                   batch: int = 16) -> list:
    """Simulate several inferences (one per row of ``pixels_batch``), sharing the prepared tables; the
    dense engine takes ``batch`` images at a time. ``progress`` (a tqdm-like object) is advanced per image."""
    if engine not in ENGINES:
        raise ValueError(f"engine: expected one of {ENGINES}, got {engine!r}")
    program.check_arch(arch)
    tables = tables or MemoryTables(program)
    pixels_batch = np.asarray(pixels_batch, np.int64).reshape(len(pixels_batch), -1)
    plan = tables.dense(program, arch) if engine != "tables" else None
    if engine == "dense" and plan.reason:
        raise DenseEngineUnsuitable(f"the dense engine cannot run this program: {plan.reason}")
    results = []
    for begin in range(0, len(pixels_batch), batch):
        chunk = pixels_batch[begin:begin + batch]
        done = simulate_dense(plan, chunk, keep_events) if plan is not None and not plan.reason else None
        if done is None:
            done = [simulate_tables(program, arch, pixels, tables, keep_events) for pixels in chunk]
        results.extend(done)
        if progress is not None:
            progress.update(len(chunk))
    return results
