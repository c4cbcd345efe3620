"""The Program: a compiled network, typed, versioned and saved as a directory.

``PROGRAM_DIR/manifest.json`` holds the format version, the architecture fingerprint, the layer
descriptions and the memory layout; ``PROGRAM_DIR/arrays.npz`` holds the quantized parameters and the
memory columns (field arrays of each memory word, see ``accel/contract/layouts.py``). Loading never unpickles.
"""
from __future__ import annotations

import json
import math
import os
import reprlib
import shutil
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from spikecore.models import STAGE_KINDS, IntegerStage, Source

from spikecore.accel.contract.checkpoint import CONFIG_INT_RANGES, all_finite
from spikecore.accel.contract.config import ArchConfig
from spikecore.errors import UserError
from spikecore.accel.contract.layouts import all_layouts

FORMAT = "spikecore-program"
FORMAT_VERSION = 2
MEMORY_NAMES = ("layers", "pointers", "synapses", "weights", "params")

# Bounds of what a Program directory may hold, above anything a core runs (the layers memory holds at most 256
# passes, no memory more than 2^22 words, pixels at most 16 bits; timesteps and levels as a checkpoint's), so
# that a hand-edited or hostile Program cannot make loading allocate, loop or recurse for long.
MAX_MANIFEST_BYTES = 16 << 20
MAX_ARRAYS_BYTES = 8 << 30   # the largest tables of any configuration: 2^20 weight rows of 256 lanes are 2 GiB
MAX_PASSES = 256
MAX_INDEX = 1 << 24          # any base, count, size or shape (and the neurons of a shape)
MAX_INPUT = 1 << 16


def is_program_directory(directory) -> bool:
    """Whether ``directory`` holds a Program's manifest (of any version): one this toolkit wrote."""
    try:
        with open(Path(directory) / "manifest.json", "rb") as handle:
            manifest = json.loads(handle.read(MAX_MANIFEST_BYTES + 1))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT


@dataclass
class ProgramSource:
    """One synaptic source of a stage and its tables: one pass of the core per timestep."""

    input: int                   # producing stage, or -1: the pixels
    op: str                      # "conv" or "linear"
    weight: np.ndarray           # int64, [C_out, C_in, KH, KW] or [N_out, N_in]
    in_shape: tuple
    stride: int = 1
    padding: int = 0
    # memory layout
    pass_index: int = 0          # its descriptor in the layers memory
    in_region: int = 0
    ptr_base: int = 0
    n_inputs_hw: int = 0         # pointer rows (inputs in the producer's hardware index space)
    syn_base: int = 0
    n_synapses: int = 0

    def manifest(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "weight"}
        out["in_shape"] = list(self.in_shape)
        return out


