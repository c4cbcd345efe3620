"""Real dataset loaders: CIFAR-10 (python pickle batches), DVS128 Gesture and CIFAR10-DVS (original event files).

Everything reads local files only (nothing is downloaded) and needs no torchvision:

* CIFAR-10 from the official ``cifar-10-batches-py`` folder. The pickle files are untrusted input and go through a
  restricted unpickler that admits numpy's array reconstruction and nothing else. The paper's augmentation
  (random horizontal flip, random 32x32 crop of the image zero-padded by 4, normalisation with the CIFAR mean/std)
  is written in torch (:func:`random_crop_flip`, :func:`normalize_cifar10`).
* DVS128 Gesture from the original AEDAT 3.1 recordings ``user*_*.aedat`` with their ``*_labels.csv``, binned into
  ``[T, 2, 32, 32]`` count frames (30 ms slices, T = 40, 4x4 spatial pooling of the 128x128 sensor).
* CIFAR10-DVS from the original AEDAT 2.0 recordings in one folder per class, binned into ``[T, 2, 42, 42]`` count
  frames (10 ms slices, T = 10, spatial factor 3.04).

The event preprocessing follows the MLF-DSResNet authors' scripts (``DVS_Gesture_preprocess.py``,
``DVS_CIFAR10_preprocess.py``); docs/datasets.md lists where and why it differs. The AEDAT headers (and the AEDAT 2.0
event words) are read with ``tonic.io``; ``tonic`` is imported only when an event file is read.

Missing or malformed data raise :class:`DatasetNotFoundError` (a ``FileNotFoundError``) or
:class:`DatasetFormatError` (a ``ValueError``) with a one-line message naming the file and what to put where.
"""
from __future__ import annotations

import csv
import hashlib
import io
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from spikecore.atomic import atomic_write_bytes, file_lock

__all__ = [
    "DatasetNotFoundError", "DatasetFormatError",
    "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR10_CLASSES", "restricted_pickle_load", "load_cifar10",
    "load_cifar10_split", "random_crop_flip", "normalize_cifar10", "CIFAR10",
    "read_aedat_header", "read_aedat2_words", "read_aedat31_polarity", "read_gesture_events",
    "read_gesture_labels", "read_cifar10dvs_events", "events_to_frames",
    "GESTURE_CLASSES", "GESTURE_TRAIN_USERS", "GESTURE_TEST_USERS", "DVSGesture",
    "CIFAR10DVS_CLASSES", "CIFAR10DVS",
]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset directory or file is missing; the message says which files to put where."""


class DatasetFormatError(ValueError):
    """A dataset file exists but is not in the expected format; the message names the file."""


# ----------------------------------------------------------------------------------------------------------------
# CIFAR-10
# ----------------------------------------------------------------------------------------------------------------

#: Per-channel mean and std used by the MLF-DSResNet authors (``train_for_cifar10.py``).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILES = ("test_batch",)
CIFAR10_META_FILE = "batches.meta"
_CIFAR10_HINT = ("put data_batch_1 .. data_batch_5, test_batch and batches.meta (the folder cifar-10-batches-py "
                 "from cifar-10-python.tar.gz) in")


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits exactly numpy's array reconstruction globals (and ``_codecs.encode``, which Python 3 pickles of
    ``bytes`` at protocol <= 2 use); any other global is refused."""

    def __init__(self, file, path):
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module, name):
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _numpy_reconstruct()
        if module == "numpy" and name == "ndarray":
            return np.ndarray
        if module == "numpy" and name == "dtype":
            return np.dtype
        if module == "_codecs" and name == "encode":
            import _codecs
            return _codecs.encode
        raise DatasetFormatError(f"{self._path}: refusing to unpickle global '{module}.{name}' (only numpy arrays, "
                                 f"dicts, lists, bytes, ints and strings are allowed in a CIFAR-10 batch)")


