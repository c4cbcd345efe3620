"""Mutation testing of the RTL (``docs/mutation.md``): how many mutants of the core the verification kills.

The mutants come from :mod:`spikecore.rtl.mutation` (Yosys's ``mutate``, every mutant behind one selector in one
netlist, one Verilator build). Each runs a fixed set of programs (:class:`MutationProgram`) through the runner,
loading the program and reading the results over the host bus, and is compared by the checks of ``accel verify``
(:data:`CHECKS`). A mutant is *killed* when a check fails on some image, when it hangs (the netlist's watchdog
ends the simulation at :data:`HANG_FACTOR` times the expected cycles) or when its simulation fails; its remaining
programs are then skipped. Mutant 0 (the original core) runs first and must pass everything: otherwise the
harness, not the mutants, is at fault. A *survivor* is given to :func:`spikecore.rtl.mutation.prove_equivalent`:
``PASS`` makes it *equivalent* (it cannot be killed), anything else leaves it a survivor, with the proof's verdict
recorded. The score is ``killed / (total - equivalent)``.

The report (:func:`write_report`): ``mutation_report.json`` (every mutant: its mutation, source lines, verdict,
what killed it, the proof), ``mutation_report.md`` (the score and the table of survivors and equivalents),
``mutants.csv`` (one row a mutant) and ``mutation_report.png`` (verdicts per source file).
"""
from __future__ import annotations

import csv
import io
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spikecore.accel.contract.config import ArchConfig
from spikecore.accel.contract.layouts import state_layout
from spikecore.accel.contract.program import Program
from spikecore.accel.flows.verify import (check_trace_capacity, decode_rtl, emission_schedule, rtl_cache_dir,
                                          rtl_events, verify)
from spikecore.errors import UserError

#: What a mutant is compared on, per image, against the golden model and the simulator:
#: ``values``: ``accel verify``'s ``bit_exact`` (every event of every stage, the logits, no stray trace word,
#: no trace overflow, the saturation counts); ``cycles``: its ``cycle_exact`` (the ``cycles`` register and the
#: busy time measured by the testbench equal the simulator's); ``schedule``: every trace word written, in order,
#: at the cycle ``docs/core.md``'s schedule gives it (``verify.emission_schedule``, the contract suite's check);
#: ``state``: every final membrane of the state memory equals the simulator's.
CHECKS = ("values", "cycles", "schedule", "state")
#: The watchdog's limit, in multiples of the most cycles an image of the program takes.
HANG_FACTOR = 2
#: Cycles added to the limit (the host's own traffic between start and done is none, but a margin costs nothing).
HANG_MARGIN = 1000
#: The miter's bounded depth and induction length (cycles) in :func:`spikecore.rtl.mutation.prove_equivalent`.
PROOF_DEPTH = 4
#: Seconds before an equivalence proof gives up.
PROOF_TIMEOUT = 300
#: Seconds of proofs per run: survivors left when they are spent are recorded as ``not attempted``.
PROOF_BUDGET = 900
VERDICTS = ("killed", "survived", "equivalent")


@dataclass
class MutationProgram:
    """A program of the fixed set and the images it runs.

    Attributes
    ----------
    name : str
    program : accel.program.Program
    pixels : numpy.ndarray
        int64 ``[images, program.n_inputs]``.
    reference : str
        What the values (events, logits, saturations) are compared with: ``"golden"`` (the golden model, as
        ``accel verify``), or ``"simulator"`` for a program past the compiler's range check whose accumulators
        saturate: saturating additions depend on their order, which the dense golden model does not follow
        and the simulator does (the core's order, ``docs/core.md``), or whose trace overflows (``accel verify``
        refuses a trace memory too small; the contract says what the core keeps); see :func:`simulator_failures`.
    """

    name: str
    program: Program
    pixels: np.ndarray
    reference: str = "golden"


@dataclass
class _Expected:
    """What a program's images must give: the simulator's results (checked equal to the golden model)."""

    entry: MutationProgram
    pixels: torch.Tensor
    sims: list
    cycle_limit: int


