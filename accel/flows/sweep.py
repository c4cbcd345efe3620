"""``accel sweep``: grid and random search over core parameters and networks (``docs/sweeps.md``).

Every point (one configuration, one network) is compiled, simulated over the digits test images (cycles,
latency, energy, accuracy) and, for the few points chosen for real synthesis, synthesised with
:func:`spikecore.accel.flows.synth.synthesize`; the other points' area comes from the calibrated area model
(:mod:`spikecore.accel.flows.area`). Finished points are appended to ``points.jsonl`` (one JSON line each, flushed and
fsynced) keyed by a point id derived from the configuration's fingerprint, the network and the evaluation
settings, so an interrupted sweep resumes where it stopped and never redoes a finished point. Points run on a
local process pool, or on a Dask distributed cluster given its scheduler address.

The points are generated lazily (the grid's product, then the random draws) and at most
:data:`MAX_SWEEP_POINTS` of them are accepted, counted arithmetically when the file is read. One sweep at a
time runs on an output folder (an exclusive lock on :data:`LOCK`), and local workers die with the sweep.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import hashlib
import io
import itertools
import json
import math
import multiprocessing.context
import os
import random
import re
import signal
import sys
import threading
import time
from pathlib import Path

from spikecore.accel.contract.config import NAME_PATTERN
from spikecore.errors import UserError, short_repr
from spikecore.accel.flows.outputs import output_dir, report_header
from spikecore.accel.flows.simulation import DATASETS
from spikecore.yamlio import check_int, check_keys, load_yaml, suggest

SPEC_KEYS = ("name", "networks", "base_arch", "samples", "grid", "random", "fit_memories", "synth", "energy")
RANDOM_KEYS = ("points", "seed", "space")
SYNTH_KEYS = ("target", "points")
SHIPPED = "shipped"
JOURNAL = "points.jsonl"
#: File in the output folder that a running sweep holds an exclusive lock on (it records the holder's pid).
LOCK = ".sweep.lock"
#: Most points a sweep may have (networks x (grid + random points)): at seconds to minutes a point, more is
#: days of work for one command; split such an exploration into several sweep files.
MAX_SWEEP_POINTS = 10_000
#: Points submitted ahead of the finished ones, per worker: enough to keep every worker busy.
POINTS_IN_FLIGHT_PER_WORKER = 2
# ``fit_memories`` value that sizes each memory to the smallest power of two holding the network's need: block
# RAMs come in powers of two, so the headroom up to the next one is free, and the event regions' base
# addresses stay shifts (docs/synthesis.md)
FIT_POWER_OF_TWO = "pow2"
#: Local worker processes a sweep may start per CPU core (each holds a copy of torch: about 300 MB).
MAX_WORKERS_PER_CORE = 4
OBJECTIVES = (("latency_us", "min"), ("device_fraction", "min"), ("energy_uj", "min"), ("accuracy", "max"))
# Depths of the probe configuration that measures what a network needs when ``fit_memories`` is set.
_PROBE_DEPTHS = {"layers": 256, "pointers": 1 << 18, "synapses": 1 << 20, "weights": 1 << 18, "params": 1 << 14,
                 "state": 1 << 14, "events": 1 << 16, "inputs": 1 << 14}


# ---- the sweep file -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A validated sweep file.

    Attributes
    ----------
    name : str
    source : str
        The file, for messages.
    networks : list
        Checkpoint paths (``accel/data/digits_checkpoint.pt`` for ``shipped``).
    base : dict
        The base configuration as a mapping (``ArchConfig.to_dict``).
    samples : int or None
        Test images simulated per point (``None``: all).
    grid : dict
        ``{parameter: [values]}``: every combination is a point (empty: no grid).
    random_space : dict
        ``{parameter: [values]}`` the random points are drawn from (empty: no random points).
    random_points : int
        Distinct random points drawn besides the grid's.
    random_seed : int
    fit_memories : float, str or None
        Headroom factor: memory depths not swept are sized to ``ceil(need * factor)`` for each network; or
        ``"pow2"``: to the smallest power of two holding the need.
    synth_target : str or None
    synth_points : int
    energy : str or None
        An energy table for :func:`spikecore.sim.cost.load_energy_model`.
    dataset : str
        The test images (``--dataset``: ``digits``, ``cifar10`` or a folder of ``.npz`` samples,
        :func:`spikecore.accel.flows.simulation.test_images`).
    data_root : str or None
        Where the named dataset's files are (``--data-root``).
    """

    name: str
    source: str
    networks: list
    base: dict
    samples: int | None
    grid: dict
    random_space: dict
    random_points: int
    random_seed: int
    fit_memories: float | str | None
    synth_target: str | None
    synth_points: int
    energy: str | None
    dataset: str = "digits"
    data_root: str | None = None


def _canonical(value) -> str:
    """JSON text that is equal for equal configuration values (what tells two points apart)."""
    return json.dumps(value, sort_keys=True)


def sweep_points(spec: SweepSpec):
    """The points of a sweep, ``{parameter: value}``, generated one at a time: the grid's combinations in
    order, then the random points (distinct, none already in the grid) drawn from ``random_seed``."""
    if spec.grid:
        for combination in itertools.product(*spec.grid.values()):
            yield dict(zip(spec.grid, combination))
    if spec.random_points:
        yield from _random_points(spec)


