"""The Program: a compiled network, typed, versioned and saved as a directory.

``PROGRAM_DIR/manifest.json`` holds the format version, the architecture fingerprint, the layer
descriptions and the memory layout; ``PROGRAM_DIR/arrays.npz`` holds the quantized parameters and the
memory columns (field arrays of each memory word, see ``accel/layouts.py``). Loading never unpickles.
"""
from __future__ import annotations

import json
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from models import IntegerStage, Source

from .config import ArchConfig
from .errors import UserError
from .layouts import all_layouts

FORMAT = "spikecore-program"
FORMAT_VERSION = 2
MEMORY_NAMES = ("layers", "pointers", "synapses", "weights", "params")


def is_program_directory(directory) -> bool:
    """Whether ``directory`` holds a Program's manifest (of any version): one this toolkit wrote."""
    try:
        manifest = json.loads((Path(directory) / "manifest.json").read_text())
    except (OSError, ValueError):
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
    kind: str                    # "neuron" | "readout" | "sum" | "gate"
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
        from models.atomic import current_umask, install_folder, make_temporary_folder, restore_aside

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
        directory = Path(directory)
        manifest_path = directory / "manifest.json"
        try:
            manifest = json.loads(manifest_path.read_text())
        except OSError:
            raise UserError(f"{directory}: not a program directory (no readable manifest.json)") from None
        except json.JSONDecodeError:
            raise UserError(f"{manifest_path}: malformed JSON") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise UserError(f"{manifest_path}: not a {FORMAT} manifest")
        if manifest.get("version") != FORMAT_VERSION:
            raise UserError(f"{manifest_path}: program format version {manifest.get('version')} is not supported "
                            f"(this tool reads version {FORMAT_VERSION})")
        try:
            with np.load(directory / "arrays.npz", allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError):
            raise UserError(f"{directory / 'arrays.npz'}: missing or corrupt parameter arrays") from None
        try:
            layers = []
            for i, desc in enumerate(manifest["layers"]):
                desc = dict(desc)
                desc["out_shape"] = tuple(desc["out_shape"])
                for key in ProgramLayer._ARRAYS:
                    desc[key] = arrays[f"layer{i}.{key}"]
                sources = []
                for j, src in enumerate(desc["sources"]):
                    src = dict(src, in_shape=tuple(src["in_shape"]), weight=arrays[f"layer{i}.source{j}.weight"])
                    sources.append(ProgramSource(**src))
                desc["sources"] = sources
                layers.append(ProgramLayer(**desc))
            memories = {name: {key: arrays[f"mem.{name}.{key}"] for key in keys}
                        for name, keys in manifest["memories"].items()}
            return cls(arch_fingerprint=manifest["arch_fingerprint"], timesteps=manifest["timesteps"],
                       input_shape=tuple(manifest["input_shape"]), input_max=manifest["input_max"],
                       layers=layers, memories=memories, meta=manifest.get("meta", {}))
        except (KeyError, TypeError) as exc:
            raise UserError(f"{manifest_path}: inconsistent program (missing {exc})") from None