def expected_results(programs: list, arch: ArchConfig) -> list:
    """The simulator's results on each program, after checking them bit-exact against the golden model.

    Raises
    ------
    UserError
        If a program was compiled for another configuration, its images do not fit it, its events overflow the
        trace memory, or the simulator disagrees with the golden model (the reference would be wrong).
    """
    from spikecore.sim.engine import simulate_batch

    expected = []
    for entry in programs:
        if entry.program.arch_fingerprint != arch.fingerprint():
            raise UserError(f"mutation program {entry.name}: compiled for another configuration than {arch.name}")
        pixels = np.asarray(entry.pixels)
        if pixels.ndim != 2 or pixels.shape[1] != entry.program.n_inputs or len(pixels) == 0 \
                or not np.issubdtype(pixels.dtype, np.integer):
            raise UserError(f"mutation program {entry.name}: images must be integers [N >= 1, "
                            f"{entry.program.n_inputs}], got {pixels.dtype} {list(pixels.shape)}")
        sims = simulate_batch(entry.program, arch, pixels.astype(np.int64))
        if entry.reference == "golden":  # the simulator reference compares a trace that overflows, too
            check_trace_capacity(arch, sims)
        if entry.reference not in ("golden", "simulator"):
            raise UserError(f"mutation program {entry.name}: reference {entry.reference!r} is not golden or simulator")
        tensor = torch.from_numpy(pixels.astype(np.int64).reshape((len(pixels),) + tuple(entry.program.input_shape)))
        report, _ = verify(entry.program, arch, tensor, None, sims)
        if entry.reference == "golden" and not report["bit_exact"]:
            raise UserError(f"mutation program {entry.name}: the simulator differs from the golden model "
                            f"({report['mismatches'][:1]}); it cannot serve as the reference")
        limit = HANG_FACTOR * max(int(s.cycles) for s in sims) + HANG_MARGIN
        expected.append(_Expected(entry, tensor, sims, limit))
    return expected


def failed_checks(expected: _Expected, arch: ArchConfig, rtl: list, checks=CHECKS) -> list:
    """The names of ``checks`` (:data:`CHECKS`) that the RTL's results ``rtl`` (the runner's, one per image)
    fail against ``expected``."""
    if expected.entry.reference == "simulator":
        return simulator_failures(expected, arch, rtl, checks)
    program = expected.entry.program
    failed = []
    report, _ = verify(program, arch, expected.pixels, rtl, expected.sims)
    if "values" in checks and not report["bit_exact"]:
        failed.append("values")
    if "cycles" in checks and not report["cycle_exact"]:
        failed.append("cycles")
    if "schedule" in checks:
        for pixels, sim, result in zip(expected.pixels.reshape(len(rtl), -1).numpy(), expected.sims, rtl):
            events, _ = emission_schedule(program, arch, pixels, sim)
            if [e[:4] for e in events] != trace_words(program, arch, result) \
                    or [int(e[4]) for e in events] != [int(c) for c in result["trace_cycles"]]:
                failed.append("schedule")
                break
    if "state" in checks:
        for sim, result in zip(expected.sims, rtl):
            if not np.array_equal(rtl_state(arch, result), np.asarray(sim.state, np.int64)):
                failed.append("state")
                break
    return failed


def simulator_failures(expected: _Expected, arch: ArchConfig, rtl: list, checks=CHECKS) -> list:
    """:func:`failed_checks` for a program whose reference is the simulator (``MutationProgram.reference``):
    ``values``: the trace count and overflow flag, every trace word in emission order (the first ``trace_count``
    of the schedule's events: a trace that overflows keeps the first), the logits, the saturation count (past
    the compiler's range both count every clamped addition in the core's order, ``docs/numerics.md``,
    "Accumulator rule"); ``cycles``: the ``cycles`` register and the measured busy time; ``schedule``: the cycle
    of each trace write; ``state``: the membranes."""
    program = expected.entry.program
    failed = []
    for pixels, sim, result in zip(expected.pixels.reshape(len(rtl), -1).numpy(), expected.sims, rtl):
        events, _ = emission_schedule(program, arch, pixels, sim)
        count = int(result["trace_count"])
        logits = decode_rtl(program, arch, result)["logits"]
        found = {
            "values": count != int(sim.trace_count) or bool(result["trace_overflow"]) != bool(sim.trace_overflow)
            or [e[:4] for e in events[:count]] != trace_words(program, arch, result)
            or not np.array_equal(np.asarray(logits), np.asarray(sim.logits))
            or int(result["saturations"]) != int(sim.saturations),
            "cycles": int(result["cycles"]) != int(sim.cycles) or int(result["cycles_measured"]) != int(sim.cycles),
            "schedule": [int(e[4]) for e in events[:count]] != [int(c) for c in result["trace_cycles"]],
            "state": not np.array_equal(rtl_state(arch, result), np.asarray(sim.state, np.int64)),
        }
        failed += [check for check in checks if found[check] and check not in failed]
    return [check for check in CHECKS if check in failed]