def restricted_pickle_load(path):
    """Unpickle ``path`` admitting only dicts/lists/bytes/ints/strings and numpy arrays (no other globals).

    Python 2 pickles (the official CIFAR-10 files) are read with ``encoding='bytes'``, so their keys are bytes.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return _RestrictedUnpickler(fh, path).load()
    except DatasetFormatError:
        raise
    except FileNotFoundError as exc:
        raise DatasetNotFoundError(f"{path}: file not found") from exc
    except Exception as exc:  # truncated or garbage file: one clear line, not a traceback from pickle internals
        raise DatasetFormatError(f"{path}: not a readable CIFAR-10 pickle batch ({type(exc).__name__}: {exc})") from exc


def _cifar10_dir(root) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"CIFAR-10 directory '{root}' does not exist: {_CIFAR10_HINT} '{root}'")
    nested = root / "cifar-10-batches-py"
    if not (root / "test_batch").exists() and nested.is_dir():
        return nested
    return root


def _read_cifar10_batch(path: Path):
    batch = restricted_pickle_load(path)
    if not isinstance(batch, dict):
        raise DatasetFormatError(f"{path}: expected a pickled dict with b'data' and b'labels', got "
                                 f"{type(batch).__name__}")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise DatasetFormatError(f"{path}: missing key b'data' or b'labels' (keys: {sorted(map(str, batch))})")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {list(data.shape)}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetFormatError(f"{path}: b'data' must be a uint8 array [N, 3072], got {desc}")
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != data.shape[0] or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetFormatError(f"{path}: b'labels' must be {data.shape[0]} integers, got {labels.dtype} "
                                 f"{list(labels.shape)}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DatasetFormatError(f"{path}: labels must lie in 0..9, found {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar10(root, train: bool = True):
    """Read the CIFAR-10 training (``data_batch_1..5``) or test (``test_batch``) batches from ``root``.

    ``root`` is the ``cifar-10-batches-py`` folder or its parent. Returns ``(images, labels)``: uint8
    ``[N, 3, 32, 32]`` (RGB, 0..255) and int64 ``[N]``.
    """
    folder = _cifar10_dir(root)
    names = CIFAR10_TRAIN_FILES if train else CIFAR10_TEST_FILES
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DatasetNotFoundError(f"CIFAR-10: missing {', '.join(missing)} in '{folder}': {_CIFAR10_HINT} "
                                   f"'{folder}'")
    parts = [_read_cifar10_batch(folder / n) for n in names]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if images.shape[0] == 0:
        raise DatasetFormatError(f"CIFAR-10: the batches in '{folder}' hold no images")
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels)


def load_cifar10_split(root):
    """``(x_train, y_train, x_test, y_test)`` as :func:`load_cifar10` returns them (like ``load_digits_split``)."""
    x_tr, y_tr = load_cifar10(root, train=True)
    x_te, y_te = load_cifar10(root, train=False)
    return x_tr, y_tr, x_te, y_te


def _cifar10_class_names(folder: Path):
    meta = folder / CIFAR10_META_FILE
    if not meta.is_file():
        return CIFAR10_CLASSES
    obj = restricted_pickle_load(meta)
    names = obj.get(b"label_names", obj.get("label_names")) if isinstance(obj, dict) else None
    if not isinstance(names, (list, tuple)) or len(names) != 10:
        raise DatasetFormatError(f"{meta}: expected b'label_names' with 10 class names")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def random_crop_flip(images: torch.Tensor, padding: int = 4, flip: bool = True,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Random horizontal flip (p = 0.5) and random crop back to the input size of the image zero-padded by
    ``padding`` on every side; independently per image. ``images`` is ``[C, H, W]`` or ``[N, C, H, W]`` of any
    dtype (apply it to raw pixels, before normalisation, so the padding is black as in torchvision)."""
    single = images.dim() == 3
    x = images.unsqueeze(0) if single else images
    if x.dim() != 4:
        raise ValueError(f"random_crop_flip expects [C, H, W] or [N, C, H, W], got {list(images.shape)}")
    n, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding)) if padding else x
    oy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    ox = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    rows = oy[:, None] + torch.arange(h)[None, :]                        # [N, H]
    cols = ox[:, None] + torch.arange(w)[None, :]                        # [N, W]
    if flip:
        mirrored = torch.rand(n, generator=generator) < 0.5
        cols = torch.where(mirrored[:, None], cols.flip(1), cols)
    out = padded[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
    return out[0] if single else out


def normalize_cifar10(images: torch.Tensor, mean=CIFAR10_MEAN, std=CIFAR10_STD) -> torch.Tensor:
    """uint8 pixels ``[..., 3, H, W]`` -> float32 ``(pixels / 255 - mean) / std`` per channel."""
    x = images.to(torch.float32) / 255.0
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (x - m) / s


class CIFAR10(torch.utils.data.Dataset):
    """CIFAR-10 from local pickle batches; items are ``(float32 [3, 32, 32], int label)``.

    ``augment`` (default: ``train``) applies :func:`random_crop_flip` per item; ``normalize`` applies
    :func:`normalize_cifar10` (otherwise pixels / 255). ``generator`` makes the augmentation reproducible;
    by default torch's global generator is used (DataLoader seeds it per worker).
    """

    def __init__(self, root, train: bool = True, augment: bool | None = None, normalize: bool = True,
                 generator: torch.Generator | None = None):
        self.images, self.labels = load_cifar10(root, train=train)
        self.classes = _cifar10_class_names(_cifar10_dir(root))
        self.train = train
        self.augment = train if augment is None else augment
        self.normalize = normalize
        self.generator = generator

    def __len__(self):
        return self.images.shape[0]

    def __getitem__(self, index):
        img = self.images[index]
        if self.augment:
            img = random_crop_flip(img, generator=self.generator)
        x = normalize_cifar10(img) if self.normalize else img.to(torch.float32) / 255.0
        return x, int(self.labels[index])


# ----------------------------------------------------------------------------------------------------------------
# AEDAT event files
# ----------------------------------------------------------------------------------------------------------------

_TONIC_HINT = "install the events extra: pip install -e \".[events]\" (docs/datasets.md)"


def _tonic_io():
    try:
        import tonic.io as tio
    except ImportError as exc:
        raise ImportError(f"reading event files needs tonic ({_TONIC_HINT}): {exc}") from exc
    return tio


def read_aedat_header(path):
    """``(version, data_start)`` of an AEDAT file: the version from its ``#!AER-DAT<v>`` line and the byte offset
    where the binary data begins (after the ``#`` header lines), read with ``tonic.io``."""
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: file not found")
    with open(path, "rb") as fh:
        first = fh.readline()
    if not first.startswith(b"#!AER-DAT"):
        raise DatasetFormatError(f"{path}: not an AEDAT file (it must begin with '#!AER-DAT<version>')")
    try:
        version, data_start, _ = _tonic_io().read_aedat_header_from_file(str(path))
    except ImportError:
        raise
    except Exception as exc:
        raise DatasetFormatError(f"{path}: unreadable AEDAT header ({type(exc).__name__}: {exc})") from exc
    return float(version), int(data_start)


def read_aedat2_words(path):
    """The raw ``(address, timestamp)`` uint32 words of an AEDAT 2.0 file (big-endian pairs), via ``tonic.io``."""
    path = Path(path)
    version, start = read_aedat_header(path)
    if not 2 <= version < 3:
        raise DatasetFormatError(f"{path}: expected AEDAT 2.0, found AEDAT {version}")
    if (path.stat().st_size - start) % 8:
        raise DatasetFormatError(f"{path}: truncated AEDAT 2.0 data ({path.stat().st_size - start} bytes is not "
                                 f"a multiple of 8)")
    ev = _tonic_io().get_aer_events_from_file(str(path), version, start)
    return ev["address"].astype(np.uint32), ev["timeStamp"].astype(np.uint32)


_PACKET_HEADER = np.dtype([("type", "<u2"), ("source", "<u2"), ("size", "<u4"), ("ts_offset", "<u4"),
                           ("ts_overflow", "<u4"), ("capacity", "<u4"), ("number", "<u4"), ("valid", "<u4")])
_POLARITY_EVENT = 1


def read_aedat31_polarity(path):
    """The polarity events of an AEDAT 3.1 file as raw uint32 ``(data, timestamp)`` words, timestamps widened to
    int64 with the packet's ``eventTSOverflow``. Packets of other event types are skipped (``tonic.io`` reads every
    packet as polarity events, so the packets are walked here; the header is read with ``tonic.io``)."""
    path = Path(path)
    version, start = read_aedat_header(path)
    if not 3 <= version < 4:
        raise DatasetFormatError(f"{path}: expected AEDAT 3.1, found AEDAT {version}")
    raw = path.read_bytes()
    pos, datas, times = start, [], []
    while pos < len(raw):
        if pos + 28 > len(raw):
            raise DatasetFormatError(f"{path}: truncated packet header at byte {pos}")
        hdr = np.frombuffer(raw, _PACKET_HEADER, count=1, offset=pos)[0]
        size, capacity, number = int(hdr["size"]), int(hdr["capacity"]), int(hdr["number"])
        body = max(capacity, number) * size
        if size == 0 or pos + 28 + body > len(raw):
            raise DatasetFormatError(f"{path}: bad or truncated packet at byte {pos} (eventSize {size}, "
                                     f"eventNumber {number}, {len(raw) - pos - 28} bytes left)")
        if int(hdr["type"]) == _POLARITY_EVENT:
            if size != 8:
                raise DatasetFormatError(f"{path}: polarity packet at byte {pos} has eventSize {size}, expected 8")
            words = np.frombuffer(raw, "<u4", count=2 * number, offset=pos + 28).reshape(-1, 2)
            datas.append(words[:, 0])
            times.append(words[:, 1].astype(np.int64) + (int(hdr["ts_overflow"]) << 31))
        pos += 28 + body
    if not datas:
        return np.zeros(0, np.uint32), np.zeros(0, np.int64)
    return np.concatenate(datas), np.concatenate(times)


def read_gesture_events(path):
    """Events ``(t [us, int64], x, y, p)`` of a DVS128 Gesture AEDAT 3.1 file (cAER polarity layout: x = bits
    17..31, y = bits 2..16, polarity = bit 1; the validity bit is ignored, as in the authors' script)."""
    data, t = read_aedat31_polarity(path)
    x = ((data >> 17) & 0x1FFF).astype(np.int64)
    y = ((data >> 2) & 0x1FFF).astype(np.int64)
    p = ((data >> 1) & 1).astype(np.int64)
    return t, x, y, p


def read_gesture_labels(path):
    """The ``*_labels.csv`` of a DVS128 Gesture recording: int64 ``[n, 3]`` rows ``(class 0..10, start_us,
    end_us)`` (the file's classes 1..11 shifted to 0-based)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: missing label file (each userNN_<light>.aedat needs its "
                                   f"userNN_<light>_labels.csv beside it)")
    rows = []
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or len(header) < 3 or not header[0].strip().lower().startswith("class"):
            raise DatasetFormatError(f"{path}: expected the header 'class,startTime_usec,endTime_usec'")
        for lineno, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            try:
                cls, t0, t1 = (int(v) for v in row[:3])
            except ValueError as exc:
                raise DatasetFormatError(f"{path}: line {lineno}: expected three integers, got {row}") from exc
            if not 1 <= cls <= len(GESTURE_CLASSES) or t1 <= t0:
                raise DatasetFormatError(f"{path}: line {lineno}: class must be 1..{len(GESTURE_CLASSES)} and "
                                         f"endTime > startTime, got {row}")
            rows.append((cls - 1, t0, t1))
    if not rows:
        raise DatasetFormatError(f"{path}: no gesture rows")
    return np.asarray(rows, dtype=np.int64)


def read_cifar10dvs_events(path):
    """Events ``(t [us, int64], row, col, p)`` of an original CIFAR10-DVS AEDAT 2.0 recording, decoded as the
    authors do: ``row = 127 - ((addr & 0xFE) >> 1)``, ``col = (addr & 0x7F00) >> 8``, ``p = addr & 1``."""
    addr, ts = read_aedat2_words(path)
    row = 127 - ((addr & 0xFE) >> 1).astype(np.int64)
    col = ((addr & 0x7F00) >> 8).astype(np.int64)
    p = (addr & 1).astype(np.int64)
    return ts.astype(np.int64), row, col, p


def events_to_frames(t, rows, cols, p, *, timesteps: int, dt_us: int, size, downsample,
                     t_start: int | None = None) -> torch.Tensor:
    """Bin events into float32 count frames ``[timesteps, 2, H, W]``.

    Event ``i`` with ``t_start <= t[i] < t_start + timesteps * dt_us`` adds 1 at
    ``[(t[i] - t_start) // dt_us, p[i], floor(rows[i] / downsample), floor(cols[i] / downsample)]``; later events are
    dropped. ``t_start`` defaults to the first event's time. A coordinate outside ``size`` after downsampling raises
    ``ValueError``.
    """
    h, w = (size, size) if isinstance(size, int) else size
    t = np.asarray(t, dtype=np.int64)
    frames = np.zeros((timesteps, 2, h, w), dtype=np.float32)
    if t.size == 0:
        return torch.from_numpy(frames)
    t0 = int(t[0]) if t_start is None else int(t_start)
    keep = (t >= t0) & (t < t0 + timesteps * dt_us)
    tb = (t[keep] - t0) // dt_us
    r = np.floor_divide(np.asarray(rows)[keep].astype(np.float64), downsample).astype(np.int64)
    c = np.floor_divide(np.asarray(cols)[keep].astype(np.float64), downsample).astype(np.int64)
    pol = np.asarray(p)[keep].astype(np.int64)
    bad = (r < 0) | (r >= h) | (c < 0) | (c >= w) | (pol < 0) | (pol > 1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"event (row {np.asarray(rows)[keep][i]}, col {np.asarray(cols)[keep][i]}, p {pol[i]}) "
                         f"falls outside a {h}x{w} frame with downsample {downsample}")
    flat = ((tb * 2 + pol) * h + r) * w + c
    frames.reshape(-1)[:] = np.bincount(flat, minlength=frames.size).astype(np.float32)
    return torch.from_numpy(frames)


# ----------------------------------------------------------------------------------------------------------------
# DVS128 Gesture
# ----------------------------------------------------------------------------------------------------------------

GESTURE_CLASSES = ("hand clapping", "right hand wave", "left hand wave", "right arm clockwise",
                   "right arm counter-clockwise", "left arm clockwise", "left arm counter-clockwise", "arm roll",
                   "air drums", "air guitar", "other gestures")
GESTURE_TRAIN_USERS = tuple(range(1, 24))   # the official split (trials_to_train.txt), as in the authors' script
GESTURE_TEST_USERS = tuple(range(24, 30))
_GESTURE_FILE = re.compile(r"^user(\d+)_(.+)\.aedat$")
_GESTURE_HINT = ("put the original DvsGesture recordings user01_fluorescent.aedat .. user29_*.aedat, each with its "
                 "*_labels.csv (folder DvsGesture of DvsGesture.tar.gz), in")


def _gesture_dir(root) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"DVS128 Gesture directory '{root}' does not exist: {_GESTURE_HINT} '{root}'")
    nested = root / "DvsGesture"
    if not any(root.glob("user*_*.aedat")) and nested.is_dir():
        return nested
    return root


class DVSGesture(torch.utils.data.Dataset):
    """DVS128 Gesture from the original AEDAT 3.1 files; items are ``(float32 [T, 2, S, S] counts, label 0..10)``.

    Every labelled gesture of the split's recordings is one sample: its events ``start <= t < end``, the window
    starting at the gesture's first event, ``timesteps`` slices of ``dt_ms`` ms, 128x128 pooled by
    ``128 // size`` (defaults: the authors' T = 40, 30 ms, 32x32). Training users 1..23, test users 24..29.
    All samples are binned when the dataset is built; ``cache_dir`` keeps them in a ``.npz`` for the next time.
    """

    sensor = 128

    def __init__(self, root, train: bool = True, timesteps: int = 40, dt_ms: float = 30, size: int = 32,
                 cache_dir=None):
        self.root = _gesture_dir(root)
        self.train, self.timesteps, self.dt_us, self.size = train, timesteps, int(round(dt_ms * 1000)), size
        if self.sensor % size:
            raise ValueError(f"DVSGesture size must divide 128, got {size}")
        self.downsample = self.sensor // size
        self.classes = GESTURE_CLASSES
        users = GESTURE_TRAIN_USERS if train else GESTURE_TEST_USERS
        files = []
        for f in sorted(self.root.glob("user*_*.aedat")):
            m = _GESTURE_FILE.match(f.name)
            if m and int(m.group(1)) in users:
                files.append(f)
        if not files:
            split = "training (users 01..23)" if train else "test (users 24..29)"
            raise DatasetNotFoundError(f"DVS128 Gesture: no {split} recordings user*_*.aedat in '{self.root}': "
                                       f"{_GESTURE_HINT} '{self.root}'")
        missing = [f.name[:-6] + "_labels.csv" for f in files if not (f.parent / (f.name[:-6] + "_labels.csv")).is_file()]
        if missing:
            raise DatasetNotFoundError(f"DVS128 Gesture: missing {', '.join(missing[:3])}"
                                       f"{' ...' if len(missing) > 3 else ''} in '{self.root}' (each "
                                       f"userNN_<light>.aedat needs its userNN_<light>_labels.csv beside it)")
        self.files = files
        if cache_dir is None:
            self._frames, self.labels, self.sources = self._build()
            return
        cache = Path(cache_dir) / f"dvsgesture_{'train' if train else 'test'}_{self._recordings_digest()}.npz"
        with file_lock(cache.with_suffix(".lock")):  # concurrent runs bin the recordings once
            cached = self._read_cache(cache)
            if cached is None:
                cached = self._build()
                buffer = io.BytesIO()
                np.savez(buffer, frames=cached[0], labels=cached[1], sources=cached[2])
                atomic_write_bytes(cache, buffer.getvalue())
        self._frames, self.labels, self.sources = cached

    def _recordings_digest(self) -> str:
        """Digest of what the binned samples depend on: the binning and every recording's name, size and
        modification time (an edited or replaced recording is binned again)."""
        digest = hashlib.sha256(f"{self.timesteps}/{self.dt_us}/{self.size}".encode())
        for f in self.files:
            labels = f.parent / (f.name[:-6] + "_labels.csv")
            for path in (f, labels):
                stat = path.stat()
                digest.update(f"{path.name}/{stat.st_size}/{stat.st_mtime_ns}".encode())
        return digest.hexdigest()[:16]

    def _read_cache(self, cache: Path):
        """The cached ``(frames, labels, sources)``, or None if the file is missing, unreadable or not of the
        expected shapes (then it is rebuilt)."""
        try:
            with np.load(cache, allow_pickle=False) as z:
                frames, labels, sources = z["frames"], z["labels"], z["sources"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        n = len(labels)
        expected = (n, self.timesteps, 2, self.size, self.size)
        if (frames.shape != expected or labels.shape != (n,) or sources.shape[:1] != (n,)
                or labels.dtype.kind not in "iu" or (n and not 0 <= labels.min() <= labels.max() < len(self.classes))
                or not np.isfinite(frames).all()):
            return None
        return frames, labels, sources

    def _build(self):
        frames, labels, sources = [], [], []
        for f in self.files:
            labels_csv = read_gesture_labels(f.parent / (f.name[:-6] + "_labels.csv"))
            t, x, y, p = read_gesture_events(f)
            order = np.argsort(t, kind="stable")
            t, x, y, p = t[order], x[order], y[order], p[order]
            for k, (cls, t0, t1) in enumerate(labels_csv):
                lo, hi = np.searchsorted(t, t0, "left"), np.searchsorted(t, t1, "left")
                if hi <= lo:
                    raise DatasetFormatError(f"{f}: gesture row {k + 1} ({t0}..{t1} us) holds no events")
                try:
                    fr = events_to_frames(t[lo:hi], y[lo:hi], x[lo:hi], p[lo:hi], timesteps=self.timesteps,
                                          dt_us=self.dt_us, size=self.size, downsample=self.downsample)
                except ValueError as exc:
                    raise DatasetFormatError(f"{f}: {exc}") from exc
                frames.append(np.minimum(fr.numpy(), np.iinfo(np.int16).max).astype(np.int16))
                labels.append(int(cls))
                sources.append(f"{f.name}:{k + 1}")
        return np.stack(frames), np.asarray(labels, np.int64), np.asarray(sources)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return torch.from_numpy(self._frames[index].astype(np.float32)), int(self.labels[index])


# ----------------------------------------------------------------------------------------------------------------
# CIFAR10-DVS
# ----------------------------------------------------------------------------------------------------------------

CIFAR10DVS_CLASSES = CIFAR10_CLASSES
_CIFAR10DVS_HINT = ("put the original recordings in one folder per class, <root>/airplane/cifar10_airplane_0.aedat .. "
                    "<root>/truck/cifar10_truck_999.aedat (unzip airplane.zip .. truck.zip from figshare "
                    "'CIFAR10-DVS_New') in")


def _natural_key(path: Path):
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", path.name)]


class CIFAR10DVS(torch.utils.data.Dataset):
    """CIFAR10-DVS from the original AEDAT 2.0 files; items are ``(float32 [T, 2, 42, 42] counts, label)``.

    Per class, the recordings sorted by their number: the first ``train_per_class`` (900) train, the rest test.
    Each item: the window of ``timesteps`` (10) slices of ``dt_ms`` (10) ms from the recording's first event,
    coordinates divided by ``downsample`` (3.04, so 128 -> 42) and floored, in the authors' layout
    ``[T, p, 127 - x_bits, y_bits]``. Files are read when an item is requested.
    """

    sensor = 128

    def __init__(self, root, train: bool = True, timesteps: int = 10, dt_ms: float = 10, size: int = 42,
                 downsample: float = 3.04, train_per_class: int = 900):
        root = Path(root)
        if not root.is_dir():
            raise DatasetNotFoundError(f"CIFAR10-DVS directory '{root}' does not exist: {_CIFAR10DVS_HINT} '{root}'")
        if (self.sensor - 1) // downsample >= size:
            raise ValueError(f"CIFAR10-DVS downsample {downsample} maps 128 pixels beyond size {size}")
        self.root, self.train, self.timesteps, self.size = root, train, timesteps, size
        self.dt_us, self.downsample = int(round(dt_ms * 1000)), downsample
        self.classes = CIFAR10DVS_CLASSES
        missing = [c for c in self.classes if not (root / c).is_dir()]
        if missing:
            raise DatasetNotFoundError(f"CIFAR10-DVS: missing class folder(s) {', '.join(missing)} in '{root}': "
                                       f"{_CIFAR10DVS_HINT} '{root}'")
        self.files, labels = [], []
        for label, c in enumerate(self.classes):
            recs = sorted((root / c).glob("*.aedat"), key=_natural_key)
            if len(recs) <= train_per_class:
                raise DatasetNotFoundError(f"CIFAR10-DVS: '{root / c}' holds {len(recs)} .aedat recordings, need more "
                                           f"than train_per_class={train_per_class}: {_CIFAR10DVS_HINT} '{root}'")
            chosen = recs[:train_per_class] if train else recs[train_per_class:]
            self.files += chosen
            labels += [label] * len(chosen)
        self.labels = np.asarray(labels, np.int64)

    def __len__(self):
        return len(self.files)

    def frames(self, index) -> torch.Tensor:
        path = self.files[index]
        t, row, col, p = read_cifar10dvs_events(path)
        if t.size == 0:
            raise DatasetFormatError(f"{path}: the recording holds no events")
        try:
            return events_to_frames(t, row, col, p, timesteps=self.timesteps, dt_us=self.dt_us, size=self.size,
                                    downsample=self.downsample)
        except ValueError as exc:
            raise DatasetFormatError(f"{path}: {exc}") from exc

    def __getitem__(self, index):
        return self.frames(index), int(self.labels[index])
