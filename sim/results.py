"""What a simulated inference returns: its outputs (:class:`SimResult`) and per-layer accounts (:class:`LayerAccount`).

Both engines (``sim/tables.py``, ``sim/dense.py``) return these types, so that their results compare field by
field (:meth:`SimResult.differences`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np


@dataclass
class LayerAccount:
    """Cycle-level account of one layer, summed over timesteps (and samples when aggregated)."""

    name: str
    cycles: int = 0
    accumulate_cycles: int = 0
    update_cycles: int = 0
    input_events: int = 0        # event words read (layer-major: one per input neuron and pass, all timesteps)
    synapse_rows: int = 0        # synapse rows fetched (a synapse and a weight word read each)
    acc_updates: int = 0         # accumulator rows added into (each `lanes` AC operations, `value` times);
                                 # = synapse_rows, except layer-major: one per timestep the input fired in
    ac_ops: int = 0              # lane additions performed (padding lanes included)
    output_events: int = 0
    neuron_updates: int = 0      # groups updated
    state_writes: int = 0        # groups whose membranes were written (neuron stages)
    acc_clears: int = 0          # accumulator rows cleared after an update
    steps: int = 0               # passes run (one descriptor read each)

    def add(self, other: "LayerAccount") -> None:
        """Add ``other``'s counters to this account's."""
        for key in ACCOUNT_COUNTERS:
            setattr(self, key, getattr(self, key) + getattr(other, key))


#: The counters of a :class:`LayerAccount` (every field but its name).
ACCOUNT_COUNTERS = tuple(f.name for f in fields(LayerAccount) if f.name != "name")


@dataclass
class SimResult:
    """Outputs of one inference: events in hardware indices, logits, cycles, saturations."""

    events: list                  # [layer][t] -> (index array, value array), ascending index (the trace)
    logits: np.ndarray            # int64 [classes]
    state: np.ndarray             # int64 [state_rows, lanes, max_levels]: membranes at the end
    cycles: int
    setup_cycles: int             # CLEAR and the input scan (with event_input: the scans of every timestep)
    layers: list = field(default_factory=list)   # LayerAccount per layer
    saturations: int = 0
    trace_count: int = 0                         # entries the core's trace memory holds after the run
    trace_overflow: bool = False
    engine: str = "tables"                       # the engine that computed it

    def differences(self, other: "SimResult", events: bool = True) -> list:
        """What differs from ``other`` (integers compared with equality): ``[]`` when the results agree on
        logits, final state, cycles, saturations, the trace count, every account and, with ``events``,
        every event."""
        found = [name for name in ("cycles", "setup_cycles", "saturations", "trace_count", "trace_overflow")
                 if getattr(self, name) != getattr(other, name)]
        found += [name for name in ("logits", "state") if not np.array_equal(getattr(self, name), getattr(other, name))]
        found += [f"account of {a.name}" for a, b in zip(self.layers, other.layers) if a != b]
        if events:
            for l, (mine, theirs) in enumerate(zip(self.events, other.events)):
                if len(mine) != len(theirs) or not all(np.array_equal(i1, i2) and np.array_equal(v1, v2)
                                                       for (i1, v1), (i2, v2) in zip(mine, theirs)):
                    found.append(f"events of layer {l}")
        return found

    def spikes(self, layer: int, size: int, timesteps: int) -> np.ndarray:
        """Dense spike counts ``[T, size]`` of a layer in hardware index order."""
        out = np.zeros((timesteps, size), np.int64)
        for t, (idx, val) in enumerate(self.events[layer]):
            out[t, idx] = val
        return out
