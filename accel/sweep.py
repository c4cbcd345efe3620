"""``accel sweep``: grid and random search over core parameters and networks (``docs/sweeps.md``).

Every point (one configuration, one network) is compiled, simulated over the digits test images (cycles,
latency, energy, accuracy) and, for the few points chosen for real synthesis, synthesised with
:func:`accel.synth.synthesize`; the other points' area comes from the calibrated area model
(:mod:`accel.area`). Finished points are appended to ``points.jsonl`` (one JSON line each, flushed and
fsynced) keyed by a point id derived from the configuration's fingerprint, the network and the evaluation
settings, so an interrupted sweep resumes where it stopped and never redoes a finished point. Points run on a
local process pool, or on a Dask distributed cluster given its scheduler address.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import io
import itertools
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import yaml

from .errors import UserError

SPEC_KEYS = ("name", "networks", "base_arch", "samples", "grid", "random", "fit_memories", "synth", "energy")
RANDOM_KEYS = ("points", "seed", "space")
SYNTH_KEYS = ("target", "points")
SHIPPED = "shipped"
JOURNAL = "points.jsonl"
# ``fit_memories`` value that sizes each memory to the smallest power of two holding the network's need: block
# RAMs come in powers of two, so the headroom up to the next one is free, and the event regions' base
# addresses stay shifts (docs/synthesis.md)
FIT_POWER_OF_TWO = "pow2"
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
    points : list
        ``[{parameter: value}]``: the grid's combinations, then the random points.
    fit_memories : float, str or None
        Headroom factor: memory depths not swept are sized to ``ceil(need * factor)`` for each network; or
        ``"pow2"``: to the smallest power of two holding the need.
    synth_target : str or None
    synth_points : int
    energy : str or None
        An energy table for :func:`sim.cost.load_energy_model`.
    """

    name: str
    source: str
    networks: list
    base: dict
    samples: int | None
    points: list
    fit_memories: float | str | None
    synth_target: str | None
    synth_points: int
    energy: str | None