def _random_points(spec: SweepSpec):
    """The random points of :func:`sweep_points`, drawn one at a time (the same ones on every call)."""
    fixed = {key: value for key, value in spec.base.items() if key != "memories"}
    grid_keys = set(fixed) | set(spec.grid)
    grid_values = {key: {_canonical(value) for value in values} for key, values in spec.grid.items()}

    def in_grid(point: dict) -> bool:
        # the grid holds every combination of its values: a point is in it when each swept parameter's value
        # is among the grid's and every other parameter has the base configuration's value
        merged = {**fixed, **point}
        return bool(spec.grid) and set(merged) == grid_keys and all(
            _canonical(merged[key]) in grid_values[key] for key in spec.grid) and all(
            _canonical(value) == _canonical(fixed[key]) for key, value in point.items() if key not in spec.grid)

    rng = random.Random(spec.random_seed)
    possible = math.prod(len(values) for values in spec.random_space.values())
    drawn = set()
    for _ in range(100 * spec.random_points):  # distinct draws not already in the grid
        if len(drawn) == spec.random_points or len(drawn) >= possible:
            break
        point = {key: rng.choice(values) for key, values in spec.random_space.items()}
        text = _canonical({**fixed, **point})
        if text not in drawn and not in_grid(point):
            drawn.add(text)
            yield point


def _sweep_name(data: dict, path: Path, source: str) -> str:
    """The sweep's ``name`` (printed, and in the plot's title): a plain word like a configuration's name;
    without one, the file's stem with other characters replaced."""
    if "name" not in data:
        return re.sub(r"[^A-Za-z0-9_.+-]", "_", path.stem)[:64] or "sweep"
    name = data["name"]
    if isinstance(name, bool) or not isinstance(name, (str, int)) or not NAME_PATTERN.fullmatch(str(name)):
        raise UserError(f"{source}: key 'name' = {short_repr(name)} must be 1 to 64 letters, digits and '_', '.', "
                        f"'+', '-', starting with a letter or digit")
    return str(name)


def sweepable_parameters() -> list:
    """Names a sweep may vary: the configuration's scalar keys and ``memories.NAME``."""
    from spikecore.accel.contract.config import ArchConfig, Memories

    scalars = [f.name for f in dataclasses.fields(ArchConfig) if f.name not in ("name", "memories")]
    return scalars + [f"memories.{f.name}" for f in dataclasses.fields(Memories)]


def _arch_dict(base: dict, params: dict) -> dict:
    data = json.loads(json.dumps(base))
    for key, value in params.items():
        if key.startswith("memories."):
            data["memories"][key.split(".", 1)[1]] = value
        else:
            data[key] = value
    return data


def _parameter_lists(section, where: str, source: str) -> dict:
    """``section`` checked to be ``{sweepable parameter: non-empty list of values}`` (values not yet checked)."""
    allowed = sweepable_parameters()
    if not isinstance(section, dict) or not section:
        raise UserError(f"{source}: key '{where}' must be a mapping of parameter: [values]")
    for key, values in section.items():
        if key not in allowed:
            raise UserError(f"{source}: unknown parameter '{where}.{key}'{suggest(str(key), allowed)}")
        if not isinstance(values, list) or not values:
            raise UserError(f"{source}: key '{where}.{key}' must be a non-empty list of values")
    return section


def _check_values(section: dict, where: str, source: str, base: dict) -> None:
    """Each distinct value of ``section`` alone on the base configuration must be valid."""
    from spikecore.accel.contract.config import arch_from_dict

    for key, values in section.items():
        for text in dict.fromkeys(_canonical(value) for value in values):
            arch_from_dict(_arch_dict(base, {key: json.loads(text)}), f"{source}: {where}.{key}")


def _check_size(source: str, networks: int, grid: dict, random_points: int) -> None:
    """Refuse a sweep of more than :data:`MAX_SWEEP_POINTS` points, counted without generating them."""
    grid_points = math.prod(len(values) for values in grid.values()) if grid else 0
    total = networks * (grid_points + random_points)
    if total <= MAX_SWEEP_POINTS:
        return
    parts = ([f"grid {' x '.join(str(len(values)) for values in grid.values())}"] if grid else []) + \
        ([f"random.points {random_points}"] if random_points else [])
    count = " + ".join(parts) + (f", times {networks} networks" if networks > 1 else "")
    keys = [key for key, size in (("grid", grid_points), ("random.points", random_points))
            if networks * size > MAX_SWEEP_POINTS] or ["grid", "random.points"]
    raise UserError(f"{source}: key {' and '.join(repr(key) for key in keys)}: {count} = {total} points, more "
                    f"than the {MAX_SWEEP_POINTS} a sweep may have; narrow it or split it into several sweep files")


def _relative_path(value, key: str, source: str) -> str:
    if not isinstance(value, str) or not value:
        raise UserError(f"{source}: key '{key}' must be a file name (relative to the sweep file), "
                        f"got {short_repr(value)}")
    return value


