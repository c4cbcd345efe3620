"""Verilog generation of the core for one architecture configuration."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from amaranth.back import verilog

from accel.config import ArchConfig

from .core import Core

TOP_MODULE = "core"


def generate(arch: ArchConfig, out_dir) -> Path:
    """Write ``core.v`` (top module ``core``, ports ``clk``, ``rst`` and the host interface) into ``out_dir``.

    The text depends only on ``arch`` (no source locations are emitted), and the file is replaced
    atomically so that concurrent generators of the same configuration never see a partial file.

    Parameters
    ----------
    arch : accel.config.ArchConfig
    out_dir : path-like
        Created if missing.

    Returns
    -------
    pathlib.Path
        The path of ``core.v``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    header = f"// Core '{arch.name}', architecture fingerprint {arch.fingerprint()}\n"
    text = header + verilog.convert(Core(arch), name=TOP_MODULE, emit_src=False)
    path = out_dir / f"{TOP_MODULE}.v"
    fd, tmp_name = tempfile.mkstemp(dir=out_dir, prefix=".core-", suffix=".v")
    with os.fdopen(fd, "w") as tmp:
        tmp.write(text)
    os.replace(tmp_name, path)
    return path