@dataclass
class ProgramLayer:
    """One compiled stage (``models.IntegerStage``) and its place in the core's memories."""

    name: str
    kind: str                    # "neuron" | "readout" | "sum" | "gate" | "max"
    sources: list                # ProgramSource, in pass order
    out_shape: tuple             # logical output shape, (C, H, W) or (N,)
    bias: np.ndarray             # int64 [C_out]
    thresholds: np.ndarray       # int64 [K, C_out]
    scale: np.ndarray            # float64 [C_out]: integer ~ scale * float
    shift: int = 0
    truth_table: int = 0
    carry: int | None = None
    # memory layout
    acc_base: int = 0
    clear_acc: bool = True
    state_base: int = 0
    n_groups: int = 0
    param_base: int = 0
    n_blocks: int = 0
    out_region: int = 0

    @property
    def levels(self) -> int:
        return int(self.thresholds.shape[0])

    @property
    def fires(self) -> bool:
        """Whether the stage emits events (everything but the readout)."""
        return self.kind != "readout"

    @property
    def has_state(self) -> bool:
        return self.kind in ("neuron", "readout")

    @property
    def update_pass(self) -> int:
        return self.sources[-1].pass_index

    @property
    def channels(self) -> int:
        return int(self.out_shape[0])

    @property
    def positions(self) -> int:
        return int(np.prod(self.out_shape[1:])) if len(self.out_shape) > 1 else 1

    def hw_index(self, lanes: int) -> np.ndarray:
        """Hardware (padded) index of each logical output neuron, logical ``(C, H, W)`` flat order."""
        c = np.arange(self.channels).reshape(-1, 1)
        q = np.arange(self.positions).reshape(1, -1)
        return ((q * self.n_blocks + c // lanes) * lanes + c % lanes).reshape(-1)

    def integer_stage(self) -> IntegerStage:
        sources = [Source(s.input, s.op, torch.from_numpy(s.weight), s.stride, s.padding) for s in self.sources]
        return IntegerStage(name=self.name, kind=self.kind, sources=sources, out_shape=tuple(self.out_shape),
                            bias=torch.from_numpy(self.bias), thresholds=torch.from_numpy(self.thresholds),
                            shift=self.shift, truth_table=self.truth_table, carry=self.carry)

    _ARRAYS = ("bias", "thresholds", "scale")

    def manifest(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k not in self._ARRAYS + ("sources",)}
        out["out_shape"] = list(self.out_shape)
        out["sources"] = [src.manifest() for src in self.sources]
        return out


@dataclass
class Program:
    arch_fingerprint: str
    timesteps: int
    input_shape: tuple
    input_max: int
    layers: list
    memories: dict               # memory name -> {field name: int64 array with a leading record axis}
    meta: dict = field(default_factory=dict)

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def state_rows(self) -> int:
        """Rows of the accumulator and state memories in use (both are cleared at the start of a run)."""
        ends = [layer.acc_base + layer.n_groups for layer in self.layers]
        ends += [layer.state_base + layer.n_groups for layer in self.layers if layer.has_state]
        return max(ends)

    @property
    def n_passes(self) -> int:
        return sum(len(layer.sources) for layer in self.layers)

    def integer_stages(self) -> list:
        return [layer.integer_stage() for layer in self.layers]

    def registers(self) -> dict:
        return {"n_layers": self.n_passes, "timesteps": self.timesteps, "n_inputs": self.n_inputs,
                "state_rows": self.state_rows}

    def check_arch(self, arch: ArchConfig, source: str = "program") -> None:
        if arch.fingerprint() != self.arch_fingerprint:
            raise UserError(f"{source}: compiled for architecture {self.arch_fingerprint}, "
                            f"but the given configuration is {arch.fingerprint()} ({arch.name}); recompile it")

    def memory_image(self, arch: ArchConfig) -> dict:
        """Packed words of every host-loaded memory plus the control registers (for the RTL)."""
        layouts = all_layouts(arch)
        image = {name: layouts[name].pack(**self.memories[name]) for name in MEMORY_NAMES}
        image["registers"] = self.registers()
        return image

    # ---- persistence ---------------------------------------------------------------------------
    def save(self, directory) -> Path:
        """Write the Program atomically: the complete new directory replaces the old one in one step.

        Raises
        ------
        UserError
            ``directory`` exists and is neither empty nor a Program directory (nothing is replaced).
        """
        from spikecore.atomic import current_umask, install_folder, make_temporary_folder, restore_aside

        directory = Path(directory)
        restore_aside(directory)
        if directory.exists() or directory.is_symlink():
            if not directory.is_dir():
                raise UserError(f"{directory}: exists and is not a folder; choose another --out")
            if any(directory.iterdir()) and not is_program_directory(directory):
                names = sorted(entry.name for entry in directory.iterdir())
                raise UserError(f"{directory}: exists and is not a Program directory (it holds "
                                f"{', '.join(names[:3])}{', ...' if len(names) > 3 else ''}); choose a new or "
                                f"empty folder")
        tmp = make_temporary_folder(directory)
        try:
            arrays = {}
            for i, layer in enumerate(self.layers):
                for key in ProgramLayer._ARRAYS:
                    arrays[f"layer{i}.{key}"] = getattr(layer, key)
                for j, src in enumerate(layer.sources):
                    arrays[f"layer{i}.source{j}.weight"] = src.weight
            for name, columns in self.memories.items():
                for key, col in columns.items():
                    arrays[f"mem.{name}.{key}"] = np.asarray(col, dtype=np.int64)
            np.savez(tmp / "arrays.npz", **arrays)
            manifest = {
                "format": FORMAT, "version": FORMAT_VERSION, "arch_fingerprint": self.arch_fingerprint,
                "timesteps": self.timesteps, "input_shape": list(self.input_shape), "input_max": self.input_max,
                "layers": [layer.manifest() for layer in self.layers],
                "memories": {name: sorted(cols) for name, cols in self.memories.items()},
                "meta": self.meta,
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, allow_nan=False))
            for written in tmp.iterdir():
                os.chmod(written, 0o666 & ~current_umask())
            install_folder(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return directory

    @classmethod
    def load(cls, directory) -> "Program":
        """Read a Program directory, checking every value of the manifest and every array before use: types,
        ranges, array dtypes and shapes, and how the layers connect (the memory tables are checked against a
        configuration by :func:`spikecore.accel.contract.compiler.validate_program`).

        Raises
        ------
        UserError
            One line naming ``manifest.json`` or ``arrays.npz`` and the key or array at fault.
        """
        from spikecore.atomic import restore_aside

        directory = Path(directory)
        restore_aside(directory)  # a replacement interrupted between its two renames (no atomic exchange)
        manifest_path = directory / "manifest.json"
        manifest = _read_manifest(directory, manifest_path)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise UserError(f"{manifest_path}: not a {FORMAT} manifest")
        if manifest.get("version") != FORMAT_VERSION:
            raise UserError(f"{manifest_path}: program format version {reprlib.repr(manifest.get('version'))} is not "
                            f"supported (this tool reads version {FORMAT_VERSION})")
        arrays_path = directory / "arrays.npz"
        return _ProgramReader(manifest_path, arrays_path, _read_arrays(arrays_path)).program(manifest)


def _read_manifest(directory: Path, path: Path):
    """The parsed ``manifest.json`` of a Program directory (at most :data:`MAX_MANIFEST_BYTES`)."""
    try:
        with open(path, "rb") as handle:
            text = handle.read(MAX_MANIFEST_BYTES + 1)
    except OSError:
        raise UserError(f"{directory}: not a program directory (no readable manifest.json)") from None
    if len(text) > MAX_MANIFEST_BYTES:
        raise UserError(f"{path}: larger than {MAX_MANIFEST_BYTES >> 20} MiB; not a program manifest")
    try:
        return json.loads(text)
    except ValueError:  # malformed JSON, not UTF-8, an integer of too many digits
        raise UserError(f"{path}: malformed JSON") from None
    except RecursionError:
        raise UserError(f"{path}: malformed JSON (nested too deeply)") from None


# what a damaged archive raises while it is read (zip structure, compression, npy headers, short data)
_ARCHIVE_ERRORS = (OSError, ValueError, EOFError, KeyError, MemoryError, NotImplementedError, RuntimeError,
                   zipfile.BadZipFile, zlib.error)


def _read_arrays(path: Path) -> dict:
    """The arrays of ``arrays.npz``, never unpickled; each array's header is read first and an array larger
    than its archive member (or an archive above :data:`MAX_ARRAYS_BYTES`) is refused before allocation."""
    corrupt = f"{path}: missing or corrupt parameter arrays"
    arrays = {}
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if m.filename.endswith(".npy")]
            if sum(m.file_size for m in members) > MAX_ARRAYS_BYTES:
                raise UserError(f"{path}: arrays larger than {MAX_ARRAYS_BYTES >> 30} GiB; not a program")
            for member in members:
                with archive.open(member) as handle:
                    version = np.lib.format.read_magic(handle)
                    if version not in ((1, 0), (2, 0)):
                        raise UserError(corrupt)
                    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                        else np.lib.format.read_array_header_2_0
                    shape, _, dtype = read_header(handle)
                    if dtype.hasobject or math.prod(shape) * dtype.itemsize > member.file_size:
                        raise UserError(corrupt)
                with archive.open(member) as handle:
                    arrays[member.filename[:-len(".npy")]] = np.lib.format.read_array(handle, allow_pickle=False)
    except _ARCHIVE_ERRORS:
        raise UserError(corrupt) from None
    return arrays


# the keys of a manifest, of a layer record and of a source record (``ProgramLayer.manifest``)
_MANIFEST_KEYS = ("format", "version", "arch_fingerprint", "timesteps", "input_shape", "input_max", "layers",
                  "memories", "meta")
_LAYER_KEYS = ("name", "kind", "out_shape", "shift", "truth_table", "carry", "acc_base", "clear_acc",
               "state_base", "n_groups", "param_base", "n_blocks", "out_region", "sources")
_SOURCE_KEYS = ("input", "op", "in_shape", "stride", "padding", "pass_index", "in_region", "ptr_base",
                "n_inputs_hw", "syn_base", "n_synapses")
# memory-layout fields of a layer record (checked against the configuration by accel.compiler.validate_program)
_LAYER_LAYOUT_KEYS = ("shift", "acc_base", "state_base", "n_groups", "param_base", "n_blocks", "out_region")
_SOURCE_LAYOUT_KEYS = ("in_region", "ptr_base", "n_inputs_hw", "syn_base", "n_synapses")


class _ProgramReader:
    """Builds a Program from a parsed manifest and its arrays, checking each value where it is read."""

    def __init__(self, manifest_path: Path, arrays_path: Path, arrays: dict):
        self.manifest_path, self.arrays_path, self.arrays = manifest_path, arrays_path, arrays

    # -- values ----------------------------------------------------------------------------------
    def bad(self, key: str, message: str) -> UserError:
        return UserError(f"{self.manifest_path}: {key} {message}")

    def record(self, value, key: str, keys: tuple, optional: tuple = ()) -> dict:
        """A mapping with exactly ``keys`` (``optional`` ones may be absent)."""
        if not isinstance(value, dict):
            raise self.bad(key, f"must be a mapping, got {reprlib.repr(value)}")
        missing = [k for k in keys if k not in value and k not in optional]
        unknown = [k for k in value if k not in keys]
        if missing:
            raise self.bad(key, f"has no key '{missing[0]}'")
        if unknown:
            raise self.bad(key, f"has an unknown key {reprlib.repr(unknown[0])}")
        return value

    def integer(self, value, key: str, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.bad(key, f"must be an integer in [{lo}, {hi}], got {reprlib.repr(value)}")
        return value

    def sequence(self, value, key: str, longest: int) -> list:
        if not isinstance(value, list) or not 1 <= len(value) <= longest:
            raise self.bad(key, f"must be a list of 1 to {longest} entries, got {reprlib.repr(value)}")
        return value

    def shape(self, value, key: str) -> tuple:
        """A shape ``[C, H, W]`` or ``[N]`` of at most :data:`MAX_INDEX` neurons."""
        if not isinstance(value, list) or len(value) not in (1, 3):
            raise self.bad(key, f"must be a shape [C, H, W] or [N], got {reprlib.repr(value)}")
        shape = tuple(self.integer(v, f"{key}[{k}]", 1, MAX_INDEX) for k, v in enumerate(value))
        if math.prod(shape) > MAX_INDEX:
            raise self.bad(key, f"= {list(shape)} has more than {MAX_INDEX} neurons")
        return shape

    def array(self, key: str, integer: bool = True) -> np.ndarray:
        """Array ``key`` of ``arrays.npz``: integers as int64, or finite real numbers as float64."""
        if key not in self.arrays:
            raise UserError(f"{self.arrays_path}: missing or corrupt parameter arrays (no array '{key}')")
        values = self.arrays[key]
        if integer:
            if values.dtype.kind not in "iu" or (values.dtype.kind == "u" and values.size
                                                 and int(values.max()) > np.iinfo(np.int64).max):
                raise UserError(f"{self.arrays_path}: array '{key}' holds {values.dtype} values, expected 64-bit "
                                f"integers")
            return values.astype(np.int64)
        if values.dtype.kind not in "iuf" or not all_finite(values):
            raise UserError(f"{self.arrays_path}: array '{key}' must hold finite real numbers ({values.dtype})")
        return values.astype(np.float64)

    def array_of_shape(self, key: str, shape: tuple, integer: bool = True) -> np.ndarray:
        values = self.array(key, integer)
        if values.shape != tuple(shape):
            raise UserError(f"{self.arrays_path}: array '{key}' has shape {list(values.shape)}, expected {list(shape)}")
        return values

    # -- the Program -----------------------------------------------------------------------------
    def program(self, manifest: dict) -> "Program":
        self.record(manifest, "the manifest", _MANIFEST_KEYS, optional=("meta",))
        fingerprint = manifest["arch_fingerprint"]
        if not isinstance(fingerprint, str):
            raise self.bad("arch_fingerprint", f"must be text, got {reprlib.repr(fingerprint)}")
        meta = manifest.get("meta", {})
        if not isinstance(meta, dict):
            raise self.bad("meta", f"must be a mapping, got {reprlib.repr(meta)}")
        input_shape = self.shape(manifest["input_shape"], "input_shape")
        layers, shapes, passes = [], [], 0
        for i, desc in enumerate(self.sequence(manifest["layers"], "layers", MAX_PASSES)):
            layer = self.layer(i, desc, input_shape, shapes, passes)
            layers.append(layer)
            shapes.append(tuple(layer.out_shape))
            passes += len(layer.sources)
            if passes > MAX_PASSES:
                raise self.bad(f"layers[{i}]", f"brings the passes to {passes}, more than {MAX_PASSES}")
        return Program(arch_fingerprint=fingerprint,
                       timesteps=self.integer(manifest["timesteps"], "timesteps", *CONFIG_INT_RANGES["timesteps"]),
                       input_shape=input_shape, input_max=self.integer(manifest["input_max"], "input_max", 0, MAX_INPUT),
                       layers=layers, memories=self.memories(manifest["memories"]), meta=meta)

    def layer(self, i: int, desc, input_shape: tuple, shapes: list, first_pass: int) -> ProgramLayer:
        """Layer record ``i`` and its arrays; ``shapes`` are the earlier layers' output shapes."""
        key = f"layers[{i}]"
        self.record(desc, key, _LAYER_KEYS)
        name, kind = desc["name"], desc["kind"]
        if not isinstance(name, str) or not 1 <= len(name) <= 200:
            raise self.bad(f"{key}.name", f"must be text of 1 to 200 characters, got {reprlib.repr(name)}")
        if kind not in STAGE_KINDS:
            raise self.bad(f"{key}.kind", f"must be one of {', '.join(STAGE_KINDS)}, got {reprlib.repr(kind)}")
        out_shape = self.shape(desc["out_shape"], f"{key}.out_shape")
        layout = {k: self.integer(desc[k], f"{key}.{k}", 0, MAX_INDEX) for k in _LAYER_LAYOUT_KEYS}
        carry = desc["carry"]
        if carry is not None and (isinstance(carry, bool) or not isinstance(carry, int) or not 0 <= carry < i
                                  or shapes[carry] != out_shape):
            raise self.bad(f"{key}.carry", f"must be null or an earlier layer of shape {list(out_shape)}, got "
                           f"{reprlib.repr(carry)}")
        if not isinstance(desc["clear_acc"], bool):
            raise self.bad(f"{key}.clear_acc", f"must be true or false, got {reprlib.repr(desc['clear_acc'])}")
        channels = out_shape[0]
        thresholds = self.array(f"layer{i}.thresholds")
        lo, hi = CONFIG_INT_RANGES["levels"]
        if thresholds.ndim != 2 or not lo <= len(thresholds) <= hi or thresholds.shape[1] != channels:
            raise UserError(f"{self.arrays_path}: array 'layer{i}.thresholds' has shape {list(thresholds.shape)}, "
                            f"expected [K, {channels}] with {lo} <= K <= {hi}")
        sources = [self.source(i, j, src, out_shape, input_shape, shapes, first_pass + j)
                   for j, src in enumerate(self.sequence(desc["sources"], f"{key}.sources", MAX_PASSES))]
        return ProgramLayer(name=name, kind=kind, sources=sources, out_shape=out_shape,
                            bias=self.array_of_shape(f"layer{i}.bias", (channels,)), thresholds=thresholds,
                            scale=self.array_of_shape(f"layer{i}.scale", (channels,), integer=False),
                            truth_table=self.integer(desc["truth_table"], f"{key}.truth_table", 0, 255),
                            carry=carry, clear_acc=desc["clear_acc"], **layout)

    def source(self, i: int, j: int, src, out_shape: tuple, input_shape: tuple, shapes: list,
               pass_index: int) -> ProgramSource:
        """Source ``j`` of layer ``i``: its record, and a weight array that maps its input to ``out_shape``."""
        key = f"layers[{i}].sources[{j}]"
        self.record(src, key, _SOURCE_KEYS)
        producer = self.integer(src["input"], f"{key}.input", -1, i - 1)
        in_shape = self.shape(src["in_shape"], f"{key}.in_shape")
        produced = input_shape if producer < 0 else shapes[producer]
        if in_shape != produced:
            raise self.bad(f"{key}.in_shape", f"= {list(in_shape)}, but its input "
                           f"({'the pixels' if producer < 0 else f'layer {producer}'}) has shape {list(produced)}")
        if src["op"] not in ("conv", "linear"):
            raise self.bad(f"{key}.op", f"must be conv or linear, got {reprlib.repr(src['op'])}")
        if self.integer(src["pass_index"], f"{key}.pass_index", 0, MAX_PASSES) != pass_index:
            raise self.bad(f"{key}.pass_index", f"must be {pass_index}: passes are numbered in layer order")
        stride = self.integer(src["stride"], f"{key}.stride", 1, MAX_INDEX)
        padding = self.integer(src["padding"], f"{key}.padding", 0, MAX_INDEX)
        layout = {k: self.integer(src[k], f"{key}.{k}", 0, MAX_INDEX) for k in _SOURCE_LAYOUT_KEYS}
        name = f"layer{i}.source{j}.weight"
        weight = self.array(name)
        if src["op"] == "linear":
            fits = len(out_shape) == 1 and weight.shape == (out_shape[0], math.prod(in_shape))
        else:
            fits = len(in_shape) == 3 and len(out_shape) == 3 and weight.ndim == 4 \
                and weight.shape[:2] == (out_shape[0], in_shape[0]) \
                and all(1 <= k <= n + 2 * padding and (n + 2 * padding - k) // stride + 1 == m
                        for k, n, m in zip(weight.shape[2:], in_shape[1:], out_shape[1:]))
        if not fits:
            raise UserError(f"{self.arrays_path}: array '{name}' of shape {list(weight.shape)} does not map the "
                            f"{list(in_shape)} input of a {src['op']} (stride {stride}, padding {padding}) to the "
                            f"layer's {list(out_shape)}")
        return ProgramSource(input=producer, op=src["op"], weight=weight, in_shape=in_shape, stride=stride,
                             padding=padding, pass_index=pass_index, **layout)

    def memories(self, value) -> dict:
        """The memory columns: every memory of :data:`MEMORY_NAMES`, its columns integer arrays of one length."""
        self.record(value, "memories", MEMORY_NAMES)
        memories = {}
        for name in MEMORY_NAMES:
            keys = value[name]
            if not isinstance(keys, list) or not 1 <= len(keys) <= 16 or not all(isinstance(k, str) for k in keys) \
                    or len(set(keys)) != len(keys):
                raise self.bad(f"memories.{name}", f"must be a list of distinct field names, got {reprlib.repr(keys)}")
            columns = {k: self.array(f"mem.{name}.{k}") for k in keys}
            lengths = {len(c) if c.ndim else -1 for c in columns.values()}
            if len(lengths) != 1 or -1 in lengths:
                raise UserError(f"{self.arrays_path}: the columns of memory '{name}' ({', '.join(keys)}) must be "
                                f"arrays of one record count, got shapes "
                                f"{', '.join(str(list(c.shape)) for c in columns.values())}")
            memories[name] = columns
        return memories
