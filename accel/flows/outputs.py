"""Where commands may write: no command deletes or replaces a file or folder it did not create.

An output folder (``--out DIR`` of ``demo``, ``train``, ``rtl``, ``synth``, ``sweep``) is claimed with
:func:`claim_output_dir`: a new or empty folder is taken and marked with :data:`MARKER` (naming the
command), an earlier output of the same command is reused, anything else is refused. An output file (the
JSON reports of ``sim`` and ``verify``, their plots) is claimed with :func:`claim_output_file`: a new path is
taken, a report or plot this toolkit wrote earlier is replaced, anything else is refused. Program folders
guard themselves (:meth:`spikecore.accel.contract.program.Program.save`).
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

from spikecore.atomic import check_writable
from spikecore.errors import UserError

#: File that marks a folder as the output of a command.
MARKER = ".spikecore-output.json"
MARKER_FORMAT = "spikecore-output"

#: Files that mark a folder written before :data:`MARKER` existed as the output of a command.
_EARLIER_OUTPUTS = {
    "demo": ("summary.json", "sim_report.json", "program/manifest.json", "train/metrics.json"),
    "train": ("metrics.json",),
    "rtl": ("rtl.json",),
    "synth": ("synth_report.json",),
    "sweep": ("points.jsonl", "sweep.json"),
}

#: The ``format`` of each report, and the keys that mark one written before reports carried it.
REPORT_FORMATS = {
    "sim": ("spikecore-sim-report", ("arch_fingerprint", "cycles_mean")),
    "verify": ("spikecore-verify-report", ("bit_exact", "mismatches")),
    "demo": ("spikecore-demo-summary", ("bit_exact", "artifacts")),
    "sweep": ("spikecore-sweep-summary", ("pareto", "objectives")),
    "synth": ("spikecore-synth-report", ("lut", "fits")),
    "board": ("spikecore-board-report", ("bitstream", "meets_clock")),
}


def _marker_command(folder: Path):
    try:
        data = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("format") == MARKER_FORMAT and isinstance(data.get("command"), str):
        return data["command"]
    return None


def _listing(folder: Path) -> str:
    names = sorted(entry.name for entry in folder.iterdir())
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def check_output_dir(path, command: str) -> None:
    """Refuse ``path`` as the output folder of ``accel COMMAND`` now, as :func:`claim_output_dir` would, without
    creating or marking anything (for commands that work long before they write)."""
    path = Path(path)
    check_writable(path)
    if not (path.exists() or path.is_symlink()):
        return
    if not path.is_dir():
        raise UserError(f"--out {path}: exists and is not a folder; choose another --out")
    owner = _marker_command(path)
    if owner is not None and owner != command:
        raise UserError(f"--out {path}: holds the output of accel {owner}, not of accel {command}; "
                        f"choose another --out")
    if owner is None and any(path.iterdir()) and \
            not any((path / name).exists() for name in _EARLIER_OUTPUTS.get(command, ())):
        raise UserError(f"--out {path}: exists and is not an output of accel {command} (it holds "
                        f"{_listing(path)}); choose a new or empty folder")


def claim_output_dir(path, command: str) -> str:
    """Take ``path`` as the output folder of ``accel COMMAND``: created if needed and marked.

    Returns
    -------
    str
        ``"created"`` (a new folder), ``"marked"`` (an empty folder, or one written before folders were
        marked) or ``"reused"`` (an earlier output of ``command``): :func:`output_dir` undoes a
        ``"created"`` or ``"marked"`` claim if the command then fails before writing into the folder.

    Raises
    ------
    UserError
        ``path`` is a file, or a folder that is neither empty nor an earlier output of ``command``.
    """
    from spikecore.atomic import atomic_write_json

    path = Path(path)
    check_output_dir(path, command)
    if path.exists():
        if _marker_command(path) == command:
            return "reused"
        state = "marked"
    else:
        state = "created"
    atomic_write_json(path / MARKER, {"format": MARKER_FORMAT, "command": command})
    return state


@contextlib.contextmanager
def output_dir(path, command: str):
    """Claim ``path`` for ``accel COMMAND`` (:func:`claim_output_dir`) for the duration of a ``with`` block;
    if the block fails and the folder holds nothing but the mark, the claim is undone (the folder removed
    if this call created it): a failed command leaves nothing behind."""
    path = Path(path)
    claimed = claim_output_dir(path, command)
    try:
        yield path
    except BaseException:
        if claimed != "reused" and [entry.name for entry in path.iterdir()] == [MARKER]:
            (path / MARKER).unlink()
            if claimed == "created":
                path.rmdir()
        raise


def _png_software(path: Path):
    """The ``Software`` text of a PNG file, or None (not a PNG, or no such chunk)."""
    import struct

    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    offset = 8
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        body = data[offset + 8:offset + 8 + length]
        if kind == b"tEXt" and b"\x00" in body:
            key, _, text = body.partition(b"\x00")
            if key == b"Software":
                return text.decode("latin-1")
        if kind == b"IEND":
            break
        offset += 12 + length
    return None


def _is_report(path: Path, command: str) -> bool:
    form, earlier_keys = REPORT_FORMATS[command]
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    return data.get("format") == form or ("format" not in data and all(key in data for key in earlier_keys))


def _is_imported_checkpoint(path: Path) -> bool:
    """A checkpoint that ``accel import`` wrote (it records its NIR source)."""
    import pickle

    import torch

    from spikecore.models.train import CHECKPOINT_FORMAT

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError):
        return False
    return (isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT
            and isinstance(payload.get("source"), dict) and "nir" in payload["source"])


def _is_exported_nir(path: Path) -> bool:
    """A NIR file that ``accel export`` wrote (it carries this toolkit's graph metadata)."""
    try:
        import h5py

        with h5py.File(path, "r") as handle:
            return any("spikecore" in str(key) for key in handle["node"].get("metadata", {}).keys())
    except (OSError, KeyError, TypeError, ValueError, AttributeError):  # not HDF5, or not NIR's layout
        return False


def claim_output_file(path, command: str, plot: bool = False, flag: str = "--out") -> Path:
    """Take ``path`` as an output file of ``accel COMMAND`` (its JSON report, or with ``plot`` its PNG).

    Raises
    ------
    UserError
        ``path`` is a folder, or a file this toolkit did not write as such an output.
    """
    from spikecore.atomic import PNG_SOFTWARE

    path = Path(path)
    check_writable(path, flag)
    if not (path.exists() or path.is_symlink()):
        return path
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder; give a file name")
    if command == "import":
        ours = _is_imported_checkpoint(path)
    elif command == "export":
        ours = _is_exported_nir(path)
    elif plot:  # a plot of ours, or (written before plots were marked) the plot beside a report of ours
        software = _png_software(path)
        ours = software == PNG_SOFTWARE or (path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
                                            and _is_report(path.with_suffix(".json"), command))
    else:
        ours = _is_report(path, command)
    if not ours:
        what = {"import": "checkpoint", "export": "NIR file"}.get(command, "plot" if plot else "report")
        raise UserError(f"{flag} {path}: exists and is not a {what} of accel {command}; choose another name")
    return path


def cache_root() -> Path:
    """The toolkit's cache folder: ``$SPIKECORE_CACHE``, else ``$XDG_CACHE_HOME/spikecore`` (``~/.cache/spikecore``).

    RTL builds live under ``rtl/``, synthesis reports under ``synth/``, crash tracebacks under ``crashes/``.
    """
    import os

    if os.environ.get("SPIKECORE_CACHE"):
        return Path(os.environ["SPIKECORE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spikecore"


def toolkit_version() -> str:
    """The installed spikecore distribution's version."""
    from importlib import metadata

    try:
        return metadata.version("spikecore")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def content_digest(path) -> str:
    """SHA-256 of a file, or of a folder's files (names and contents, in name order)."""
    import hashlib

    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")) if path.is_dir() \
        else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def report_header(command: str, inputs: dict) -> dict:
    """The first keys of a report: its ``format``, the toolkit's version, the UTC time and the ``inputs``
    (``{role: path or None}``; None is the embedded default) with their content digests."""
    import datetime

    described = {}
    for role, path in inputs.items():
        described[role] = ({"path": None, "embedded_default": True} if path is None
                           else {"path": str(path), "sha256": content_digest(path)})
    return {"format": REPORT_FORMATS[command][0], "spikecore_version": toolkit_version(),
            "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "inputs": described}