def load_sweep(path, dataset: str = "digits", data_root=None) -> SweepSpec:
    """Read and validate a sweep file, whose points run on the test images of ``dataset`` (``--dataset``, with
    ``--data-root``); raises :class:`UserError` naming the file and key.

    The sweep's size is counted (and refused beyond :data:`MAX_SWEEP_POINTS`) before anything costly; every
    network is loaded once (:func:`spikecore.accel.contract.checkpoint.load_checkpoint`), so a file that is not a checkpoint is
    refused here rather than making every point infeasible.
    """
    from spikecore.accel.contract.checkpoint import load_checkpoint, shipped_checkpoint_path
    from spikecore.accel.contract.config import load_arch
    from spikecore.accel.flows.synth import get_target

    path = Path(path)
    source = str(path)
    data = load_yaml(path, "sweep file")
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping with keys {', '.join(SPEC_KEYS)}")
    check_keys(data, SPEC_KEYS, "", source)
    if "grid" not in data and "random" not in data:
        raise UserError(f"{source}: a sweep needs a 'grid' or a 'random' section")
    networks = data.get("networks", [SHIPPED])
    if not isinstance(networks, list) or not networks:
        raise UserError(f"{source}: key 'networks' must be a non-empty list of checkpoints (or '{SHIPPED}')")
    networks = [_relative_path(entry, "networks", source) for entry in networks]
    grid = _parameter_lists(data["grid"], "grid", source) if "grid" in data else {}
    space, count, seed = {}, 0, 0
    if "random" in data:
        section = data["random"]
        if not isinstance(section, dict):
            raise UserError(f"{source}: key 'random' must be a mapping with keys {', '.join(RANDOM_KEYS)}")
        check_keys(section, RANDOM_KEYS, "random.", source)
        if "space" not in section:
            raise UserError(f"{source}: key 'random.space' is missing (parameter: [values] to draw from)")
        space = _parameter_lists(section["space"], "random.space", source)
        count = check_int(section.get("points", 8), "random.points", source, 1)
        seed = check_int(section.get("seed", 0), "random.seed", source, 0)
    _check_size(source, len(networks), grid, count)
    base_path = data.get("base_arch")
    base = load_arch(None if base_path is None else
                     path.parent / _relative_path(base_path, "base_arch", source)).to_dict()
    _check_values(grid, "grid", source, base)
    _check_values(space, "random.space", source, base)
    checkpoints = []
    for entry in networks:
        checkpoint = shipped_checkpoint_path() if entry == SHIPPED else path.parent / entry
        if not checkpoint.is_file():
            raise UserError(f"{source}: key 'networks': no such checkpoint file {checkpoint}")
        try:
            load_checkpoint(checkpoint)
        except UserError as exc:
            raise UserError(f"{source}: key 'networks': {exc}") from None
        checkpoints.append(str(checkpoint))
    samples = data.get("samples")
    if samples is not None:
        check_int(samples, "samples", source, 1)
    available = len(_images(dataset, data_root, None)[0])   # an unknown or unreadable dataset is refused here
    if samples is not None and samples > available:  # never clamped silently
        raise UserError(f"{source}: key 'samples' = {samples}: the {dataset} test set has {available} images")
    fit = data.get("fit_memories")
    if fit is not None and fit != FIT_POWER_OF_TWO and (isinstance(fit, bool) or not isinstance(fit, (int, float))
                                                        or not 1 <= fit <= 16):
        raise UserError(f"{source}: key 'fit_memories' must be a headroom factor in [1, 16] or "
                        f"'{FIT_POWER_OF_TWO}', got {short_repr(fit)}")
    synth = data.get("synth") or {}
    if not isinstance(synth, dict):
        raise UserError(f"{source}: key 'synth' must be a mapping with keys {', '.join(SYNTH_KEYS)}")
    check_keys(synth, SYNTH_KEYS, "synth.", source)
    target = synth.get("target")
    if target is not None:
        if not isinstance(target, str):
            raise UserError(f"{source}: key 'synth.target' must be a device name, got {short_repr(target)}")
        try:
            get_target(target)
        except UserError as exc:
            raise UserError(f"{source}: key 'synth.target': {exc}") from None
    synth_points = check_int(synth.get("points", 0), "synth.points", source, 0)
    if synth_points and target is None:
        raise UserError(f"{source}: key 'synth.points' needs 'synth.target'")
    energy = data.get("energy")
    if energy is not None:
        from spikecore.sim.cost import load_energy_model

        energy = str(path.parent / _relative_path(energy, "energy", source))
        load_energy_model(energy)
    return SweepSpec(name=_sweep_name(data, path, source), source=source, networks=checkpoints, base=base,
                     samples=samples, grid=grid, random_space=space, random_points=count, random_seed=seed,
                     fit_memories=fit if fit in (None, FIT_POWER_OF_TWO) else float(fit),
                     synth_target=target, synth_points=synth_points, energy=energy, dataset=dataset,
                     data_root=None if data_root is None else str(data_root))


# ---- evaluating one point -----------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _network(checkpoint: str):
    from spikecore.accel.contract.checkpoint import load_checkpoint

    return load_checkpoint(checkpoint)[0]


@functools.lru_cache(maxsize=2)
def _images(dataset: str, data_root, samples):
    from spikecore.accel.flows.simulation import test_images

    return test_images(dataset, samples, data_root)


def dataset_identity(dataset: str, data_root) -> list:
    """What tells two sweeps' test images apart in the journal: a named dataset and its folder, or the digest of
    every ``.npz`` sample of a folder."""
    folder = Path(dataset)
    if dataset not in DATASETS and folder.is_dir():
        return [str(folder.resolve()), [[p.name, file_digest(p)] for p in sorted(folder.glob("*.npz"))]]
    return [dataset, None if data_root is None else str(Path(data_root).resolve())]