def _suggest(key, choices) -> str:
    import difflib

    close = difflib.get_close_matches(str(key), list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_keys(data: dict, allowed, where: str, source: str) -> None:
    for key in data:
        if key not in allowed:
            raise UserError(f"{source}: unknown key '{where}{key}'{_suggest(key, allowed)}")


def sweepable_parameters() -> list:
    """Names a sweep may vary: the configuration's scalar keys and ``memories.NAME``."""
    from .config import ArchConfig, Memories

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


def _parameter_values(section: dict, where: str, source: str, base: dict) -> dict:
    from .config import arch_from_dict

    allowed = sweepable_parameters()
    if not isinstance(section, dict) or not section:
        raise UserError(f"{source}: key '{where}' must be a mapping of parameter: [values]")
    for key, values in section.items():
        if key not in allowed:
            raise UserError(f"{source}: unknown parameter '{where}.{key}'{_suggest(key, allowed)}")
        if not isinstance(values, list) or not values:
            raise UserError(f"{source}: key '{where}.{key}' must be a non-empty list of values")
        for value in values:  # each value alone on the base configuration must be valid
            arch_from_dict(_arch_dict(base, {key: value}), f"{source}: {where}.{key}")
    return section


def _positive_int(value, key: str, source: str, lo: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise UserError(f"{source}: key '{key}' must be an integer >= {lo}, got {value!r}")
    return value


def load_sweep(path) -> SweepSpec:
    """Read and validate a sweep file; raises :class:`UserError` naming the file and key."""
    from .checkpoint import shipped_checkpoint_path
    from .config import load_arch
    from .synth import get_target

    path = Path(path)
    source = str(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UserError(f"{source}: cannot read sweep file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise UserError(f"{source}: malformed YAML" + (f" at line {mark.line + 1}" if mark else "")) from None
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping with keys {', '.join(SPEC_KEYS)}")
    _check_keys(data, SPEC_KEYS, "", source)
    if "grid" not in data and "random" not in data:
        raise UserError(f"{source}: a sweep needs a 'grid' or a 'random' section")
    base_path = data.get("base_arch")
    base = load_arch(None if base_path is None else path.parent / base_path).to_dict()
    networks = data.get("networks", [SHIPPED])
    if not isinstance(networks, list) or not networks:
        raise UserError(f"{source}: key 'networks' must be a non-empty list of checkpoints (or '{SHIPPED}')")
    checkpoints = []
    for entry in networks:
        checkpoint = shipped_checkpoint_path() if entry == SHIPPED else path.parent / str(entry)
        if not checkpoint.is_file():
            raise UserError(f"{source}: key 'networks': no such checkpoint file {checkpoint}")
        checkpoints.append(str(checkpoint))
    samples = data.get("samples")
    if samples is not None:
        _positive_int(samples, "samples", source)
    points = []
    if "grid" in data:
        grid = _parameter_values(data["grid"], "grid", source, base)
        points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    if "random" in data:
        section = data["random"]
        if not isinstance(section, dict):
            raise UserError(f"{source}: key 'random' must be a mapping with keys {', '.join(RANDOM_KEYS)}")
        _check_keys(section, RANDOM_KEYS, "random.", source)
        if "space" not in section:
            raise UserError(f"{source}: key 'random.space' is missing (parameter: [values] to draw from)")
        space = _parameter_values(section["space"], "random.space", source, base)
        count = _positive_int(section.get("points", 8), "random.points", source)
        rng = random.Random(_positive_int(section.get("seed", 0), "random.seed", source, lo=0))
        fixed = {k: v for k, v in base.items() if k != "memories"}
        seen = {json.dumps({**fixed, **p}, sort_keys=True) for p in points}
        possible = math.prod(len(v) for v in space.values())
        drawn = 0
        for _ in range(100 * count):  # distinct draws not already in the grid
            if drawn == count or drawn >= possible:
                break
            point = {key: rng.choice(values) for key, values in space.items()}
            text = json.dumps({**fixed, **point}, sort_keys=True)
            if text not in seen:
                seen.add(text)
                points.append(point)
                drawn += 1
    fit = data.get("fit_memories")
    if fit is not None and fit != FIT_POWER_OF_TWO and (isinstance(fit, bool) or not isinstance(fit, (int, float))
                                                        or not 1 <= fit <= 16):
        raise UserError(f"{source}: key 'fit_memories' must be a headroom factor in [1, 16] or "
                        f"'{FIT_POWER_OF_TWO}', got {fit!r}")
    synth = data.get("synth") or {}
    if not isinstance(synth, dict):
        raise UserError(f"{source}: key 'synth' must be a mapping with keys {', '.join(SYNTH_KEYS)}")
    _check_keys(synth, SYNTH_KEYS, "synth.", source)
    target = synth.get("target")
    if target is not None:
        try:
            get_target(target)
        except UserError as exc:
            raise UserError(f"{source}: key 'synth.target': {exc}") from None
    synth_points = _positive_int(synth.get("points", 0), "synth.points", source, lo=0)
    if synth_points and target is None:
        raise UserError(f"{source}: key 'synth.points' needs 'synth.target'")
    energy = data.get("energy")
    if energy is not None:
        from sim.cost import load_energy_model

        energy = str(path.parent / str(energy))
        load_energy_model(energy)
    return SweepSpec(name=str(data.get("name", path.stem)), source=source, networks=checkpoints, base=base,
                     samples=samples, points=points,
                     fit_memories=fit if fit in (None, FIT_POWER_OF_TWO) else float(fit),
                     synth_target=target, synth_points=synth_points, energy=energy)


# ---- evaluating one point -----------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _network(checkpoint: str):
    from .checkpoint import load_checkpoint

    return load_checkpoint(checkpoint)[0]


@functools.lru_cache(maxsize=2)
def _images(samples):
    from models import load_digits_split

    _, _, x_te, y_te = load_digits_split()
    return (x_te, y_te) if samples is None else (x_te[:samples], y_te[:samples])


def _fitted_arch(arch, net, params: dict, headroom):
    """``arch`` with every memory that ``params`` does not set sized to the network's need times ``headroom``,
    or with ``headroom`` :data:`FIT_POWER_OF_TWO`, to the smallest power of two holding it."""
    from .compiler import compile_network

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

    from sim.cost import load_energy_model

    from .cli import _simulate, _sim_report
    from .compiler import compile_network
    from .config import arch_from_dict

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
    pixels, labels = _images(task["samples"])
    results = _simulate(program, arch, pixels, progress=False, keep_events=False)
    report = _sim_report(program, arch, results, labels, pixels, load_energy_model(task["energy"]))
    record.update(
        status="ok", reason=None, arch=arch.to_dict(), arch_fingerprint=arch.fingerprint(),
        memories={name: getattr(arch.memories, name) for name in arch.to_dict()["memories"]},
        accuracy=report["accuracy"], cycles_mean=report["cycles_mean"], latency_us=report["latency_us_mean"],
        throughput_per_s=report["throughput_inferences_per_s"], energy_uj=report["energy_total_pj"] / 1e6,
        pj_per_sop=report["pj_per_sop"], saturations=report["saturations"],
        trace_overflows=report["trace_overflows"], samples=report["samples"])
    if task["synth_target"]:
        from .synth import synthesize

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


def plan(spec: SweepSpec) -> list:
    """The tasks of a sweep, in order, with their point ids and the points chosen for real synthesis."""
    from .config import arch_from_dict

    energy = None if spec.energy is None else file_digest(spec.energy)
    tasks = []
    for checkpoint in spec.networks:
        network = file_digest(checkpoint)
        for params in spec.points:
            data = _arch_dict(spec.base, params)
            try:
                identity = arch_from_dict(data, spec.source).fingerprint()
            except UserError:  # an invalid combination of valid values: recorded as infeasible
                identity = json.dumps(data, sort_keys=True)
            key = json.dumps([identity, network, spec.samples, spec.fit_memories, energy])
            tasks.append({"id": hashlib.sha256(key.encode()).hexdigest()[:16], "params": params, "arch": data,
                          "network": checkpoint, "samples": spec.samples, "fit_memories": spec.fit_memories,
                          "energy": spec.energy, "synth_target": None})
    unique = list({t["id"]: t for t in tasks}.values())
    if spec.synth_points:
        chosen = _synthesis_choice(unique, spec)
        for task in unique:
            task["synth_target"] = spec.synth_target if task["id"] in chosen else None
    return unique


def _synthesis_choice(tasks: list, spec: SweepSpec) -> set:
    """Ids of ``synth.points`` tasks spread over the sweep's range of size: the tasks ordered by analytic block
    RAM count, then datapath width, cut into ``synth.points`` equal slices, the middle task of each slice (the
    first network's points only: the hardware does not depend on the network)."""
    from . import area
    from .config import arch_from_dict

    sized = []
    for task in tasks:
        if task["network"] != spec.networks[0]:
            continue
        try:
            x = area.features(arch_from_dict(task["arch"], spec.source), spec.synth_target)
        except UserError:
            continue
        sized.append(((x["bram_blocks"], x["datapath_bits"], task["id"]), task["id"]))
    sized.sort()
    n = min(spec.synth_points, len(sized))
    if n == 0:
        return set()
    return {sized[int((i + 0.5) * len(sized) / n)][1] for i in range(n)}


# ---- the journal --------------------------------------------------------------------------------
def read_journal(path: Path) -> dict:
    """``{point id: record}`` of a journal; a torn last line (an interrupted write) is cut off the file."""
    if not path.exists():
        return {}
    records, good = {}, 0
    data = path.read_bytes()
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        records[record["id"]] = record
        good += len(line)
    if good != len(data):
        with open(path, "r+b") as handle:
            handle.truncate(good)
    return records


def append_journal(handle, record: dict) -> None:
    """Append one record as a JSON line, flushed and fsynced: a finished point is never lost."""
    handle.write(json.dumps(record) + "\n")
    handle.flush()
    os.fsync(handle.fileno())


# ---- running ------------------------------------------------------------------------------------
def _run_local(tasks: list, workers: int):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(evaluate_point, task) for task in tasks]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


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


def _run_dask(tasks: list, client):
    from distributed import as_completed

    futures = [client.submit(evaluate_point, task, key=f"spikecore-point-{task['id']}", pure=False)
               for task in tasks]
    try:
        for future in as_completed(futures):
            yield future.result()
    except BaseException:
        client.cancel(futures)
        raise


def run_sweep(spec: SweepSpec, out: Path, workers: int | None = None, scheduler: str | None = None,
              progress: bool = True, log=print) -> dict:
    """Run the missing points of a sweep, then write its tables and plot.

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
    from . import area

    start = time.perf_counter()
    if spec.synth_target:  # fail before any work if no area model can be fitted at the end
        available = len(area.shipped_points(spec.synth_target)) + len(area.cached_points(spec.synth_target))
        if available + spec.synth_points < area.MIN_POINTS:
            raise UserError(f"area model {spec.synth_target}: {available} synthesis reports and {spec.synth_points} "
                            f"to come, at least {area.MIN_POINTS} are needed (run scripts/calibrate_area.py "
                            f"--target {spec.synth_target}, or raise synth.points)")
    client = dask_client(scheduler) if scheduler else None
    try:
        return _run_sweep(spec, out, workers, client, progress, log, start)
    finally:
        if client is not None:
            client.close()


def _run_sweep(spec: SweepSpec, out: Path, workers, client, progress: bool, log, start: float) -> dict:
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    tasks = plan(spec)
    journal_path = out / JOURNAL
    done = read_journal(journal_path)
    todo = [t for t in tasks if t["id"] not in done]
    todo.sort(key=lambda t: t["synth_target"] is None)  # the long synthesis points first
    log(f"sweep {spec.name}: {len(tasks)} points, {len(tasks) - len(todo)} already done, {len(todo)} to run"
        + (f" ({sum(t['synth_target'] is not None for t in todo)} with synthesis for {spec.synth_target})"
           if spec.synth_target else "")
        + (f" on the Dask scheduler {client.scheduler.address}" if client
           else f" on {workers or os.cpu_count()} local workers"))
    computed = 0
    if todo:
        runner = _run_dask(todo, client) if client else _run_local(todo, workers or os.cpu_count() or 1)
        with open(journal_path, "a") as journal, \
                tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc="sweep", unit="pt",
                     disable=not progress) as bar:
            for record in runner:
                append_journal(journal, record)
                done[record["id"]] = record
                computed += 1
                bar.update(1)
    records = [done[t["id"]] for t in tasks]
    summary = write_results(spec, records, out, log)
    summary.update(computed=computed, seconds=time.perf_counter() - start)
    from models.atomic import atomic_write_json

    atomic_write_json(out / "sweep.json", summary)
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
    from . import area
    from .config import arch_from_dict
    from .synth import get_target

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
        if synth is not None:
            values = {k: synth[k] for k in ("lut", "ff", "bram", "dsp")}
            values.update(fmax_mhz=synth["fmax_mhz"], fits=synth["fits"], area_source="synthesis")
        else:
            values = model.predict(arch_from_dict(r["arch"], "sweep point"))
            values.update(fmax_mhz=None, area_source="model")
            values["fits"] = all(values[k] <= target.capacity[k] for k in values if k in target.capacity)
        values["device_fraction"] = max(values[k] / target.capacity[k] for k in ("lut", "ff", "bram", "dsp"))
        columns[r["id"]] = values
    return columns, model


CSV_COLUMNS = ("id", "network", "status", "accuracy", "cycles_mean", "latency_us", "throughput_per_s", "energy_uj",
               "pj_per_sop", "lut", "ff", "bram", "dsp", "fmax_mhz", "fits", "device_fraction", "area_source",
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
    from models.atomic import atomic_write_bytes

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

    from models.atomic import atomic_save_figure

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
    spec = load_sweep(args.sweep)
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    summary = run_sweep(spec, Path(args.out), workers=args.workers, scheduler=args.scheduler,
                        progress=not args.quiet, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"sweep {summary['name']}: {summary['points']} points ({summary['computed']} computed now, "
          f"{summary['feasible']} feasible, {summary['synthesised']} synthesised), {len(summary['pareto'])} on the "
          f"Pareto front in {summary['seconds']:.0f} s; {Path(args.out) / 'pareto.csv'}")
    return 0


def add_parser(sub, quiet_arg) -> None:
    """Register ``accel sweep`` on the command line's subparsers."""
    p = sub.add_parser("sweep", help="grid/random search over parameters and networks: Pareto CSV and PNG")
    p.add_argument("sweep", metavar="SWEEP.yaml", help="sweep file (examples/sweep_digits.yaml, docs/sweeps.md)")
    p.add_argument("--out", required=True, metavar="DIR", help="journal, sweep.csv, pareto.csv/png, sweep.json")
    p.add_argument("--workers", type=int, default=None, help="local worker processes (default: all cores)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="run on a Dask distributed cluster (e.g. tcp://127.0.0.1:8786) instead of local processes")
    quiet_arg(p)
    p.set_defaults(func=cmd_sweep)
