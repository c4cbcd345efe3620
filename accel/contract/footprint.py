"""The on-chip memory a Program needs on a configuration, per memory, in bits (``docs/core.md``, "Memories").

A configuration sizes every memory for the largest network it should take; a Program uses part of each. Both
sides are reported so that a user sees which memory dominates and how much of a device the configuration
claims for this network (issue "A core that scales": the bench's ResNet-20 configuration needed 377 Mbit).
The program tables (layers, pointers, synapses, weights, params), the input image, the accumulator and state
rows are fixed by the Program; the event regions and the trace depend on the data, so their need is the worst
case: every neuron of a stage firing (an event region holds one stage's events of a timestep, or in the
layer-major schedule one event word per neuron that fired at any timestep), and every neuron that can fire
writing one trace word at every timestep.
"""
from __future__ import annotations

from dataclasses import dataclass

from spikecore.accel.contract.config import ArchConfig
from spikecore.accel.contract.layouts import all_layouts, memory_depths
from spikecore.accel.contract.program import Program

#: Memories whose need depends on the data: the footprint gives their worst case (on an ``event_input`` core the
#: inputs memory too).
DATA_DEPENDENT = ("events", "trace")


@dataclass(frozen=True)
class MemoryFootprint:
    """One memory: its word width, the words (and bits) the Program needs and the configuration holds."""

    name: str
    width: int
    words: int
    configured_words: int
    worst_case: bool = False

    @property
    def bits(self) -> int:
        return self.words * self.width

    @property
    def configured_bits(self) -> int:
        return self.configured_words * self.width


def memory_footprint(program: Program, arch: ArchConfig) -> list:
    """Every memory of the core, in the order of ``docs/core.md``'s table: a :class:`MemoryFootprint` each.

    Parameters
    ----------
    program : Program
        Compiled for ``arch``.
    arch : ArchConfig

    Returns
    -------
    list of MemoryFootprint
    """
    layouts, depths = all_layouts(arch), memory_depths(arch)
    tables = {name: len(next(iter(columns.values()))) for name, columns in program.memories.items()}
    firing = [layer.n_groups * arch.lanes for layer in program.layers if layer.fires]
    largest_stage = max(firing + [program.n_inputs])
    words = {
        "layers": tables["layers"], "pointers": tables["pointers"], "synapses": tables["synapses"],
        "weights": tables["weights"], "params": tables["params"] * arch.update_steps,
        # an event_input core's inputs memory holds an inference's input events: at most every value of its frames
        "inputs": program.n_inputs * (program.timesteps if arch.event_input else 1),
        "acc": program.state_rows * arch.acc_slots, "state": program.state_rows * arch.update_steps,
        "events": arch.event_regions * largest_stage,
        "trace": sum(firing) * program.timesteps,
    }
    data_dependent = DATA_DEPENDENT + (("inputs",) if arch.event_input else ())
    return [MemoryFootprint(name, layouts[name].width, words[name], depths[name], name in data_dependent)
            for name in depths]


def footprint_summary(rows: list) -> str:
    """One line: the total bits needed and configured, then each memory largest first."""
    needed, configured = sum(r.bits for r in rows), sum(r.configured_bits for r in rows)
    parts = [f"{r.name} {r.bits / 1024:,.1f}{' (worst case)' if r.worst_case else ''} of "
             f"{r.configured_bits / 1024:,.1f}" for r in sorted(rows, key=lambda r: -r.configured_bits)]
    return (f"on-chip memory: the program needs {needed / 1024:,.1f} kbit of the configuration's "
            f"{configured / 1024:,.1f} kbit; " + ", ".join(parts))