def _fitted_arch(arch, net, params: dict, headroom):
    """``arch`` with every memory that ``params`` does not set sized to the network's need times ``headroom``,
    or with ``headroom`` :data:`FIT_POWER_OF_TWO`, to the smallest power of two holding it."""
    from spikecore.accel.contract.compiler import compile_network

    probe = dataclasses.replace(arch, memories=dataclasses.replace(
        arch.memories, **{k: max(v, getattr(arch.memories, k)) for k, v in _PROBE_DEPTHS.items()}))
    program = compile_network(net, probe)
    need = {name: len(next(iter(columns.values()))) for name, columns in program.memories.items()}
    need.update(state=program.state_rows, inputs=program.n_inputs,
                events=max([program.n_inputs] + [l.n_groups * arch.lanes for l in program.layers if l.fires]))

    def depth(used: int) -> int:
        if headroom == FIT_POWER_OF_TWO:
            return max(2, 1 << (used - 1).bit_length())
        return max(2, math.ceil(used * headroom))

    depths = {name: depth(used) for name, used in need.items()
              if f"memories.{name}" not in params and hasattr(arch.memories, name)}
    return dataclasses.replace(arch, memories=dataclasses.replace(arch.memories, **depths))


def evaluate_point(task: dict) -> dict:
    """Compile, simulate (and, if asked, synthesise) one point; runs in a worker process.

    Parameters
    ----------
    task : dict
        ``id``, ``params``, ``arch`` (configuration mapping), ``network``, ``samples``, ``fit_memories``,
        ``energy``, ``synth_target`` (``None`` for no synthesis).

    Returns
    -------
    dict
        The journal record: ``status`` ``ok`` with the measurements, or ``infeasible`` with the ``reason``
        (the network does not fit the configuration).
    """
    import torch

    from spikecore.sim.cost import load_energy_model

    from spikecore.accel.flows.simulation import sim_report, simulate_images
    from spikecore.accel.contract.compiler import compile_network
    from spikecore.accel.contract.config import arch_from_dict

    torch.set_num_threads(1)
    start = time.perf_counter()
    record = {"id": task["id"], "network": task["network"], "params": task["params"], "synth": None}
    try:
        arch = arch_from_dict(task["arch"], "sweep point")
        net = _network(task["network"])
        if task["fit_memories"]:
            arch = _fitted_arch(arch, net, task["params"], task["fit_memories"])
        program = compile_network(net, arch)
    except UserError as exc:
        record.update(status="infeasible", reason=str(exc), seconds=time.perf_counter() - start)
        return record
    pixels, labels = _images(task["dataset"], task["data_root"], task["samples"])
    results = simulate_images(program, arch, pixels, progress=False, keep_events=False)
    report = sim_report(program, arch, results, labels, pixels, load_energy_model(task["energy"]))
    record.update(
        status="ok", reason=None, arch=arch.to_dict(), arch_fingerprint=arch.fingerprint(),
        memories={name: getattr(arch.memories, name) for name in arch.to_dict()["memories"]},
        accuracy=report["accuracy"], cycles_mean=report["cycles_mean"], latency_us=report["latency_us_mean"],
        throughput_per_s=report["throughput_inferences_per_s"], energy_uj=report["energy_total_pj"] / 1e6,
        pj_per_sop=report["pj_per_sop"], saturations=report["saturations"],
        trace_overflows=report["trace_overflows"], samples=report["samples"])
    if task["synth_target"]:
        from spikecore.accel.flows.synth import synthesize

        synth = synthesize(arch, task["synth_target"])
        record["synth"] = {key: synth[key] for key in ("target", "lut", "ff", "bram", "dsp", "spram", "lutram",
                                                       "fits", "fmax_mhz", "fmax_reason", "meets_clock", "cached")}
    record["seconds"] = time.perf_counter() - start
    return record


