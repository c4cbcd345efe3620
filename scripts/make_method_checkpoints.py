"""Regenerate the model zoo: one trained digits checkpoint per method of the seed papers.

    python scripts/make_method_checkpoints.py                  # all 15 methods
    python scripts/make_method_checkpoints.py mlf-k3 sew-add   # only these (the others' entries are kept)
    python scripts/make_method_checkpoints.py --table-only --markdown   # the table of docs/constructs.md

Each method is trained exactly as ``accel demo --method NAME`` trains it (``methods.train_method``: the
method's default epochs and seed), written to ``accel/data/methods/NAME.pt`` and recorded in
``accel/data/methods/manifest.json`` with its float test accuracy, its hardware-exact accuracy on the methods
core (the golden integer model of the compiled Program on the 450 test images), epochs, seed, the file's
SHA-256 and size, the toolkit version and the date. ``accel demo --method NAME --pretrained`` uses these files.

The zoo files hold the weights, the network's configuration, the training metrics and the run's
configuration; the optimizer, schedule and random-number state that ``accel train --resume`` needs are left
out (a zoo checkpoint is not resumed), which keeps each file small. Training is deterministic for a given
seed and thread count; the manifest records the thread count used.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from spikecore import api
from spikecore.accel.contract.checkpoint import load_checkpoint
from spikecore.accel.flows import methods
from spikecore.accel.flows.outputs import toolkit_version
from spikecore.accel.flows.verify import float_gap, run_golden
from spikecore.atomic import atomic_write_bytes, atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "accel" / "data" / "methods"
#: Keys of a generic run's ``train_state`` that only resuming needs.
RESUME_ONLY = ("optimizer", "scheduler", "rng")


def zoo_payload(checkpoint: Path) -> tuple[bytes, dict]:
    """The bytes of the zoo file for a trained checkpoint (resume-only state removed) and its payload."""
    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = payload.get("train_state")
    if isinstance(state, dict):
        payload["train_state"] = {k: v for k, v in state.items() if k not in RESUME_ONLY}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue(), payload


def training_settings(name: str) -> dict:
    """Epochs and seed ``train_method`` uses for the method (its defaults, as the demo trains it)."""
    method = methods.METHODS[name]
    if method.digits is not None:
        from spikecore.accel.flows.trainconfig import load_train_config

        train = load_train_config(None)["train"]
    else:
        train = methods.train_config(name)["train"]
    return {"epochs": train["epochs"], "seed": train["seed"]}


def evaluate(name: str, path: Path, arch) -> dict:
    """Float and hardware-exact accuracy of a zoo file on the digits test set, on the methods core."""
    net, _ = load_checkpoint(path)
    methods.prepare(name, net)
    program = api.compile(net, arch, source=path)
    pixels, labels = api.load_images()
    gap = float_gap(net, program, run_golden(program, arch, pixels), pixels, labels)
    return {"float_accuracy": gap["float_accuracy"], "hardware_exact_accuracy": gap["hardware_exact_accuracy"],
            "test_images": len(pixels)}


def read_manifest(path: Path) -> dict:
    import json

    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return dict(data.get("methods", {}))


def write_manifest(path: Path, entries: dict) -> None:
    ordered = {name: entries[name] for name in methods.METHODS if name in entries}
    atomic_write_json(path, {
        "format": "spikecore-model-zoo",
        "version": 1,
        "description": "trained digits checkpoints of the method set (scripts/make_method_checkpoints.py)",
        "arch": "accel/data/methods_arch.yaml",
        "methods": ordered,
    })


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help="methods to (re)train (default: all 15)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"zoo folder (default {DEFAULT_OUT})")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--markdown", action="store_true",
                        help="print the table as the rows of docs/constructs.md's zoo table")
    parser.add_argument("--table-only", action="store_true",
                        help="train nothing: print the table of the zoo's manifest")
    args = parser.parse_args(argv)
    if args.table_only:
        print_table(read_manifest(args.out / "manifest.json"), args.markdown)
        return 0
    unknown = [name for name in args.names if name not in methods.METHODS]
    if unknown:
        print(f"make_method_checkpoints: error: unknown method {unknown[0]!r} (one of "
              f"{', '.join(methods.METHODS)})", file=sys.stderr)
        return 2
    names = args.names or list(methods.METHODS)
    manifest_path = args.out / "manifest.json"
    entries = read_manifest(manifest_path)
    arch = api.load_arch(methods.methods_arch_path())
    version = toolkit_version()
    started = time.perf_counter()
    for i, name in enumerate(names, 1):
        settings = training_settings(name)
        print(f"[{i}/{len(names)}] {name}: {methods.METHODS[name].summary} ({settings['epochs']} epochs, "
              f"seed {settings['seed']})", flush=True)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = methods.train_method(name, tmp, progress=not args.quiet)
            data, payload = zoo_payload(checkpoint)
        path = args.out / f"{name}.pt"
        atomic_write_bytes(path, data)
        train_seconds = time.perf_counter() - t0
        accuracy = evaluate(name, path, arch)
        entries[name] = {
            "file": path.name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            **accuracy,
            **settings,
            "threads": torch.get_num_threads(),
            "train_seconds": round(train_seconds, 1),
            "spikecore_version": version,
            "torch_version": torch.__version__,
            "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        write_manifest(manifest_path, entries)  # after every method: an interrupted run keeps what it made
        print(f"    float {accuracy['float_accuracy']:.4f}, hardware-exact {accuracy['hardware_exact_accuracy']:.4f}, "
              f"{len(data) / 1024:.1f} KB, {train_seconds:.0f} s -> {path}", flush=True)
    print(f"\n{len(names)} checkpoints in {time.perf_counter() - started:.0f} s; manifest {manifest_path}\n")
    print_table(entries, args.markdown)
    return 0


def print_table(entries: dict, markdown: bool = False) -> None:
    """The zoo's accuracies: a plain table, or the rows of docs/constructs.md's table."""
    if markdown:
        print("| method | epochs | float accuracy | hardware-exact accuracy | size |")
        print("|---|---|---|---|---|")
    else:
        print(f"{'method':15s} {'epochs':>6s} {'float':>7s} {'hw-exact':>8s} {'KB':>7s}")
    for name in methods.METHODS:
        entry = entries.get(name)
        if entry is None:
            continue
        if markdown:
            print(f"| `{name}` | {entry['epochs']} | {100 * entry['float_accuracy']:.2f} % | "
                  f"{100 * entry['hardware_exact_accuracy']:.2f} % | {entry['bytes'] / 1024:.0f} KB |")
        else:
            print(f"{name:15s} {entry['epochs']:6d} {entry['float_accuracy']:7.4f} "
                  f"{entry['hardware_exact_accuracy']:8.4f} {entry['bytes'] / 1024:7.1f}")


if __name__ == "__main__":
    sys.exit(main())
