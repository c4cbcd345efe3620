"""Functional coverage of the RTL runs (``docs/coverage.md``): what the core did, counted in the simulator.

Which events exist is decided here, from one place each, so that a new state, transition, register or bank
cannot go uncounted:

- the controller's states and transitions: its own state machine (:func:`controller_schedule` elaborates a
  :class:`spikecore.rtl.controller.Controller` and reads ``fsm.encoding`` and the transitions its states
  declare through ``goto`` and ``holds``); a transition the core takes that no state declares is reported as
  *unexpected* (a state that changes ``m.next`` behind the controller's back);
- the construct kinds (``spikecore.accel.contract.layouts.HARDWARE_KIND`` and the membrane shortcut, ``carry``),
  per multi-value mode and schedule (``MULTIVALUE_MODES``, ``SCHEDULES`` of the configuration);
- saturation in each saturating register (:data:`SATURATING`: the accumulators, the membranes, and the
  clamps of the sum and gate units; together they are the ``saturations`` register);
- trace overflow;
- every member of every bank of the configuration, read and written;
- every control register and every memory of ``spikecore.rtl.hostmap.HOST_MAP``, written (the writable ones)
  or read (the others) by the host.

Counting per cycle from Python would dominate the run time, so the simulation top counts
(:func:`monitor_verilog`, simulation only, inside ``spikecore_sim``): when the simulator is given
``+spikecore_coverage=FILE``, every rising clock edge adds to a counter per state (cycles in it), per
transition (``from * 2**bits + to``, every pair, declared or not) and per event of :func:`events`; a rising
``coverage_dump`` register writes the non-zero counters to ``FILE``, a line ``NAME COUNT`` each (``state.S``,
``move.S.T``, ``event.K``). The cocotb harness pulses it after each inference and returns the difference
(``coverage`` of each result of :func:`spikecore.rtl.runner.run_inferences`). Without the plusarg the counters
stay idle, and the same build serves both.

:func:`collect` names those counters for a configuration, :func:`merge` adds collections of several runs,
:func:`report` computes the coverage with cocotb-coverage (one ``CoverPoint`` per coverpoint, sampled once
per bin that was hit) and lists the holes, and :func:`write_report` writes it as JSON and Markdown.
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from pathlib import Path

from spikecore.accel.contract.config import MULTIVALUE_MODES, SCHEDULES, ArchConfig
from spikecore.accel.contract.layouts import HARDWARE_KIND, KIND_NEURON, physical_memories

from .hostmap import HOST_MAP

#: ``+spikecore_coverage=FILE``: count, and write the counters to ``FILE`` on a rising ``coverage_dump``.
COVERAGE_PLUSARG = "spikecore_coverage"
#: The simulation top's register the harness pulses to write the counters (beside the backdoor's).
COVERAGE_REGISTERS = (("coverage_dump", 1),)
#: The report's format (its ``format`` field).
FORMAT = "spikecore-coverage-1"
#: The construct kinds: the hardware kinds of the pass descriptor (a readout is the last pass's neuron) and a
#: membrane shortcut (a pass that leaves its accumulators to the next stage: ``clear_acc = 0``).
CONSTRUCT_KINDS = (*(name for name in HARDWARE_KIND if name != "max"), "carry")
#: The registers that saturate: the accumulators (ACC) and, in the update, the membranes (neuron kinds) or
#: the clamp of the sum or gate unit (``docs/numerics.md``).
SATURATING = ("accumulator", "membrane", "sum", "gate")
#: The counters' width in the simulation top.
COUNTER_BITS = 64
#: The report files in a ``--coverage`` folder.
JSON_NAME, MARKDOWN_NAME, PLOT_NAME = "coverage.json", "coverage.md", "coverage.png"


@dataclass(frozen=True)
class Schedule:
    """The controller's state machine in a configuration.

    Attributes
    ----------
    encoding : dict
        ``{state name: value of the state register}``.
    register : str
        The state register's name in the netlist (``schedule_state``).
    state_bits : int
        Its width.
    transitions : tuple
        ``((from, to), ...)`` every transition the states declare, staying in a state included.
    """

    encoding: dict
    register: str
    state_bits: int
    transitions: tuple

    @property
    def state_names(self) -> dict:
        """``{value: state name}``."""
        return {code: name for name, code in self.encoding.items()}


@functools.lru_cache(maxsize=None)
def controller_schedule(arch: ArchConfig) -> Schedule:
    """The :class:`Schedule` of ``arch``'s controller: the controller elaborated with the core's memories and
    arithmetic units (:func:`spikecore.rtl.core.core_parts`; the states do not depend on the units' sizes, but
    the controller's datapath needs them)."""
    from amaranth.hdl import Fragment, Module

    from .core import core_parts

    m = Module()
    controller = core_parts(m, arch)[3]
    controller.elaborate(m)
    Fragment.get(m, None)  # elaborated as a design would be: no unused-elaboratable warnings for its parts
    fsm = controller.fsm
    return Schedule(dict(fsm.encoding), fsm.state.name, len(fsm.state), tuple(controller.transitions))


@dataclass(frozen=True)
class Event:
    """An event the simulation top counts: ``amount`` is added to its counter at every rising clock edge
    where ``condition`` holds (both Verilog expressions in the simulation top; ``coverage_state`` is the state in
    the cycle ending at that edge, ``coverage_previous`` the one before)."""

    coverpoint: str
    bin: str
    condition: str
    amount: str = "1"


def construct_coverpoint(multivalue: str, schedule: str) -> str:
    """The coverpoint of the construct kinds in one multi-value mode and schedule."""
    return f"constructs.{multivalue}.{schedule}"


def events(arch: ArchConfig, schedule: Schedule, scope: str = "core") -> list:
    """The :class:`Event` list of ``arch`` (its index is the counter's), over the core's instance ``scope`` in the
    simulation top (``spikecore.rtl.verilog.TOP_MODULE``; the bins do not depend on it)."""
    code = schedule.encoding
    kind = f"{scope}.\\descriptor.kind "
    update = f"coverage_state == {code['UWR']}"
    last_pass = f"{scope}.layer + 1 == {scope}.n_layers"
    constructs = construct_coverpoint(arch.multivalue, arch.schedule)
    found = []
    for name, value in HARDWARE_KIND.items():
        if name == "max" and not arch.max_pool:   # the kind of the option's comparators alone
            continue
        condition = f"{update} && {kind} == {value}"
        if value == KIND_NEURON:  # the readout is the last pass's neuron; a program ends with it
            condition += f" && {'' if name == 'readout' else '!'}({last_pass})"
        found.append(Event(constructs, name, condition))
    found.append(Event(constructs, "carry", f"{update} && !{scope}.\\descriptor.clear_acc "))
    # A saturation is counted in the cycle after the addition or update that made it (pending_saturations).
    pending = f"{scope}.pending_saturations"
    accumulator, *updated = SATURATING
    found.append(Event("saturation", accumulator, f"{pending} != 0 && coverage_previous == {code['ACC']}", pending))
    for register, value in zip(updated, (KIND_NEURON, HARDWARE_KIND["sum"], HARDWARE_KIND["gate"])):
        found.append(Event("saturation", register,
                           f"{pending} != 0 && coverage_previous == {code['UWR']} && {kind} == {value}", pending))
    found.append(Event("trace", "overflow",
                       f"coverage_state == {code['EMIT']} && {scope}.trace_count == {arch.memories.trace}"))
    for physical in physical_memories(arch):
        if physical.is_bank:
            for member in physical.members:
                for access in ("read", "write"):
                    found.append(Event("banks", f"{physical.name}.{member}.{access}", f"{scope}.{member}_{access}_en"))
    control = f"host_sel == {HOST_MAP.control_select}"
    for register in HOST_MAP.registers:
        address = f"{control} && host_addr == {register.address}"
        if register.writable:  # the core takes a write while idle only
            found.append(Event("host.registers", f"{register.name}.write", f"!busy && host_we && {address}"))
        else:
            found.append(Event("host.registers", f"{register.name}.read", f"!host_we && {address}"))
    for memory in HOST_MAP.memories:
        selected = f"!busy && host_sel == {memory.select}"
        if memory.writable:
            found.append(Event("host.memories", f"{memory.name}.write", f"host_we && {selected}"))
        else:
            found.append(Event("host.memories", f"{memory.name}.read", f"!host_we && {selected}"))
    return found


def monitor_verilog(arch: ArchConfig, scope: str) -> list:
    """Lines of the simulation top (inside its module) that count the coverage of the core instance ``scope``
    (see the module docstring)."""
    schedule = controller_schedule(arch)
    bits, states = schedule.state_bits, 1 << schedule.state_bits
    listed = events(arch, schedule, scope)
    counter = f"reg [{COUNTER_BITS - 1}:0]"
    lines = ["  // functional coverage (rtl/coverage.py): counted at every rising edge when the simulator is given",
             f"  // +{COVERAGE_PLUSARG}=FILE, written to FILE on a rising coverage_dump",
             "  reg coverage_on = 0;",
             "  reg [8 * 4096 - 1:0] coverage_path;",
             f"  {counter} coverage_states [0:{states - 1}];",
             f"  {counter} coverage_moves [0:{states * states - 1}];",
             f"  {counter} coverage_events [0:{len(listed) - 1}];",
             f"  reg [{bits - 1}:0] coverage_previous = 0;",
             f"  wire [{bits - 1}:0] coverage_state = {scope}.{schedule.register};",
             "  reg was_reset = 1;  // the previous edge reset the core: not a transition of the schedule",
             "  initial begin : start_coverage",
             "    integer k;",
             f"    for (k = 0; k < {states}; k = k + 1) coverage_states[k] = 0;",
             f"    for (k = 0; k < {states * states}; k = k + 1) coverage_moves[k] = 0;",
             f"    for (k = 0; k < {len(listed)}; k = k + 1) coverage_events[k] = 0;",
             f'    if ($value$plusargs("{COVERAGE_PLUSARG}=%s", coverage_path)) coverage_on = 1;',
             "  end",
             "  // the core's registers change only after this edge (non-blocking): these are the values of the cycle",
             "  always @(posedge clk) if (coverage_on) begin",
             "    coverage_states[coverage_state] = coverage_states[coverage_state] + 1;",
             "    if (!was_reset)",
             f"      coverage_moves[coverage_previous * {states} + coverage_state] = "
             f"coverage_moves[coverage_previous * {states} + coverage_state] + 1;"]
    for number, event in enumerate(listed):
        lines.append(f"    if ({event.condition})")
        lines.append(f"      coverage_events[{number}] = coverage_events[{number}] + {event.amount};")
    lines += ["    coverage_previous = coverage_state;",
              "    was_reset = rst;",
              "  end",
              "  always @(posedge coverage_dump) if (coverage_on) begin : write_coverage",
              "    integer k, file;",
              '    file = $fopen(coverage_path, "w");',
              f"    for (k = 0; k < {states}; k = k + 1)",
              '      if (coverage_states[k] != 0) $fwrite(file, "state.%0d %0d\\n", k, coverage_states[k]);',
              f"    for (k = 0; k < {states * states}; k = k + 1)",
              "      if (coverage_moves[k] != 0)",
              f'        $fwrite(file, "move.%0d.%0d %0d\\n", k / {states}, k % {states}, coverage_moves[k]);',
              f"    for (k = 0; k < {len(listed)}; k = k + 1)",
              '      if (coverage_events[k] != 0) $fwrite(file, "event.%0d %0d\\n", k, coverage_events[k]);',
              "    $fclose(file);",
              "  end"]
    return lines


# ---- from counters to a report ------------------------------------------------------------------------------
def defined_bins(arch: ArchConfig, schedule: Schedule) -> dict:
    """``{coverpoint: [bin, ...]}``: every bin of a run on ``arch``."""
    bins = {"controller.states": list(schedule.encoding),
            "controller.transitions": [f"{a} -> {b}" for a, b in schedule.transitions]}
    for event in events(arch, schedule):
        bins.setdefault(event.coverpoint, []).append(event.bin)
    return bins


def collect(arch: ArchConfig, counters: list) -> dict:
    """Name the simulation top's counters of runs on ``arch`` (``counters``: the ``coverage`` of each result of
    :func:`spikecore.rtl.runner.run_inferences`, ``{"state.S" | "move.S.T" | "event.K": count}``).

    Returns
    -------
    dict
        ``{"runs": [{"arch", "fingerprint", "multivalue", "schedule", "inferences"}], "coverpoints": {coverpoint:
        {bin: hits}} (every bin of the configuration, hit or not), "unexpected": [what the core did that no bin
        describes]}``: a *collection*, for :func:`merge` and :func:`report`.
    """
    schedule = controller_schedule(arch)
    names, declared = schedule.state_names, set(schedule.transitions)
    listed = events(arch, schedule)
    coverpoints = {point: dict.fromkeys(bins, 0) for point, bins in defined_bins(arch, schedule).items()}
    unexpected = set()
    for inference in counters:
        for key, count in inference.items():
            kind, *codes = key.split(".")
            codes = [int(code) for code in codes]
            if kind != "event" and any(code not in names for code in codes):
                unexpected.add(f"a value of the state register that is no state ({key})")
            elif kind == "state":
                coverpoints["controller.states"][names[codes[0]]] += count
            elif kind == "move":
                move = (names[codes[0]], names[codes[1]])
                if move in declared:
                    coverpoints["controller.transitions"][f"{move[0]} -> {move[1]}"] += count
                else:
                    unexpected.add(f"transition {move[0]} -> {move[1]}, which no state declares")
            else:
                event = listed[codes[0]]
                coverpoints[event.coverpoint][event.bin] += count
    run = {"arch": arch.name, "fingerprint": arch.fingerprint(), "multivalue": arch.multivalue,
           "schedule": arch.schedule, "inferences": len(counters)}
    return {"runs": [run], "coverpoints": coverpoints, "unexpected": sorted(unexpected)}


def merge(collections) -> dict:
    """One collection of several (:func:`collect`): the runs listed, the hits of a bin added, every bin kept."""
    merged = {"runs": [], "coverpoints": {}, "unexpected": set()}
    for collection in collections:
        merged["runs"] += collection["runs"]
        merged["unexpected"].update(collection["unexpected"])
        for point, bins in collection["coverpoints"].items():
            target = merged["coverpoints"].setdefault(point, {})
            for name, hits in bins.items():
                target[name] = target.get(name, 0) + hits
    merged["unexpected"] = sorted(merged["unexpected"])
    return merged


_REPORTS = itertools.count()


def report(collection: dict, every_mode: bool = False) -> dict:
    """The coverage report of a collection (:func:`collect`, :func:`merge`).

    Parameters
    ----------
    collection : dict
    every_mode : bool
        Also require the construct kinds in every multi-value mode and schedule, whether a run used it or not
        (the test suite's goal); otherwise only those of the runs' configurations are bins.

    Returns
    -------
    dict
        ``{"format", "runs", "coverpoints": {name: {"bins": {bin: hits}, "covered", "size", "percent"}},
        "covered", "size", "percent", "holes": ["coverpoint: bin", ...], "unexpected": [...], "summary": str}``.
        A bin is covered when hit at least once; the coverage is computed by cocotb-coverage.
    """
    from cocotb_coverage.coverage import CoverPoint, coverage_db

    coverpoints = {point: dict(bins) for point, bins in collection["coverpoints"].items()}
    if every_mode:
        for multivalue, schedule in itertools.product(MULTIVALUE_MODES, SCHEDULES):
            bins = coverpoints.setdefault(construct_coverpoint(multivalue, schedule), {})
            for kind in CONSTRUCT_KINDS:
                bins.setdefault(kind, 0)
    # cocotb-coverage's database is one per process: each report has a root of its own, removed afterwards
    root = f"spikecore_coverage_{next(_REPORTS)}"
    try:
        for point, bins in coverpoints.items():
            sample = CoverPoint(f"{root}.{point}", bins=list(bins))(lambda bin: None)
            for name, hits in bins.items():
                if hits > 0:
                    sample(name)
        points = {}
        for point, bins in coverpoints.items():
            item = coverage_db[f"{root}.{point}"]
            points[point] = {"bins": bins, "covered": item.coverage, "size": item.size,
                             "percent": round(item.cover_percentage, 2)}
            holes = [f"{point}: {name}" for name, samples in item.detailed_coverage.items() if samples < 1]
            points[point]["holes"] = holes
        covered, size = coverage_db[root].coverage, coverage_db[root].size
    finally:
        for key in [key for key in coverage_db if key == root or key.startswith(f"{root}.")]:
            del coverage_db[key]
    holes = [hole for point in points.values() for hole in point.pop("holes")]
    percent = round(100.0 * covered / size, 2) if size else 100.0
    summary = (f"functional coverage {percent}% ({covered} of {size} bins), {len(holes)} hole"
               f"{'' if len(holes) == 1 else 's'}")
    if collection["unexpected"]:
        summary += f", {len(collection['unexpected'])} unexpected"
    return {"format": FORMAT, "runs": collection["runs"], "coverpoints": points, "covered": covered, "size": size,
            "percent": percent, "holes": holes, "unexpected": list(collection["unexpected"]), "summary": summary}


def markdown(found: dict) -> str:
    """A readable summary of a :func:`report`: the runs, the holes, then every coverpoint's bins and hits."""
    lines = ["# Functional coverage of the RTL runs", "", found["summary"] + ".", "",
             "| configuration | multi-value | schedule | inferences |", "|---|---|---|--:|"]
    lines += [f"| {run['arch']} | {run['multivalue']} | {run['schedule']} | {run['inferences']} |"
              for run in found["runs"]]
    lines += ["", "## Holes", ""] + ([f"- {hole}" for hole in found["holes"]] or ["None."])
    if found["unexpected"]:
        lines += ["", "## Unexpected", ""] + [f"- {item}" for item in found["unexpected"]]
    lines += ["", "## Coverpoints", ""]
    for point, described in found["coverpoints"].items():
        lines += [f"### {point}: {described['covered']} of {described['size']} bins", "", "| bin | hits |", "|---|--:|"]
        lines += [f"| {name} | {hits} |" for name, hits in described["bins"].items()] + [""]
    return "\n".join(lines)


def plot(found: dict):
    """A bar per coverpoint of a :func:`report`: its bins covered (green) and its holes (red), each bar labelled
    with its share; a matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(found["coverpoints"])
    covered = [found["coverpoints"][name]["covered"] for name in names]
    holes = [found["coverpoints"][name]["size"] - hit for name, hit in zip(names, covered)]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(names) + 1.5))
    ax.barh(names, covered, color="tab:green", label="covered")
    ax.barh(names, holes, left=covered, color="tab:red", label="holes")
    for row, name in enumerate(names):
        ax.annotate(f"{found['coverpoints'][name]['percent']:g}%", (covered[row] + holes[row], row),
                    xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.15 * max([c + h for c, h in zip(covered, holes)] + [1]))   # room for the labels
    ax.set_xlabel("bins")
    ax.set_title(found["summary"])
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.5 / (0.4 * len(names) + 1.5) - 0.12), ncol=2)
    fig.tight_layout()
    return fig


def report_paths(destination) -> tuple:
    """``(JSON path, Markdown path, PNG path)`` of ``--coverage destination``: a ``.json`` file and the ``.md`` and
    ``.png`` beside it, or :data:`JSON_NAME`, :data:`MARKDOWN_NAME` and :data:`PLOT_NAME` in a folder."""
    destination = Path(destination)
    if destination.suffix == ".json":
        return destination, destination.with_suffix(".md"), destination.with_suffix(".png")
    return destination / JSON_NAME, destination / MARKDOWN_NAME, destination / PLOT_NAME


def check_destination(destination) -> None:
    """Refuse up front a ``--coverage`` destination that cannot receive the report.

    Raises
    ------
    spikecore.errors.UserError
        If it names an existing file that is not ``.json``, a ``.json`` that is a folder, or a place that
        cannot be written.
    """
    from spikecore.atomic import check_writable
    from spikecore.errors import UserError

    destination = Path(destination)
    json_path = report_paths(destination)[0]
    if destination.suffix != ".json" and destination.exists() and not destination.is_dir():
        raise UserError(f"--coverage {destination}: exists and is not a folder; give a folder or a .json file")
    if json_path.is_dir():
        raise UserError(f"--coverage {destination}: {json_path} is a folder; give a folder or a .json file")
    check_writable(json_path, "--coverage")


def write_report(found: dict, destination) -> tuple:
    """Write a :func:`report` as JSON, Markdown and a PNG plot (:func:`report_paths`, :func:`plot`), each
    atomically; returns the three paths."""
    import io

    import matplotlib.pyplot as plt

    from spikecore.atomic import atomic_write_bytes, atomic_write_json

    json_path, markdown_path, png_path = report_paths(destination)
    figure = plot(found)
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=100)
    plt.close(figure)
    atomic_write_json(json_path, found)
    atomic_write_bytes(markdown_path, markdown(found).encode())
    atomic_write_bytes(png_path, image.getvalue())
    return json_path, markdown_path, png_path