def trace_words(program: Program, arch: ArchConfig, result: dict) -> list:
    """The RTL's trace words as :func:`spikecore.accel.flows.verify.emission_schedule` lists its events (a
    layer-major train cut to the program's timesteps: the word has a slot for each of ``max_timesteps``)."""
    words = rtl_events(arch, result)
    if arch.layer_major:
        words = [(p, t, i, train[:program.timesteps]) for p, t, i, train in words]
    return words


def rtl_state(arch: ArchConfig, result: dict) -> np.ndarray:
    """The RTL's final membranes, int64 ``[state_rows, lanes, max_levels]``."""
    return state_layout(arch).unpack(result["state"])["u"].reshape(-1, arch.lanes, arch.max_levels)


def run_mutant(mutants, arch: ArchConfig, expected: list, number: int, workdir, checks=CHECKS) -> dict:
    """Run mutant ``number`` on the programs of ``expected`` until one kills it.

    Returns
    -------
    dict
        ``number``, ``verdict`` (``killed`` or ``survived``), ``killed_by`` (``{"program", "reason", "checks"}``:
        reason ``checks``, ``hang``, ``protocol``, ``read-back`` or ``simulation failed``; None for a survivor), ``programs_run``, ``seconds``.
    """
    from spikecore.rtl.mutation import PROTOCOL_MESSAGE, WATCHDOG_MESSAGE, mutant_plusargs
    from spikecore.rtl.runner import HostReadBack, run_inferences

    started = time.perf_counter()
    killed_by, run = None, 0
    for item in expected:
        run += 1
        program = item.entry.program
        inputs = [[int(v) for v in row] for row in item.pixels.reshape(len(item.pixels), -1).tolist()]
        try:
            rtl = run_inferences(program.memory_image(arch), inputs, arch, workdir, simulator="verilator", jobs=1,
                                 backdoor=False, source=mutants.source,
                                 plusargs=mutant_plusargs(number, item.cycle_limit))
        except RuntimeError as exc:
            reason = ("read-back" if isinstance(exc, HostReadBack) else "hang" if WATCHDOG_MESSAGE in str(exc)
                      else "protocol" if PROTOCOL_MESSAGE in str(exc) else "simulation failed")
            killed_by = {"program": item.entry.name, "reason": reason, "checks": [],
                         "detail": str(exc).splitlines()[0][:300]}
            break
        failed = failed_checks(item, arch, rtl, checks)
        if failed:
            killed_by = {"program": item.entry.name, "reason": "checks", "checks": failed}
            break
    return {"number": int(number), "verdict": "survived" if killed_by is None else "killed", "killed_by": killed_by,
            "programs_run": run, "seconds": round(time.perf_counter() - started, 2)}