# ---- planning -----------------------------------------------------------------------------------
def file_digest(path) -> str:
    """First 16 hex digits of the SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


class SweepPlan:
    """The tasks of a sweep, generated one at a time in order (each point id once), and the ids of the points
    chosen for real synthesis.

    Parameters
    ----------
    spec : SweepSpec

    Attributes
    ----------
    synthesised : frozenset
        Ids of the ``synth.points`` tasks that are synthesised (:meth:`_synthesis_choice`).
    """

    def __init__(self, spec: SweepSpec):
        self.spec = spec
        self._energy = None if spec.energy is None else file_digest(spec.energy)
        self._network_digests = {checkpoint: file_digest(checkpoint) for checkpoint in spec.networks}
        self._dataset = dataset_identity(spec.dataset, spec.data_root)
        self.synthesised = frozenset()
        if spec.synth_points:
            self.synthesised = self._synthesis_choice()

    def tasks(self):
        """Yield the tasks (``id``, ``params``, ``arch``, ``network``, ``samples``, ``fit_memories``, ``energy``,
        ``synth_target``): every point of every network, a point id that came before skipped."""
        seen = set()
        for checkpoint in self.spec.networks:
            for params in sweep_points(self.spec):
                task = self._task(checkpoint, params)
                if task["id"] not in seen:
                    seen.add(task["id"])
                    yield task

    def _task(self, checkpoint: str, params: dict) -> dict:
        from spikecore.accel.contract.config import arch_from_dict

        spec = self.spec
        data = _arch_dict(spec.base, params)
        try:
            identity = arch_from_dict(data, spec.source).fingerprint()
        except UserError:  # an invalid combination of valid values: recorded as infeasible
            identity = json.dumps(data, sort_keys=True)
        key = json.dumps([identity, self._network_digests[checkpoint], spec.samples, spec.fit_memories,
                          self._energy] + ([] if spec.dataset == "digits" else [self._dataset]))
        point_id = hashlib.sha256(key.encode()).hexdigest()[:16]
        return {"id": point_id, "params": params, "arch": data, "network": checkpoint, "samples": spec.samples,
                "dataset": spec.dataset, "data_root": spec.data_root,
                "fit_memories": spec.fit_memories, "energy": spec.energy,
                "synth_target": spec.synth_target if point_id in self.synthesised else None}

    def _synthesis_choice(self) -> frozenset:
        """Ids of ``synth.points`` tasks spread over the sweep's range of size: the tasks ordered by analytic
        block RAM count, then datapath width, cut into ``synth.points`` equal slices, the middle task of each
        slice (the first network's points only: the hardware does not depend on the network)."""
        from spikecore.accel.flows import area
        from spikecore.accel.contract.config import arch_from_dict

        spec = self.spec
        sized = []
        for task in self.tasks():
            if task["network"] != spec.networks[0]:
                break
            try:
                x = area.features(arch_from_dict(task["arch"], spec.source), spec.synth_target)
            except UserError:
                continue
            sized.append((x["bram_blocks"], x["datapath_bits"], task["id"]))
        sized.sort()
        n = min(spec.synth_points, len(sized))
        return frozenset(sized[int((i + 0.5) * len(sized) / n)][2] for i in range(n))


def plan(spec: SweepSpec) -> list:
    """The tasks of a sweep as a list, in order (:meth:`SweepPlan.tasks`; at most :data:`MAX_SWEEP_POINTS`)."""
    return list(SweepPlan(spec).tasks())


# ---- the journal --------------------------------------------------------------------------------
#: Fields of every journal record, and those a feasible point's record adds (what the tables are made of).
RECORD_FIELDS = ("id", "network", "params", "status", "reason")
MEASURED_FIELDS = ("arch", "arch_fingerprint", "accuracy", "cycles_mean", "latency_us", "throughput_per_s",
                   "energy_uj", "pj_per_sop", "synth")


def _journal_record(line: bytes):
    """The record of one complete journal line, or None if the line is torn or is not a point record."""
    if not line.endswith(b"\n"):
        return None
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or not all(field in record for field in RECORD_FIELDS) or \
            not isinstance(record["id"], str) or not isinstance(record["params"], dict) or \
            record["status"] not in ("ok", "infeasible"):
        return None
    if record["status"] == "ok" and not all(field in record for field in MEASURED_FIELDS):
        return None
    return record


def read_journal(path: Path, log=None) -> dict:
    """``{point id: record}`` of a journal.

    The journal is only ever appended to, a whole fsynced line at a time, so only its last line can be
    damaged by its own writing (a kill in the middle of an append, a crash): a last line that is incomplete
    or not a point record is cut off the file (its point is computed again) and ``log`` is told. A damaged
    line before the last is refused: something else wrote to the file, and guessing which records to trust,
    or dropping those after it, could lose finished points or mix in foreign ones.

    Raises
    ------
    UserError
        The journal cannot be read, or a line before its last is damaged (the line is named).
    """
    if not path.exists():
        return {}
    records, intact_bytes, damaged = {}, 0, None
    try:
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                if damaged is not None:
                    raise UserError(f"{path}: line {damaged} is not a point record (the journal is damaged); "
                                    f"delete that line to resume, or move the file aside to compute every "
                                    f"point again")
                record = _journal_record(line)
                if record is None:
                    damaged = number
                    continue
                records[record["id"]] = record
                intact_bytes += len(line)
        if damaged is not None:
            with open(path, "r+b") as handle:
                handle.truncate(intact_bytes)
    except OSError as exc:
        raise UserError(f"{path}: cannot read the sweep journal ({exc.strerror})") from None
    if damaged is not None and log is not None:
        log(f"{path}: cut off its last line {damaged}, torn by an interrupted write; its point runs again")
    return records


def append_journal(handle, record: dict) -> None:
    """Append one record as a JSON line, flushed and fsynced: a finished point is never lost."""
    handle.write(json.dumps(record) + "\n")
    handle.flush()
    os.fsync(handle.fileno())


@contextlib.contextmanager
def exclusive_lock(out: Path):
    """Hold an exclusive lock on ``out / LOCK`` for the block, so that a second sweep on the same folder is
    refused instead of computing every point again beside the first. The lock file records the holder's
    pid and is removed when the block ends; the lock itself goes with the process, however it ends.

    Raises
    ------
    UserError
        Another process holds the lock (``DIR: another accel sweep (pid N) is running on this folder``), or
        the lock file cannot be opened or locked.
    """
    import fcntl

    path = out / LOCK
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as exc:
            raise UserError(f"{path}: cannot open the sweep's lock file ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 20, 0).decode("ascii", "replace").strip()
            os.close(fd)
            pid = f" (pid {holder})" if holder.isdigit() else ""
            raise UserError(f"{out}: another accel sweep{pid} is running on this folder") from None
        except OSError as exc:
            os.close(fd)
            raise UserError(f"{path}: cannot lock the sweep's folder ({exc.strerror})") from None
        try:
            current = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            current = None
        if current is not None and current.st_ino == os.fstat(fd).st_ino:
            break
        os.close(fd)  # the file was removed by the sweep that held it before this one locked it: again
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # while still locked, so that no one locks the removed file
        os.close(fd)


# ---- running ------------------------------------------------------------------------------------
#: ``prctl`` option that has the kernel send a signal to a process when its parent dies (Linux).
PR_SET_PDEATHSIG = 1


def _worker_setup(sweep_pid: int) -> None:
    """Initializer of a local worker process: it dies with the sweep (``PR_SET_PDEATHSIG``: SIGTERM when
    the sweep ends, even by SIGKILL), so that no worker goes on computing points nobody will record; and it
    ignores Ctrl-C, which reaches the whole terminal's process group, leaving the sweep to stop it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != sweep_pid:  # the sweep died before the death signal was armed
        os._exit(1)


class _TrackingSpawnContext(multiprocessing.context.SpawnContext):
    """The ``spawn`` start method, remembering the processes it starts, so that a pool's workers can be
    stopped at once (``ProcessPoolExecutor.shutdown`` waits for the points they are computing)."""

    def __init__(self):
        super().__init__()
        self.started = []

    def Process(self, *args, **kwargs):  # noqa: N802 (the name multiprocessing calls)
        process = super().Process(*args, **kwargs)
        self.started.append(process)
        return process

    def terminate_started(self) -> None:
        """Send SIGTERM to every started process still alive, and reap them."""
        started = [process for process in self.started if process.pid is not None]  # not those that failed
        for process in started:
            if process.is_alive():
                process.terminate()
        for process in started:
            process.join(timeout=5)


def _run_local(tasks, workers: int):
    """Yield the records of ``tasks`` (an iterable, consumed as points finish) computed by ``workers`` local
    processes; when interrupted, the queued points are cancelled and the workers stopped at once."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    context = _TrackingSpawnContext()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_setup,
                               initargs=(os.getpid(),))
    tasks = iter(tasks)
    running = set()
    try:
        while True:
            for task in itertools.islice(tasks, POINTS_IN_FLIGHT_PER_WORKER * workers - len(running)):
                running.add(pool.submit(evaluate_point, task))
            if not running:
                break
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                yield future.result()
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        context.terminate_started()
        raise
    pool.shutdown()


def dask_client(address: str):
    """A Dask distributed client of the scheduler at ``address``; :class:`UserError` if unreachable."""
    try:
        from distributed import Client
    except ImportError:
        raise UserError("--scheduler needs Dask distributed (pip install 'dask[distributed]'; "
                        "scripts/install.sh installs the pinned version)") from None
    try:
        return Client(address, timeout="10s")
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(f"--scheduler {address}: cannot reach the Dask scheduler ({exc})") from None


def _run_dask(tasks, client):
    """Yield the records of ``tasks`` (an iterable, consumed as points finish) computed on the cluster of
    ``client``, a few points per worker thread submitted ahead; when interrupted, the points are cancelled."""
    from distributed import as_completed

    tasks = iter(tasks)
    submitted = set()

    def submit(task):
        future = client.submit(evaluate_point, task, key=f"spikecore-point-{task['id']}", pure=False)
        submitted.add(future)
        return future

    ahead = POINTS_IN_FLIGHT_PER_WORKER * max(1, sum(client.nthreads().values()))
    completed = as_completed([submit(task) for task in itertools.islice(tasks, ahead)])
    try:
        for future in completed:
            submitted.discard(future)
            for task in itertools.islice(tasks, 1):
                completed.add(submit(task))
            yield future.result()
    except BaseException:
        client.cancel(list(submitted))
        raise


@contextlib.contextmanager
def _terminate_as_interrupt():
    """Within the block SIGTERM raises KeyboardInterrupt, as Ctrl-C does, so that a terminated sweep stops its
    workers and closes its journal like an interrupted one (in the main thread only: signal handlers can be
    set nowhere else)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_sweep(spec: SweepSpec, out: Path, workers: int | None = None, scheduler: str | None = None,
              progress: bool = True, log=print) -> dict:
    """Run the missing points of a sweep, then write its tables and plot.

    The output folder is claimed (:func:`spikecore.accel.flows.outputs.output_dir`: a new or empty folder, or an earlier
    sweep's; the claim is undone if the sweep fails before writing) once everything that can be refused
    without a trace has been checked, and locked for the whole run (:func:`exclusive_lock`).

    Parameters
    ----------
    spec : SweepSpec
    out : pathlib.Path
        Output folder: ``points.jsonl`` (the journal), ``sweep.csv``, ``pareto.csv``, ``pareto.png``,
        ``sweep.json``.
    workers : int, optional
        Local worker processes (default: the machine's cores); ignored with ``scheduler``.
    scheduler : str, optional
        Address of a Dask distributed scheduler (``tcp://host:port``).
    progress : bool
        Show a progress bar.
    log : callable
        Receives the human summary lines.

    Returns
    -------
    dict
        The summary written to ``sweep.json``.
    """
    from spikecore.accel.flows import area

    start = time.perf_counter()
    if spec.synth_target:  # fail before any work if no area model can be fitted at the end
        available = len(area.shipped_points(spec.synth_target)) + len(area.cached_points(spec.synth_target))
        if available + spec.synth_points < area.MIN_POINTS:
            raise UserError(f"area model {spec.synth_target}: {available} synthesis reports and {spec.synth_points} "
                            f"to come, at least {area.MIN_POINTS} are needed (run scripts/calibrate_area.py "
                            f"--target {spec.synth_target}, or raise synth.points)")
    client = dask_client(scheduler) if scheduler else None
    try:
        with output_dir(out, "sweep") as claimed, exclusive_lock(claimed), _terminate_as_interrupt():
            return _run_sweep(spec, claimed, workers, client, progress, log, start)
    finally:
        if client is not None:
            client.close()


def _run_sweep(spec: SweepSpec, out: Path, workers, client, progress: bool, log, start: float) -> dict:
    from tqdm import tqdm

    from spikecore.atomic import atomic_write_json

    sweep_plan = SweepPlan(spec)
    journal_path = out / JOURNAL
    done = read_journal(journal_path, log)
    ids, to_run, to_synthesise = [], 0, 0
    for task in sweep_plan.tasks():
        ids.append(task["id"])
        if task["id"] not in done:
            to_run += 1
            to_synthesise += task["synth_target"] is not None
    log(f"sweep {spec.name}: {len(ids)} points, {len(ids) - to_run} already done, {to_run} to run"
        + (f" ({to_synthesise} with synthesis for {spec.synth_target})" if spec.synth_target else "")
        + (f" on the Dask scheduler {client.scheduler.address}" if client
           else f" on {workers or os.cpu_count()} local workers"))

    def missing(synthesised: bool):
        return (task for task in sweep_plan.tasks()
                if task["id"] not in done and (task["synth_target"] is not None) == synthesised)

    computed = 0
    if to_run:
        todo = itertools.chain(missing(True), missing(False))  # the long synthesis points first
        runner = _run_dask(todo, client) if client else _run_local(todo, workers or os.cpu_count() or 1)
        with contextlib.closing(runner), open(journal_path, "a") as journal, \
                tqdm(total=len(ids), initial=len(ids) - to_run, desc="sweep", unit="pt",
                     disable=not progress) as bar:
            for record in runner:
                append_journal(journal, record)
                done[record["id"]] = record
                computed += 1
                bar.update(1)
    records = [done[point_id] for point_id in ids]
    summary = write_results(spec, records, out, log)
    summary.update(computed=computed, seconds=time.perf_counter() - start)
    inputs = {"sweep": spec.source, **{f"network{k}": network for k, network in enumerate(spec.networks)}}
    atomic_write_json(out / "sweep.json", {**report_header("sweep", inputs), **summary})
    return summary


# ---- results ------------------------------------------------------------------------------------
def pareto_front(rows: list) -> list:
    """Indices of the feasible rows not dominated on :data:`OBJECTIVES` (lower latency, area and energy, higher
    accuracy); an objective that no row has (area without a synthesis target) is left out."""
    candidates = [i for i, row in enumerate(rows) if row["status"] == "ok"]
    objectives = [(name, sense) for name, sense in OBJECTIVES
                  if all(rows[i].get(name) is not None for i in candidates)]

    def key(row):
        return [row[name] if sense == "min" else -row[name] for name, sense in objectives]

    front = []
    for i in candidates:
        a = key(rows[i])
        dominated = any(all(x <= y for x, y in zip(key(rows[j]), a)) and key(rows[j]) != a for j in candidates)
        if not dominated:
            front.append(i)
    return front


def _area_columns(records: list, spec: SweepSpec, log) -> tuple[dict, object]:
    """``{point id: area columns}``: measured where a point (or one with the same hardware) was
    synthesised, else predicted by the area model refitted with this machine's cached reports."""
    from spikecore.accel.flows import area
    from spikecore.accel.contract.config import arch_from_dict
    from spikecore.accel.flows.synth import get_target

    if spec.synth_target is None:
        return {}, None
    target = get_target(spec.synth_target)
    measured = {r["arch_fingerprint"]: r["synth"] for r in records if r["status"] == "ok" and r["synth"]}
    model = area.load_model(target.name)
    log(model.describe())
    columns = {}
    for r in records:
        if r["status"] != "ok":
            continue
        synth = measured.get(r["arch_fingerprint"])
        # every resource the target has (the iCE40's SPRAM included), so that fits and device_fraction agree
        if synth is not None:
            values = {k: synth.get(k) or 0 for k in target.capacity}
            values.update(fmax_mhz=synth["fmax_mhz"], area_source="synthesis")
        else:
            predicted = model.predict(arch_from_dict(r["arch"], "sweep point"))
            values = {k: predicted.get(k, 0) for k in target.capacity}
            values.update(fmax_mhz=None, area_source="model")
        values["device_fraction"] = max(values[k] / target.capacity[k] for k in target.capacity)
        # a synthesised point also fails to fit when nextpnr cannot place it within the counts
        values["fits"] = values["device_fraction"] <= 1 and (synth is None or synth["fits"])
        columns[r["id"]] = values
    return columns, model


CSV_COLUMNS = ("id", "network", "status", "accuracy", "cycles_mean", "latency_us", "throughput_per_s", "energy_uj",
               "pj_per_sop", "lut", "ff", "bram", "spram", "dsp", "fmax_mhz", "fits", "device_fraction", "area_source",
               "pareto", "reason")


def _csv_bytes(rows: list, columns: list) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return buffer.getvalue().encode()


def write_results(spec: SweepSpec, records: list, out: Path, log=print) -> dict:
    """Write ``sweep.csv`` (every point), ``pareto.csv`` and ``pareto.png``; returns the summary."""
    from spikecore.atomic import atomic_write_bytes

    areas, model = _area_columns(records, spec, log)
    parameters = list(dict.fromkeys(k for r in records for k in r["params"]))
    rows = []
    for r in records:
        config = _arch_dict(spec.base, r["params"])
        row = {"id": r["id"], "network": Path(r["network"]).name, "status": r["status"], "reason": r["reason"],
               **{k: config["memories"][k.split(".", 1)[1]] if k.startswith("memories.") else config[k]
                  for k in parameters}}
        if r["status"] == "ok":
            row.update({k: r[k] for k in ("accuracy", "cycles_mean", "latency_us", "throughput_per_s", "energy_uj",
                                          "pj_per_sop")})
            row.update(areas.get(r["id"], {}))
        rows.append(row)
    front = pareto_front(rows)
    for i, row in enumerate(rows):
        row["pareto"] = i in front
    columns = list(CSV_COLUMNS[:3]) + parameters + list(CSV_COLUMNS[3:])
    atomic_write_bytes(out / "sweep.csv", _csv_bytes(rows, columns))
    atomic_write_bytes(out / "pareto.csv", _csv_bytes([rows[i] for i in front], columns))
    plot_pareto(rows, out / "pareto.png", spec)
    ok = [r for r in rows if r["status"] == "ok"]
    log(f"{len(ok)} of {len(rows)} points feasible, {sum(r.get('area_source') == 'synthesis' for r in ok)} "
        f"synthesised, {len(front)} on the Pareto front; {out / 'sweep.csv'}, {out / 'pareto.csv'}, "
        f"{out / 'pareto.png'}")
    return {"name": spec.name, "source": spec.source, "points": len(rows), "feasible": len(ok),
            "infeasible": len(rows) - len(ok), "synthesised": sum(r.get("area_source") == "synthesis" for r in ok),
            "synth_target": spec.synth_target, "area_model": None if model is None else model.to_dict() | {
                "points": len(model.points)}, "pareto": [rows[i]["id"] for i in front],
            "objectives": dict(OBJECTIVES)}


def plot_pareto(rows: list, path: Path, spec: SweepSpec) -> None:
    """Projections of the sweep on pairs of objectives (every feasible point grey, the Pareto front red,
    synthesised points ringed); the area panels only when the sweep has a synthesis target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spikecore.atomic import atomic_save_figure

    ok = [r for r in rows if r["status"] == "ok"]
    area_label = f"device fraction on {spec.synth_target} (largest of LUT, FF, BRAM, DSP)"
    pairs = [("device_fraction", "latency_us", area_label, "latency (us)"),
             ("device_fraction", "energy_uj", area_label, "energy per inference (uJ)"),
             ("latency_us", "energy_uj", "latency (us)", "energy per inference (uJ)"),
             ("latency_us", "accuracy", "latency (us)", "accuracy"),
             ("energy_uj", "accuracy", "energy per inference (uJ)", "accuracy")]
    pairs = [p for p in pairs if any(r.get(p[0]) is not None for r in ok)][:4]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ax, (x, y, xlabel, ylabel) in zip(axes.flat, pairs):
        pts = [r for r in ok if r.get(x) is not None and r.get(y) is not None]
        for subset, style in (([r for r in pts if not r["pareto"]], dict(c="0.7", s=18, label="point")),
                              ([r for r in pts if r["pareto"]], dict(c="tab:red", s=30, label="Pareto front"))):
            ax.scatter([r[x] for r in subset], [r[y] for r in subset], **style)
        synthesised = [r for r in pts if r.get("area_source") == "synthesis"]
        ax.scatter([r[x] for r in synthesised], [r[y] for r in synthesised], facecolors="none",
                   edgecolors="k", s=80, label="synthesised")
        if x == "device_fraction":
            ax.set_xscale("log")
            ax.axvline(1.0, color="tab:blue", linestyle=":", label="device full")
        ax.set_xlabel(xlabel), ax.set_ylabel(ylabel)
    for ax in list(axes.flat)[len(pairs):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f"sweep {spec.name}: {len(ok)} feasible points of {len(rows)}, "
                 f"{sum(r['pareto'] for r in ok)} on the Pareto front")
    fig.tight_layout()
    atomic_save_figure(fig, path)


def cmd_sweep(args) -> int:
    """Handler of ``accel sweep``."""
    spec = load_sweep(args.sweep, args.dataset, args.data_root)
    most = MAX_WORKERS_PER_CORE * (os.cpu_count() or 1)
    if args.workers is not None and not 1 <= args.workers <= most:
        raise UserError(f"--workers must be in [1, {most}] ({MAX_WORKERS_PER_CORE} per core on this machine), "
                        f"got {args.workers}")
    summary = run_sweep(spec, Path(args.out), workers=args.workers, scheduler=args.scheduler,
                        progress=not args.quiet, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"sweep {summary['name']}: {summary['points']} points ({summary['computed']} computed now, "
          f"{summary['feasible']} feasible, {summary['synthesised']} synthesised), {len(summary['pareto'])} on the "
          f"Pareto front in {summary['seconds']:.0f} s; {Path(args.out) / 'pareto.csv'}")
    return 0


def add_parser(sub, quiet_arg, dataset_args) -> None:
    """Register ``accel sweep`` on the command line's subparsers (``dataset_args`` adds ``--dataset`` and
    ``--data-root``)."""
    p = sub.add_parser("sweep", help="grid/random search over parameters and networks: Pareto CSV and PNG")
    p.add_argument("sweep", metavar="SWEEP.yaml", help="sweep file (examples/sweep_digits.yaml, docs/sweeps.md)")
    p.add_argument("--out", required=True, metavar="DIR", help="journal, sweep.csv, pareto.csv/png, sweep.json")
    p.add_argument("--workers", type=int, default=None, help="local worker processes (default: all cores)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="run on a Dask distributed cluster (e.g. tcp://127.0.0.1:8786) instead of local processes")
    dataset_args(p)
    quiet_arg(p)
    p.set_defaults(func=cmd_sweep)
