"""Memory traffic and energy of a simulated run, derived from the schedule of ``docs/core.md``.

Every state of the schedule touches known memories, so the accesses follow from the counters of a
:class:`spikecore.sim.results.LayerAccount`: per input event word one event and one pointer read; per synapse row one
synapse and one weight read; per accumulator row added into one accumulator read and write (layer-major:
one per timestep the input fired in, the weight word reused); per group and timestep one accumulator read,
``update_steps`` state and params reads, ``update_steps`` state writes
(neurons) and one accumulator write (when cleared); per output event word one event and one trace write;
per pass one descriptor read (timestep-major: per pass and timestep). Per inference, the set-up (CLEAR,
SCAN) writes every used accumulator and state word once, reads every input and writes every nonzero pixel
as an event; with ``event_input`` the scan at timestep ``t`` reads ``w_t + 1`` input words and writes ``w_t``
events (:func:`setup_accesses`).

Energy = operations (``e_ac_pj`` per lane addition; a ``max`` stage's lane comparison is charged as one) + memory
accesses. An access to a memory of ``B``
bytes costs ``(bits / 64) * E64(B)``, where ``E64`` interpolates log-log between SRAM points; the default
points are Horowitz's 45 nm figures (ISSCC 2014: 64-bit access of an 8 KB SRAM 10 pJ, 32 KB 20 pJ,
1 MB 100 pJ). Override them with ``accel sim --energy ENERGY.yaml``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spikecore.accel.contract.checkpoint import all_finite
from spikecore.accel.contract.config import ArchConfig
from spikecore.errors import UserError
from spikecore.accel.contract.layouts import all_layouts, physical_memories
from spikecore.sim.schedule import cleared_words
from spikecore.yamlio import check_keys, load_yaml

DEFAULT_SRAM_POINTS = {8 * 1024: 10.0, 32 * 1024: 20.0, 1024 * 1024: 100.0}
#: Largest energy of the table (1 uJ per operation or access: far above any memory technology), so that every
#: report sum stays a finite number.
MAX_ENERGY_PJ = 1e6
#: Largest SRAM size of the table (1 TiB).
MAX_SRAM_BYTES = 1 << 40


@dataclass(frozen=True)
class EnergyModel:
    e_ac_pj: float = 0.9
    sram_pj_per_64bit: dict = field(default_factory=lambda: dict(DEFAULT_SRAM_POINTS))

    def access_pj(self, depth: int, bits: int) -> float:
        """Energy of one access to a memory of ``depth`` words of ``bits`` bits."""
        sizes = np.array(sorted(self.sram_pj_per_64bit), dtype=float)
        energies = np.array([self.sram_pj_per_64bit[s] for s in sorted(self.sram_pj_per_64bit)], dtype=float)
        size = max(depth * bits / 8, 1.0)
        if len(sizes) == 1:
            e64 = energies[0]
        else:  # log-log interpolation, extrapolated with the end segments' slopes
            x, y = np.log(sizes), np.log(energies)
            i = int(np.clip(np.searchsorted(x, np.log(size)) - 1, 0, len(x) - 2))
            slope = (y[i + 1] - y[i]) / (x[i + 1] - x[i])
            e64 = float(np.exp(y[i] + slope * (np.log(size) - x[i])))
        return bits / 64 * e64


def _energy_pj(value, key: str, source: str) -> float:
    """An energy of the table: a finite number of pJ in [0, :data:`MAX_ENERGY_PJ`]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not all_finite(value) \
            or not 0 <= value <= MAX_ENERGY_PJ:
        raise UserError(f"{source}: key '{key}' must be a number of pJ in [0, {MAX_ENERGY_PJ:g}], got {value!r}")
    return float(value)