def check_arguments(count, seed, checks=CHECKS) -> None:
    """Refuse a mutant count below 1, a negative seed or an unknown check.

    Raises
    ------
    UserError
        Naming the argument (``--mutants``, ``--seed``) or the check.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise UserError(f"--mutants must be a whole number of at least 1, got {count!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"--seed must be a whole number of at least 0, got {seed!r}")
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown or not checks:
        raise UserError(f"checks {unknown or '(none)'}: choose among {', '.join(CHECKS)}")


def mutation_run(arch: ArchConfig, programs: list, count: int, seed: int = 1, numbers=None, checks=CHECKS,
                 jobs: int = 2, prove: bool = True, proof_dir=None, workdir=None, progress: bool = True) -> dict:
    """Mutation testing of the core of ``arch`` on ``programs``: the report (see the module docstring).

    Parameters
    ----------
    arch : accel.config.ArchConfig
    programs : list of MutationProgram
        The fixed set, compiled for ``arch``; run in this order (cheapest first saves time: a killed mutant
        runs no further program).
    count : int
        Mutants to make (``mutate -list``; it may find fewer).
    seed : int
        ``mutate``'s seed.
    numbers : sequence of int, optional
        Run only these mutants (default: all).
    checks : sequence of str
        The checks that can kill (:data:`CHECKS`; fewer only to show what a check is worth).
    jobs : int
        Mutants simulated side by side (one simulator process each).
    prove : bool
        Try to prove each survivor equivalent to the original (:func:`spikecore.rtl.mutation.prove_equivalent`).
    proof_dir : path-like, optional
        Where the proofs' files go (default: a folder in the mutants' cache folder).
    workdir : path-like, optional
        The RTL cache (default: :func:`spikecore.accel.flows.verify.rtl_cache_dir`).
    progress : bool
        A ``tqdm`` bar per mutant simulated and per proof.

    Raises
    ------
    UserError
        On bad arguments or programs (:func:`expected_results`).
    RuntimeError
        If the original core (mutant 0) fails a check: the harness or the netlist is broken.
    """
    from tqdm import tqdm

    from spikecore.rtl.mutation import prepare_mutants, prove_equivalent

    check_arguments(count, seed, checks)
    if not programs:
        raise UserError("mutation testing needs at least one program")
    started = time.perf_counter()
    workdir = Path(workdir) if workdir is not None else rtl_cache_dir()
    expected = expected_results(programs, arch)
    with tqdm(total=None, desc="mutants", unit="mutant", disable=not progress) as bar:
        mutants = prepare_mutants(arch, workdir, count, seed, bar)
        numbers = list(range(1, len(mutants.mutations) + 1)) if numbers is None else [int(n) for n in numbers]
        outside = [n for n in numbers if not 1 <= n <= len(mutants.mutations)]
        if outside:
            raise UserError(f"mutant {outside[0]} is not one of 1 .. {len(mutants.mutations)}")
        bar.reset(total=len(numbers) + 1)
        control = run_mutant(mutants, arch, expected, 0, workdir, CHECKS)  # builds the model on first use
        if control["verdict"] != "survived":
            raise RuntimeError(f"the original core (mutant 0) fails the checks: {control['killed_by']}")
        bar.update(1)
        results = {}
        with ThreadPoolExecutor(max_workers=max(1, int(jobs))) as pool:
            futures = {pool.submit(run_mutant, mutants, arch, expected, n, workdir, tuple(checks)): n for n in numbers}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                bar.update(1)
    survivors = [n for n in numbers if results[n]["verdict"] == "survived"]
    if prove and survivors:
        proofs = Path(proof_dir) if proof_dir is not None else mutants.folder.parent / f"{mutants.folder.name}-proofs"
        proving = time.perf_counter()
        for n in tqdm(survivors, desc="equivalence proofs", unit="proof", disable=not progress):
            if time.perf_counter() - proving > PROOF_BUDGET:
                results[n]["proof"] = {"status": "not attempted", "seconds": 0, "depth": PROOF_DEPTH}
                continue
            proof = prove_equivalent(mutants, n, proofs, PROOF_DEPTH, PROOF_TIMEOUT)
            results[n]["proof"] = {"status": proof.status, "seconds": round(proof.seconds, 1), "depth": PROOF_DEPTH}
            if proof.passed:
                results[n]["verdict"] = "equivalent"
    mutants_report = []
    for n in numbers:
        mutation = mutants.mutation(n)
        mutants_report.append({**mutation.to_json(), **results[n], "description": mutation.describe()})
    tally = {verdict: sum(m["verdict"] == verdict for m in mutants_report) for verdict in VERDICTS}
    live = len(mutants_report) - tally["equivalent"]
    return {
        "arch": arch.name, "arch_fingerprint": arch.fingerprint(), "mutants_made": len(mutants.mutations),
        "seed": seed, "checks": list(checks),
        "programs": [{"name": item.entry.name, "images": len(item.pixels), "cycle_limit": item.cycle_limit}
                     for item in expected],
        "control": control, "mutants": mutants_report,
        "score": {**tally, "total": len(mutants_report),
                  "killed_fraction": None if live == 0 else round(tally["killed"] / live, 4)},
        "seconds": round(time.perf_counter() - started, 1),
    }


def report_markdown(report: dict) -> str:
    """The short Markdown summary: the score, the programs and every mutant not killed."""
    score = report["score"]
    fraction = "n/a" if score["killed_fraction"] is None else f"{100 * score['killed_fraction']:.1f}%"
    lines = [f"# Mutation report: {report['arch']}", "",
             f"{score['killed']} killed, {score['survived']} survived, {score['equivalent']} equivalent of "
             f"{score['total']} mutants: {fraction} of the non-equivalent mutants killed "
             f"({report['seconds']:.0f} s; checks {', '.join(report['checks'])}).", "",
             "Programs: " + ", ".join(f"{p['name']} ({p['images']} images)" for p in report["programs"]) + ".", "",
             "| mutant | verdict | mutation | proof |", "|---:|---|---|---|"]
    for mutant in report["mutants"]:
        if mutant["verdict"] != "killed":
            proof = mutant.get("proof")
            lines.append(f"| {mutant['number']} | {mutant['verdict']} | {mutant['description'].replace('|', '/')} | "
                         f"{'-' if proof is None else proof['status']} |")
    killed_by = {}
    for mutant in report["mutants"]:
        if mutant["killed_by"] is not None:
            what = mutant["killed_by"]
            reason = what["reason"] if what["reason"] != "checks" else "+".join(what["checks"])
            killed_by[reason] = killed_by.get(reason, 0) + 1
    lines += ["", "Killed by: " + (", ".join(f"{k} {v}" for k, v in sorted(killed_by.items())) or "none") + "."]
    return "\n".join(lines) + "\n"


def report_csv(report: dict) -> str:
    """One row a mutant: number, verdict, mode, what killed it, proof status, source lines, the mutation."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["number", "verdict", "mode", "killed_by", "proof", "sources", "description"])
    for m in report["mutants"]:
        what = m["killed_by"]
        killed = "" if what is None else f"{what['program']}: " + (
            what["reason"] if what["reason"] != "checks" else "+".join(what["checks"]))
        writer.writerow([m["number"], m["verdict"], m["mode"], killed, (m.get("proof") or {}).get("status", ""),
                         " ".join(m["sources"]), m["description"]])
    return out.getvalue()


