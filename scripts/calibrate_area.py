"""Regenerate the area model's calibration (``accel/data/area_model.json``) for one target.

Synthesises the calibration configurations below with ``spikecore.accel.flows.synth.synthesize`` (cached: a rerun only
synthesises what changed), fits ``spikecore.accel.flows.area`` to the reports and stores the coefficients, the calibration
points and the leave-one-out error for the target, keeping the other targets' entries.

    python scripts/calibrate_area.py --target ice40-up5k            # about 15 min on 2 cores (6 with --area-only)
    python scripts/calibrate_area.py --target ecp5-85 --area-only   # Yosys only, no place-and-route
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor

from spikecore.accel.contract.config import arch_from_dict, default_arch
from spikecore.accel.flows import area
from spikecore.accel.flows.synth import synthesize
from spikecore.atomic import atomic_write_json

SMALL = {"layers": 8, "pointers": 512, "synapses": 1024, "weights": 256, "params": 16, "state": 64, "events": 256,
         "inputs": 64, "trace": 256}
MEDIUM = {"layers": 16, "pointers": 1024, "synapses": 4096, "weights": 1024, "params": 16, "state": 128,
          "events": 512, "inputs": 128, "trace": 1024}
# The default's update and banks (split, banked), and the lane-parallel update with one memory each.
PARALLEL = {"update_lanes": 0, "banks": []}
# Spread over lanes, widths, levels, memory sizes, both organisations and both schedules around the default.
CALIBRATION = [
    {},  # the default configuration
    {"lanes": 4, "memories": SMALL},
    {"lanes": 2, "weight_bits": 6, "acc_bits": 16, "membrane_bits": 16, "max_levels": 2, "memories": SMALL},
    {"lanes": 16, "update_lanes": 2, "memories": MEDIUM},
    {"lanes": 8, "max_levels": 3, "acc_bits": 18, "membrane_bits": 18, "memories": MEDIUM, **PARALLEL},
    {"lanes": 4, "weight_bits": 4, "acc_bits": 16, "max_levels": 4, "memories": MEDIUM, **PARALLEL},
    {"lanes": 8, "acc_bits": 24, "membrane_bits": 24, "max_levels": 2, "memories": SMALL, **PARALLEL},
    {"lanes": 16, "weight_bits": 6, "max_levels": 3, "memories": SMALL, **PARALLEL},
    {"lanes": 2, "memories": {**MEDIUM, "synapses": 16384, "pointers": 2048}, **PARALLEL},
    {"lanes": 4, "max_levels": 3, "memories": {**MEDIUM, "trace": 4096, "state": 512}},
    {"lanes": 8, "memories": {**MEDIUM, "synapses": 8192}},
    # the layer-major schedule: accumulator words per timestep slot, trains in events and registers
    {"lanes": 8, "schedule": "layer_major", "max_timesteps": 4, "memories": MEDIUM},
    {"lanes": 4, "schedule": "layer_major", "max_timesteps": 8, "max_levels": 3, "memories": SMALL, **PARALLEL},
    # memories a few words deep, in flip-flops (as `fit_memories: pow2` sizes the layers table of a small network)
    {"memories": {"layers": 4, "params": 8}},
    {"lanes": 4, "memories": {**SMALL, "layers": 2, "params": 2}},
    {"lanes": 16, "max_levels": 3, "memories": {**MEDIUM, "layers": 4, "params": 1}, **PARALLEL},
]


def calibration_archs() -> list:
    """The calibration configurations as :class:`spikecore.accel.contract.config.ArchConfig` objects."""
    base = default_arch().to_dict()
    archs = []
    for i, change in enumerate(CALIBRATION):
        data = {**base, **{k: v for k, v in change.items() if k != "memories"}, "name": f"calibration-{i}"}
        data["memories"] = {**base["memories"], **change.get("memories", {})}
        archs.append(arch_from_dict(data, f"calibration configuration {i}"))
    return archs


def _synthesize(job):
    arch, target, place = job
    report = synthesize(arch, target, place=place)
    print(f"{arch.name}: {report['lut']} LUT, {report['ff']} FF, {report['bram']} BRAM"
          + (" (cached)" if report["cached"] else f" in {sum(report['seconds'].values()):.0f} s"), flush=True)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--area-only", action="store_true", help="skip place-and-route (no Fmax, much faster)")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)
    jobs = [(arch, args.target, not args.area_only) for arch in calibration_archs()]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        reports = list(pool.map(_synthesize, jobs))
    model = area.fit([area.report_point(r) for r in reports], args.target)
    path = area.shipped_model_path()
    stored = json.loads(path.read_text()) if path.exists() else {}
    stored[args.target] = model.to_dict()
    atomic_write_json(path, dict(sorted(stored.items())))
    print(model.describe())
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
