"""Atomic file and folder writes: an interrupted run never leaves a half-written artifact.

A file is written to a temporary name beside its destination and renamed into place; a folder is built
beside its destination and swapped in with one atomic exchange (``renameat2(RENAME_EXCHANGE)``), so a kill at
any moment leaves the old result or the new one, never neither. Temporary names carry the writing process's
id (``.NAME.PID.XXXX.tmp``): a later write to the same folder removes those whose process has died.
Results get the permissions an ordinary ``open`` would give under the user's umask (``mkstemp`` alone would
make them private).
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from spikecore.errors import UserError

#: Temporary names made here: ``.`` + destination name + ``.`` + pid + ``.`` + random + ``.tmp``.
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def current_umask() -> int:
    """The process's umask (read without changing it where ``/proc`` allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` may still be running (another user's process, or a number that is no process id,
    counts as running: its files are left alone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def remove_orphans(folder: Path, name: str | None = None) -> list:
    """Remove the temporary files and folders of dead writers in ``folder`` (of destination ``name`` only,
    if given). Only names of this module's pattern are touched. Returns the removed paths."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match is None or (name is not None and match["name"] != name):
            continue
        if int(match["pid"]) == os.getpid() or process_alive(int(match["pid"])):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:
            pass
    return removed


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(path.parent, path.name)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temporary_prefix(path), suffix=".tmp")
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):  # name the destination, not the temporary file
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def atomic_write_json(path: Path, data) -> None:
    """Write JSON atomically; NaN and infinities are refused (they are not JSON)."""
    atomic_write_bytes(path, (json.dumps(data, indent=2, allow_nan=False) + "\n").encode())


#: PNG text chunk that marks a plot as written by this toolkit (so a rerun may replace it).
PNG_SOFTWARE = "spikecore"


def atomic_save_figure(fig, path: Path, dpi: int = 100) -> None:
    """Render a matplotlib figure to PNG and write it atomically; the figure is closed."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": PNG_SOFTWARE})
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def make_temporary_folder(path: Path) -> Path:
    """A new empty folder beside ``path`` to build its next content in (permissions under the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    restore_aside(path)
    remove_orphans(path.parent, path.name)
    folder = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temporary_prefix(path), suffix=".tmp"))
    os.chmod(folder, 0o777 & ~current_umask())
    return folder


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically; False where the system cannot (no ``renameat2`` or the file system)."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def install_folder(built: Path, path: Path) -> None:
    """Put the complete folder ``built`` (from :func:`make_temporary_folder`) at ``path``.

    A new ``path`` is one rename. An existing one is exchanged with ``built`` in one atomic step and the
    old content removed afterwards; where the file system cannot exchange, the old folder is renamed aside
    first (a kill between the two renames leaves it there under a temporary name, restored by
    :func:`restore_aside`)."""
    built, path = Path(built), Path(path)
    if not path.exists():
        os.rename(built, path)
        return
    if _exchange(built, path):
        shutil.rmtree(built, ignore_errors=True)
        return
    aside = path.with_name(f".{path.name}.{os.getpid()}.aside")
    os.rename(path, aside)
    os.rename(built, path)
    shutil.rmtree(aside, ignore_errors=True)


def restore_aside(path: Path) -> None:
    """Where an interrupted :func:`install_folder` left ``path`` missing and its old content aside, put
    the old content back."""
    path = Path(path)
    if path.exists():
        return
    for entry in sorted(path.parent.glob(f".{path.name}.*.aside")):
        os.rename(entry, path)
        return


@contextlib.contextmanager
def file_lock(path: Path, waiting_message: str | None = None):
    """Hold an exclusive lock on ``path`` (created if missing, never removed: a process waiting on a removed
    lock file would lock a file that a newcomer no longer sees) for a ``with`` block: concurrent processes
    building the same cache entry take turns, the later one finding the entry built. ``waiting_message`` is
    printed to stderr when another process holds the lock."""
    import fcntl
    import sys

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting_message:
                print(waiting_message, file=sys.stderr, flush=True)
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def check_writable(path: Path, flag: str = "--out") -> None:
    """Refuse up front (before any long work) an output whose folder cannot be created or written."""
    ancestor = Path(os.path.abspath(path)).parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"{flag} {path}: {ancestor} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: cannot write in {ancestor} (permission denied)")