def plot_report(report: dict):
    """A bar chart of the verdicts per source file of ``rtl/`` (a matplotlib figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = sorted({(m["sources"][0].rsplit(":", 1)[0] if m["sources"] else "(none)") for m in report["mutants"]})
    counts = {verdict: [sum(1 for m in report["mutants"] if m["verdict"] == verdict
                            and (m["sources"][0].rsplit(":", 1)[0] if m["sources"] else "(none)") == f)
                        for f in files] for verdict in VERDICTS}
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(files) + 1.5))
    left = np.zeros(len(files))
    for verdict, colour in zip(VERDICTS, ("tab:green", "tab:red", "tab:gray")):
        ax.barh(files, counts[verdict], left=left, color=colour, label=verdict)
        left += counts[verdict]
    ax.set_xlabel("mutants")
    score = report["score"]
    ax.set_title(f"{report['arch']}: {score['killed']} killed, {score['survived']} survived, "
                 f"{score['equivalent']} equivalent")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def write_report(report: dict, out) -> list:
    """Write the report's files into the folder ``out`` (claimed for ``mutate``); returns their paths."""
    import matplotlib.pyplot as plt

    from spikecore.atomic import atomic_save_figure, atomic_write_bytes, atomic_write_json
    from spikecore.accel.flows.outputs import output_dir

    out = Path(out)
    with output_dir(out, "mutate"):
        paths = [out / "mutation_report.json", out / "mutation_report.md", out / "mutants.csv",
                 out / "mutation_report.png"]
        atomic_write_json(paths[0], report)
        atomic_write_bytes(paths[1], report_markdown(report).encode())
        atomic_write_bytes(paths[2], report_csv(report).encode())
        fig = plot_report(report)
        atomic_save_figure(fig, paths[3])
        plt.close(fig)
    return paths
