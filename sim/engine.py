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
from spikecore.accel.contract.inputs import check_frames, input_frames
from spikecore.accel.contract.program import Program
from spikecore.sim.dense import simulate_dense
from spikecore.sim.results import LayerAccount, SimResult
from spikecore.sim.tables import MemoryTables, simulate_tables

__all__ = ["ENGINES", "DenseEngineUnsuitable", "LayerAccount", "MemoryTables", "SimResult", "simulate",
           "simulate_batch"]

ENGINES = ("auto", "dense", "tables")


def simulate(program: Program, arch: ArchConfig, pixels, tables: MemoryTables | None = None,
             keep_events: bool = True, engine: str = "auto") -> SimResult:
    """Run one inference of ``program`` on integer ``pixels``: an image (``program.n_inputs`` values, flat or
    ``[C, H, W]``) or frames, one per timestep (``[T, n_inputs]`` or ``[T, C, H, W]``; a core with
    ``event_input`` runs them, :func:`simulate_batch`).

    ``keep_events=False`` is the performance mode: logits, cycles, accounts and saturations only (the
    per-stage event lists, i.e. the full trace, are not kept). ``engine``: one of ``ENGINES`` (module
    docstring)."""
    array = np.asarray(pixels)
    one = array.reshape(1, -1) if array.size == program.n_inputs else array[None]
    return simulate_batch(program, arch, one, tables=tables, keep_events=keep_events, engine=engine)[0]


class DenseEngineUnsuitable(ValueError):
    """``engine="dense"`` was asked for a program whose tables are not convolutions it can run."""


def simulate_batch(program: Program, arch: ArchConfig, pixels_batch, progress=None,
                   tables: MemoryTables | None = None, keep_events: bool = True, engine: str = "auto",
                   batch: int = 16, source: str = "inputs") -> list:
    """Simulate several inferences (one per item of ``pixels_batch``), sharing the prepared tables; the
    dense engine takes ``batch`` inferences at a time. ``progress`` (a tqdm-like object) is advanced per
    inference.

    ``pixels_batch``: images ``[N, n_inputs]`` or ``[N, C, H, W]`` (the same at every timestep), or frames
    ``[N, T, n_inputs]`` or ``[N, T, C, H, W]`` (frame ``t`` at timestep ``t``), normalised by
    :func:`spikecore.accel.contract.inputs.input_frames`. Frames that change over time need a core with
    ``event_input``, whose input scan runs at every timestep over that timestep's nonzero values.

    Raises
    ------
    UserError
        Naming ``source`` and the inference: what :func:`spikecore.accel.contract.inputs.check_frames` refuses
        (values outside ``0 .. program.input_max``, frames that change on a core without ``event_input``, more
        input events than the core's memories hold).
    ValueError
        An unknown engine, inputs of another shape.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine: expected one of {ENGINES}, got {engine!r}")
    program.check_arch(arch)
    tables = tables or MemoryTables(program)
    frames = _frames(program, pixels_batch)
    # an image repeated over time (a view of stride 0) is checked once on a core that scans it once
    check_frames(program, arch, frames[:, :1] if frames.strides[1] == 0 and not arch.event_input else frames,
                 source)
    plan = tables.dense(program, arch) if engine != "tables" else None
    if engine == "dense" and plan.reason:
        raise DenseEngineUnsuitable(f"the dense engine cannot run this program: {plan.reason}")
    results = []
    for begin in range(0, len(frames), batch):
        chunk = frames[begin:begin + batch]
        done = simulate_dense(plan, chunk, keep_events) if plan is not None and not plan.reason else None
        if done is None:
            done = [simulate_tables(program, arch, sample, tables, keep_events) for sample in chunk]
        results.extend(done)
        if progress is not None:
            progress.update(len(chunk))
    return results


def _frames(program: Program, pixels_batch) -> np.ndarray:
    """``pixels_batch`` as int64 frames ``[N, T, n_inputs]`` (:func:`input_frames`); an item of
    ``program.n_inputs`` values in any shape is an image, as it always was here."""
    array = np.asarray(pixels_batch.numpy() if hasattr(pixels_batch, "numpy") else pixels_batch)
    if array.ndim >= 2 and int(np.prod(array.shape[1:])) == program.n_inputs:
        array = array.reshape(len(array), program.n_inputs)
    return input_frames(program, array)
