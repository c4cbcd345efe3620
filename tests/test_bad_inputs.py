"""Every row of docs/bad-inputs.md: exit status 2, one line naming the file, key or layer, no traceback,
nothing half-written. Run in-process (fast); tests/test_cli.py repeats two of them in a subprocess."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bad_input import assert_one_error_line, assert_table_lists, edited_checkpoint, write
from spikecore.accel.contract.checkpoint import shipped_checkpoint_path
from spikecore.accel.flows.cli import main

SHIPPED = shipped_checkpoint_path()


class _Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


def _program(tmp: Path) -> Path:
    assert main(["compile", str(SHIPPED), "--out", str(tmp / "prog")]) == 0
    return tmp / "prog"


def _max_pool_checkpoint(tmp: Path) -> Path:
    """A generic digits checkpoint of a VGG that max-pools MLF spike counts, which needs the comparators the
    default core does not have (``max_pool``)."""
    from spikecore.models.networks import build_network

    config = {"arch": "vgg", "layers": [4, "M", 6], "image_size": 8, "in_channels": 1, "classes": 10}
    run = {"dataset": {"name": "digits"}, "model": config, "train": {}}
    torch.save({"format": "spikecore-checkpoint", "version": 1, "model": "network", "config": config,
                "state_dict": build_network(config).state_dict(), "metrics": {},
                "train_state": {"run_config": run}}, tmp / "vgg.pt")
    return tmp / "vgg.pt"


def _nir_file(tmp: Path, fault) -> Path:
    """A NIR graph input - flatten - affine - LIF - output, with one ``fault``: a CubaLIF neuron ("cuba"), a
    leak 1 - dt/tau = 0.3 ("tau"), a reset to 0.5 ("reset"); ``None``: a valid graph."""
    import nir

    n, tau = 10, (1e-4 / 0.7 if fault == "tau" else 2e-4)
    params = dict(r=np.full(n, tau / 1e-4), v_leak=np.zeros(n), v_threshold=np.ones(n),
                  v_reset=np.full(n, 0.5 if fault == "reset" else 0.0))
    lif = nir.CubaLIF(tau_syn=np.full(n, tau), tau_mem=np.full(n, tau), **params) if fault == "cuba" else \
        nir.LIF(tau=np.full(n, tau), **params)
    nodes = {"input": nir.Input(input_type={"input": np.array([1, 8, 8])}),
             "flat": nir.Flatten(input_type={"input": np.array([1, 8, 8])}, start_dim=0, end_dim=-1),
             "fc": nir.Affine(weight=np.ones((n, 64)), bias=np.zeros(n)), "lif": lif,
             "output": nir.Output(output_type={"output": np.array([n])})}
    names = list(nodes)
    nir.write(tmp / "m.nir", nir.NIRGraph(nodes=nodes, edges=list(zip(names, names[1:])), type_check=False))
    return tmp / "m.nir"


def _edited_program(tmp: Path, key: str, edit) -> Path:
    path = _program(tmp)
    with np.load(path / "arrays.npz") as data:
        arrays = {k: data[k] for k in data.files}
    edit(arrays[key])
    np.savez(path / "arrays.npz", **arrays)
    return path


RESNET8 = "model: {arch: resnet, block: ds, depth: 8, width: small, levels: 3, timesteps: 2}\ntrain: {epochs: 1}\n"


def _cifar_config(tmp: Path, fill) -> Path:
    """A CIFAR-10 training config whose dataset folder ``fill(folder)`` prepares."""
    folder = tmp / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    fill(folder)
    return write(tmp / "c.yaml", f"dataset: {{name: cifar10, root: {folder}}}\n" + RESNET8)


def _junk_batches(folder: Path) -> None:
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_text("junk")


def _wrong_shape_batches(folder: Path) -> None:
    import pickle

    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as handle:
            pickle.dump({b"data": np.zeros((10, 100), np.uint8), b"labels": [0] * 10}, handle, protocol=2)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": [b"c"] * 10}, handle, protocol=2)


def _set_nan(payload):
    payload["state_dict"]["conv1.weight"][0, 0, 0, 0] = float("nan")


def _set_config(key, value):
    def edit(payload):
        payload["config"][key] = value
    return edit


def _extra_layer(payload):
    payload["state_dict"]["conv2.weight"] = torch.zeros(4, 4, 3, 3)


def _set_version(path: Path) -> Path:
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


# (row id, argv builder(tmp) -> list, needles in the message)
CASES = [
    ("arch-malformed-yaml",
     lambda t: ["rtl", "--arch", write(t / "a.yaml", "lanes: 8\nmemories: [1, 2\n"), "--out", t / "out"],
     ["a.yaml", "malformed YAML at line"]),
    ("arch-unknown-key",
     lambda t: ["rtl", "--arch", write(t / "a.yaml", "lanez: 8\n"), "--out", t / "out"],
     ["a.yaml", "unknown key 'lanez'", "did you mean 'lanes'"]),
    ("arch-unknown-nested-key",
     lambda t: ["rtl", "--arch", write(t / "a.yaml", "memories:\n  synapse: 8\n"), "--out", t / "out"],
     ["unknown key 'memories.synapse'", "did you mean 'memories.synapses'"]),
    ("arch-out-of-range",
     lambda t: ["rtl", "--arch", write(t / "a.yaml", "acc_bits: 200\n"), "--out", t / "out"],
     ["a.yaml", "key 'acc_bits' = 200 is out of range [4, 64]"]),
    ("arch-wrong-type",
     lambda t: ["rtl", "--arch", write(t / "a.yaml", "weight_bits: eight\n"), "--out", t / "out"],
     ["key 'weight_bits' must be an integer"]),
    ("arch-invalid-combination",
     lambda t: ["rtl", "--arch", write(t / "a.yaml", "lanes: 6\n"), "--out", t / "out"],
     ["key 'lanes' = 6 must be a power of two"]),
    ("arch-bank-conflict",
     lambda t: ["rtl", "--arch", write(t / "a.yaml", "banks: [[synapses, weights, acc]]\n"), "--out", t / "out"],
     ["a.yaml", "key 'banks[0]': 'weights' and 'acc' cannot share a single-port bank", "state WRD"]),
    ("arch-bad-update-lanes",
     lambda t: ["rtl", "--arch", write(t / "a.yaml", "lanes: 4\nupdate_lanes: 3\n"), "--out", t / "out"],
     ["a.yaml", "key 'update_lanes' = 3 must be a power of two no larger than lanes = 4"]),
    ("arch-layer-major-too-wide",
     lambda t: ["rtl", "--arch", write(t / "a.yaml", "schedule: layer_major\nmax_timesteps: 64\n"), "--out", t / "out"],
     ["a.yaml", "key 'schedule' = 'layer_major' needs event words of max_timesteps x value_bits", "lower max_timesteps"]),
    ("arch-missing-file",
     lambda t: ["rtl", "--arch", t / "nope.yaml", "--out", t / "out"],
     ["nope.yaml: cannot read architecture file"]),
    ("train-unknown-key",
     lambda t: ["train", write(t / "c.yaml", "model:\n  levles: 3\n"), "--out", t / "out"],
     ["c.yaml", "unknown key 'model.levles'", "did you mean 'model.levels'"]),
    ("train-out-of-range",
     lambda t: ["train", write(t / "c.yaml", "train:\n  epochs: 0\n"), "--out", t / "out"],
     ["c.yaml", "key 'train.epochs' = 0 is out of range"]),
    ("train-unsupported-dataset",
     lambda t: ["train", write(t / "c.yaml", "dataset: imagenet\n"), "--out", t / "out"],
     ["key 'dataset' = 'imagenet' is not supported"]),
    ("dataset-empty-directory",
     lambda t: ["train", _cifar_config(t, lambda folder: None), "--out", t / "out"],
     ["CIFAR-10: missing data_batch_1", "put data_batch_1 .. data_batch_5, test_batch and batches.meta"]),
    ("dataset-corrupt-file",
     lambda t: ["train", _cifar_config(t, _junk_batches), "--out", t / "out"],
     ["data_batch_1: not a readable CIFAR-10 pickle batch"]),
    ("dataset-wrong-shape",
     lambda t: ["train", _cifar_config(t, _wrong_shape_batches), "--out", t / "out"],
     ["data_batch_1: b'data' must be a uint8 array [N, 3072], got uint8 [10, 100]"]),
    ("network-too-large",
     lambda t: ["compile", SHIPPED, "--arch", write(t / "a.yaml", "memories:\n  synapses: 4096\n"),
                "--out", t / "out"],
     ["layer conv1", "memory 'synapses'", "memories.synapses = 4096"]),
    ("accumulator-overflow",
     lambda t: ["compile", SHIPPED, "--arch", write(t / "a.yaml", "acc_bits: 12\n"), "--out", t / "out"],
     ["layer conv0", "accumulator bound", "overflows acc_bits = 12"]),
    ("weight-overflow",
     lambda t: ["sim", _edited_program(t, "layer1.source0.weight", lambda w: w.__setitem__((0, 0, 0, 0), 300)),
                "--out", t / "out.json"],
     ["prog", "layer conv1", "weight", "overflows 8 bits"]),
    ("threshold-overflow",
     lambda t: ["sim", _edited_program(t, "layer0.thresholds", lambda th: th.__setitem__((2, 0), 1 << 21)),
                "--out", t / "out.json"],
     ["layer conv0", "threshold", "overflows 16 bits"]),
    ("unsupported-layer",
     lambda t: ["compile", edited_checkpoint(t, _extra_layer), "--out", t / "out"],
     ["edited.pt", "unsupported layer or parameter 'conv2.weight'"]),
    ("decay-not-a-shift",
     lambda t: ["compile", edited_checkpoint(t, _set_config("decay", 0.3)), "--out", t / "out"],
     ["layer conv0", "decay 0.3 is not a power of two"]),
    ("nan-in-checkpoint",
     lambda t: ["compile", edited_checkpoint(t, _set_nan), "--out", t / "out"],
     ["edited.pt", "'conv1.weight' contains NaN or Inf"]),
    ("truncated-checkpoint",
     lambda t: ["compile", write(t / "cut.pt", SHIPPED.read_bytes()[:20000]), "--out", t / "out"],
     ["cut.pt", "truncated or not a PyTorch checkpoint"]),
    ("not-a-checkpoint",
     lambda t: ["compile", write(t / "notes.pt", "hello, not a checkpoint\n"), "--out", t / "out"],
     ["notes.pt", "truncated or not a PyTorch checkpoint"]),
    ("code-executing-pickle",
     lambda t: ["compile", (torch.save({"x": _Exploit()}, t / "evil.pt"), t / "evil.pt")[1], "--out", t / "out"],
     ["evil.pt", "refused", "execute code"]),
    ("missing-checkpoint",
     lambda t: ["compile", t / "none.pt", "--out", t / "out"],
     ["none.pt: no such checkpoint file"]),
    ("program-for-another-arch",
     lambda t: ["sim", _program(t), "--arch", write(t / "a.yaml", "acc_bits: 19\n"), "--out", t / "out.json"],
     ["compiled for architecture", "recompile"]),
    ("corrupt-program",
     lambda t: ["sim", (lambda p: (write(p / "arrays.npz", b"garbage"), p)[1])(_program(t)),
                "--out", t / "out.json"],
     ["arrays.npz: missing or corrupt parameter arrays"]),
    ("program-version",
     lambda t: ["sim", _set_version(_program(t)), "--out", t / "out.json"],
     ["manifest.json", "program format version 99 is not supported"]),
    ("not-a-program",
     lambda t: ["sim", t, "--out", t / "out.json"],
     ["not a program directory"]),
    ("energy-unknown-key",
     lambda t: ["sim", _program(t), "--energy", write(t / "e.yaml", "e_ac: 1.0\n"), "--out", t / "out.json"],
     ["e.yaml: unknown key 'e_ac'", "did you mean 'e_ac_pj'"]),
    ("bad-flip-bit",
     lambda t: ["verify", SHIPPED, "--flip-bit", "weights:0:99", "--out", t / "out.json"],
     ["--flip-bit: bit 99 is outside the 64-bit words of memory 'weights'"]),
    ("bad-sample-count",
     lambda t: ["demo", "--samples", "0", "--out", t / "out"],
     ["--samples must be at least 1"]),
    ("unknown-method",
     lambda t: ["demo", "--method", "sew-nand", "--out", t / "out"],
     ["--method 'sew-nand' is not a method", "--list-methods"]),
    ("unsupported-construct",
     lambda t: ["compile", _max_pool_checkpoint(t), "--out", t / "out"],
     ["layer features.3: max pooling of multi-valued events needs the comparators of 'max_pool: true'"]),
    ("synth-unknown-target",
     lambda t: ["synth", "--target", "ice41", "--out", t / "out"],
     ["target 'ice41' is not supported", "ice40-up5k, ecp5-85, xilinx7"]),
    ("sweep-malformed-yaml",
     lambda t: ["sweep", write(t / "s.yaml", "grid:\n  lanes: [8, 16\n"), "--out", t / "out"],
     ["s.yaml", "malformed YAML at line"]),
    ("sweep-unknown-key",
     lambda t: ["sweep", write(t / "s.yaml", "gird:\n  lanes: [8]\n"), "--out", t / "out"],
     ["s.yaml", "unknown key 'gird'", "did you mean 'grid'"]),
    ("sweep-unknown-parameter",
     lambda t: ["sweep", write(t / "s.yaml", "grid:\n  lanez: [8]\n"), "--out", t / "out"],
     ["s.yaml", "unknown parameter 'grid.lanez'", "did you mean 'lanes'"]),
    ("sweep-bad-value",
     lambda t: ["sweep", write(t / "s.yaml", "grid:\n  lanes: [8, 6]\n"), "--out", t / "out"],
     ["s.yaml: grid.lanes", "key 'lanes' = 6 must be a power of two"]),
    ("sweep-missing-checkpoint",
     lambda t: ["sweep", write(t / "s.yaml", "networks: [none.pt]\ngrid:\n  lanes: [8]\n"), "--out", t / "out"],
     ["s.yaml", "no such checkpoint file", "none.pt"]),
    ("sweep-bad-fit",
     lambda t: ["sweep", write(t / "s.yaml", "fit_memories: pow3\ngrid:\n  lanes: [8]\n"), "--out", t / "out"],
     ["s.yaml", "key 'fit_memories' must be a headroom factor in [1, 16] or 'pow2', got 'pow3'"]),
    ("sweep-unknown-target",
     lambda t: ["sweep", write(t / "s.yaml", "grid:\n  lanes: [8]\nsynth:\n  target: ice41\n"), "--out", t / "out"],
     ["s.yaml", "key 'synth.target'", "target 'ice41' is not supported"]),
    ("sweep-unreachable-scheduler",
     lambda t: ["sweep", write(t / "s.yaml", "grid:\n  lanes: [8]\n"), "--out", t / "out",
                "--scheduler", "tcp://127.0.0.1:9"],
     ["--scheduler tcp://127.0.0.1:9: cannot reach the Dask scheduler"]),
    ("nir-unsupported-node",
     lambda t: ["import", _nir_file(t, "cuba"), "--out", t / "out", "--timesteps", "4", "--input-scale", "16"],
     ["m.nir: node 'lif' (CubaLIF): not supported on the core"]),
    ("nir-leak-not-a-shift",
     lambda t: ["import", _nir_file(t, "tau"), "--out", t / "out", "--timesteps", "4", "--input-scale", "16"],
     ["m.nir: node 'lif' (LIF): decay 1 - dt/tau = 0.3", "not a power of two"]),
    ("nir-soft-reset",
     lambda t: ["import", _nir_file(t, "reset"), "--out", t / "out", "--timesteps", "4", "--input-scale", "16"],
     ["m.nir: node 'lif' (LIF): v_reset is not 0"]),
    ("nir-missing-timesteps",
     lambda t: ["import", _nir_file(t, None), "--out", t / "out"],
     ["m.nir: the file does not record --timesteps"]),
    ("nir-corrupt-file",
     lambda t: ["import", write(t / "m.nir", b"\x89HDF junk"), "--out", t / "out", "--timesteps", "4",
                "--input-scale", "16"],
     ["m.nir: truncated or not a NIR file"]),
]


def test_table_lists_every_case():
    assert_table_lists(row_id for row_id, _, _ in CASES)


@pytest.mark.parametrize("row_id, argv, needles", CASES, ids=[c[0] for c in CASES])
def test_bad_input(row_id, argv, needles, tmp_path, capsys):
    args = [str(a) for a in argv(tmp_path)]
    capsys.readouterr()
    assert main(args) == 2
    captured = capsys.readouterr()
    assert_one_error_line(captured.err, args[0], needles)
    assert "this must never run" not in captured.out + captured.err
    for leftover in ("out", "out.json"):
        assert not (tmp_path / leftover).exists(), leftover
