"""The Python API: the command line's steps as functions, for notebooks and scripts (``docs/api.md``).

    import spikecore

    arch = spikecore.load_arch()                          # the embedded default (iCE40 UP5K, 24 MHz)
    net = spikecore.load_network("checkpoint.pt")         # or a NIR file: load_network("model.nir")
    program = spikecore.compile(net, arch)
    images, labels = spikecore.load_images(samples=20)    # the digits test set
    report = spikecore.simulate(program, arch, images, labels)
    check = spikecore.verify(program, arch, images[:2], network=net, labels=labels[:2])
    assert check["bit_exact"] and check["cycle_exact"]

Every ``accel`` command that computes something calls these functions and adds only argument parsing, the
report header and the files; the reports returned here are the commands' JSON reports without the header
(``format``, version, time, inputs). Bad input raises :class:`spikecore.errors.UserError` with the one line the
command would print.
"""
from __future__ import annotations

import json
from pathlib import Path

from spikecore.errors import UserError

__all__ = ["load_arch", "load_network", "compile", "load_program", "load_images", "simulate", "verify",
           "read_report"]


def load_arch(path=None):
    """The architecture configuration of the YAML file ``path`` (checked key by key), or the embedded default.

    Returns
    -------
    spikecore.accel.contract.config.ArchConfig
    """
    from spikecore.accel.contract.config import load_arch as load

    return load(path)


def load_network(path, *, arch=None, stream_mode=None, dt=None, timesteps=None, input_scale=None):
    """A trained network: a checkpoint written by ``accel train``/``accel import`` (``.pt``) or a NIR file.

    Parameters
    ----------
    path : str or Path
        ``*.nir`` is read as NIR (``docs/nir.md``), anything else as a checkpoint (loaded with
        ``weights_only=True``).
    arch : ArchConfig, optional
        For NIR files: the configuration whose quantization a file written by ``accel export`` is checked
        against (default: the embedded default).
    stream_mode : {"dual", "spike", "accumulation"}, optional
        The inference mode of a dual-stream network.
    dt, timesteps, input_scale : optional
        For NIR files: override what the file records (``accel import``'s options).

    Returns
    -------
    torch.nn.Module
        In evaluation mode, ready for :func:`compile`.
    """
    from spikecore.accel.contract.checkpoint import load_checkpoint, set_stream_mode

    path = Path(path)
    if path.suffix == ".nir":
        from spikecore.accel.flows.nir_io import network_from_nir

        net, _, _ = network_from_nir(path, arch or load_arch(), dt, timesteps, input_scale)
    else:
        if (dt, timesteps, input_scale) != (None, None, None):
            raise UserError(f"{path}: dt, timesteps and input_scale are for NIR files; a checkpoint records them")
        net, _ = load_checkpoint(path)
    return set_stream_mode(net, stream_mode, path)


def compile(network, arch, *, source=None):  # noqa: A001 (shadows the builtin in this module only)
    """The fixed-point Program of ``network`` for ``arch`` (``accel compile``): lowering, quantization,
    allocation and memory tables (the passes of :data:`spikecore.accel.contract.compiler.PASSES`).

    ``source`` (a path or name) is recorded in the Program's manifest.
    """
    from spikecore.accel.contract.compiler import compile_network

    return compile_network(network, arch, meta=None if source is None else {"checkpoint": str(source)})


def load_program(path, arch):
    """A Program folder written by ``accel compile`` (or :meth:`Program.save`), checked against ``arch``."""
    from spikecore.accel.contract.compiler import validate_program
    from spikecore.accel.contract.program import Program

    program = Program.load(path)
    validate_program(program, arch, str(path))
    return program


def load_images(samples=None, dataset="digits", root=None, program=None):
    """``(images, labels)`` of a test set, integer images as the core takes them, its first ``samples`` when given.

    ``dataset``: ``digits`` (int64 ``[N, 1, 8, 8]``, pixels 0..16), ``cifar10`` (the test batch under ``root``,
    pixels 0..255), ``dvs-gesture`` or ``cifar10-dvs`` (the recordings under ``root`` binned as ``program``,
    compiled from a network trained on them, records: int64 count frames ``[N, T, 2, H, W]``) or a folder of
    ``.npz`` samples (``accel sim --dataset``).
    """
    from spikecore.accel.flows.simulation import test_images

    return test_images(dataset, samples, root, program)


def simulate(program, arch, images, labels=None, *, engine="auto", energy=None, progress=False,
             results=False):
    """Run ``images`` on the cycle-level simulator: the ``accel sim`` report (``docs/core.md``).

    Parameters
    ----------
    engine : {"auto", "dense", "tables"}
    energy : str or Path, optional
        An energy table (``docs/core.md``); default: the shipped one.
    labels : tensor [N], optional
        Without labels the report's ``accuracy`` is ``None``.
    results : bool
        Also return the per-image :class:`spikecore.sim.engine.SimResult` list (with every event).

    Returns
    -------
    dict, or (dict, list) with ``results``
    """
    from spikecore.accel.flows.simulation import sim_report, simulate_images
    from spikecore.sim.cost import load_energy_model

    model = load_energy_model(energy)
    runs = simulate_images(program, arch, images, progress, keep_events=results, engine=engine)
    report = sim_report(program, arch, runs, labels, images, model)
    return (report, runs) if results else report


def verify(program, arch, images, *, simulator="verilator", network=None, labels=None, waves=None,
           flip_bits=(), progress=False, coverage=None):
    """Golden model == simulator == RTL on ``images``: the ``accel verify`` report.

    ``report["bit_exact"]`` and ``report["cycle_exact"]`` are the verdicts; ``report["mismatches"]`` and
    ``report["first_difference"]`` say where they differ. With ``network`` and ``labels`` the report adds the
    float vs integer accuracy gap; ``waves`` is a folder for one FST waveform per image (``docs/waves.md``);
    ``flip_bits`` are ``(memory, word, bit)`` faults injected into the RTL's memories; ``coverage`` a folder
    (or a ``.json`` file) for the RTL's functional coverage report (``docs/coverage.md``), summarised in
    ``report["coverage"]``.
    """
    from spikecore.accel.flows.verify import verify_on_rtl

    if simulator not in ("icarus", "verilator"):
        raise UserError(f"simulator must be 'icarus' or 'verilator', got {simulator!r}")
    if waves is not None:
        from spikecore.rtl.runner import prepare_waves_folder

        prepare_waves_folder(waves)
    if coverage is not None:
        from spikecore.rtl.coverage import check_destination

        check_destination(coverage)  # before minutes of work
    return verify_on_rtl(program, arch, images, simulator, network, labels, tuple(flip_bits), progress, waves,
                         coverage)


def read_report(path) -> dict:
    """A JSON report written by a command (``sim``, ``verify``, ``demo``, ``synth``, ``board``, ``sweep``), checked to be one.

    Raises :class:`UserError` when the file is not a report of this toolkit.
    """
    from spikecore.accel.flows.outputs import REPORT_FORMATS

    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable JSON report ({exc})") from None
    formats = {fmt for fmt, _ in REPORT_FORMATS.values()}
    if not isinstance(report, dict) or report.get("format") not in formats:
        raise UserError(f"{path}: not a spikecore report (its 'format' is none of {', '.join(sorted(formats))})")
    return report