def load_energy_model(path=None) -> EnergyModel:
    """Read an energy table (``e_ac_pj``, ``sram_pj_per_64bit: {bytes: pJ}``); ``None`` gives the default.

    Raises
    ------
    UserError
        Naming the file and key: unreadable or malformed YAML, an unknown key, an energy that is not a finite
        number in [0, :data:`MAX_ENERGY_PJ`] pJ (an SRAM point's must be positive: it is interpolated in
        log-log), a size that is not a whole number of bytes in [1, :data:`MAX_SRAM_BYTES`].
    """
    if path is None:
        return EnergyModel()
    source = str(path)
    data = load_yaml(path, "energy table")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping with keys e_ac_pj, sram_pj_per_64bit")
    check_keys(data, ["e_ac_pj", "sram_pj_per_64bit"], "", source)
    e_ac = _energy_pj(data.get("e_ac_pj", EnergyModel.e_ac_pj), "e_ac_pj", source)
    points = data.get("sram_pj_per_64bit", DEFAULT_SRAM_POINTS)
    if not isinstance(points, dict) or not points:
        raise UserError(f"{source}: key 'sram_pj_per_64bit' must map sizes in bytes to pJ per 64-bit access, "
                        f"got {points!r}")
    table = {}
    for size, energy in points.items():
        key = f"sram_pj_per_64bit.{size}"
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_SRAM_BYTES:
            raise UserError(f"{source}: key '{key}': a size must be a whole number of bytes in "
                            f"[1, {MAX_SRAM_BYTES}], got {size!r}")
        table[size] = _energy_pj(energy, key, source)
        if table[size] == 0:
            raise UserError(f"{source}: key '{key}' must be a positive number of pJ, got {energy!r}")
    return EnergyModel(e_ac, table)


def layer_accesses(account, arch: ArchConfig) -> dict:
    """``{memory: (reads, writes)}`` of one layer's account (summed over its timesteps); a group's state and
    params are ``arch.update_steps`` words each."""
    rows, groups, steps = account.synapse_rows, account.neuron_updates, arch.update_steps
    updates = account.acc_updates
    return {
        "layers": (account.steps, 0),
        "events": (account.input_events, account.output_events),
        "pointers": (account.input_events, 0),
        "synapses": (rows, 0),
        "weights": (rows, 0),
        "acc": (updates + groups, updates + account.acc_clears),
        "state": (groups * steps, account.state_writes * steps),
        "params": (groups * steps, 0),
        "trace": (0, account.output_events),
    }


def setup_accesses(state_rows: int, n_inputs: int, input_events, arch: ArchConfig,
                   timesteps: int | None = None) -> dict:
    """``{memory: (reads, writes)}`` of CLEAR (every used accumulator and state word written,
    :func:`spikecore.sim.schedule.cleared_words`) and SCAN (every pixel read, every nonzero one written as an
    event).

    With ``event_input`` the scan runs at every timestep: it reads ``w_t + 1`` input words at timestep ``t`` (the
    cycle presenting the first word and each word taken) and writes one event per word, so ``input_words + T``
    reads and ``input_words`` event writes, where ``input_events`` is then the input words of all timesteps
    (``sum_t w_t``: an image's nonzero pixels count at every timestep) and ``timesteps`` (``T``) is needed;
    ``n_inputs`` is not used."""
    acc_words, state_words = cleared_words(state_rows, arch)
    if arch.event_input:
        if timesteps is None:
            raise ValueError(f"architecture {arch.name} has event_input: its input scans' accesses need the "
                             f"timesteps")
        reads = input_events + timesteps
    else:
        reads = n_inputs
    return {"inputs": (reads, 0), "events": (0, input_events), "acc": (0, acc_words), "state": (0, state_words)}


def energy_of(accesses: dict, arch: ArchConfig, model: EnergyModel) -> float:
    """Memory energy in pJ of ``{memory: (reads, writes)}`` (reads and writes cost the same). An access
    moves the memory's word; its cost per bit is that of the physical memory holding it (a bank's size,
    for a memory in a bank)."""
    layouts = all_layouts(arch)
    sizes = {}
    for memory in physical_memories(arch):
        for name in memory.members:
            sizes[name] = memory.depth * memory.width
    return sum((r + w) * model.access_pj(sizes[name] / layouts[name].width, layouts[name].width)
               for name, (r, w) in accesses.items())
