"""Generic training from YAML (accel train CONFIG.yaml): validation, measurements, resume, dual-stream loss,
the compiler's rejection of generic checkpoints, and the digits path unchanged. Tiny synthetic runs."""
import json
import subprocess
import sys

import pytest
import torch

from spikecore.accel.contract.checkpoint import load_checkpoint
from spikecore.errors import UserError
from spikecore.accel.flows.trainconfig import load_train_config
from spikecore.models.networks import build_network
from spikecore.models.train import train_network

TINY = """\
dataset: {name: synthetic, kind: cifar, train_samples: 16, test_samples: 8, size: 8, classes: 4}
model: {arch: resnet, block: ds, depth: 8, width: 4, levels: 3, timesteps: 2}
train: {epochs: EPOCHS, batch_size: 8, optimizer: sgd, lr: 0.1, momentum: 0.9, weight_decay: 1e-4,
        schedule: cosine, seed: 0, loss: ce, eval_batch: 4}
"""


def _config(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _run_cli(*args):
    proc = subprocess.run([sys.executable, "-m", "spikecore.accel.flows.cli", *map(str, args)], capture_output=True, text=True)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("text, needles", [
    (TINY.replace("EPOCHS", "1").replace("optimizer: sgd", "optimiser: sgd"),
     ["unknown key 'train.optimiser'", "did you mean 'train.optimizer'"]),
    (TINY.replace("EPOCHS", "1").replace("depth: 8", "dept: 8"), ["unknown key 'model.dept'", "'model.depth'"]),
    (TINY.replace("EPOCHS", "1").replace("size: 8,", "sise: 8,"), ["unknown key 'dataset.sise'", "'dataset.size'"]),
    (TINY.replace("EPOCHS", "1").replace("lr: 0.1", "lr: 50"), ["key 'train.lr' = 50 is out of range"]),
    (TINY.replace("EPOCHS", "0"), ["key 'train.epochs' = 0 is out of range"]),
    (TINY.replace("EPOCHS", "1").replace("schedule: cosine", "schedule: cosin"),
     ["key 'train.schedule' = 'cosin' is not one of", "did you mean 'cosine'"]),
    (TINY.replace("EPOCHS", "1").replace("depth: 8", "depth: 9"), ["key 'model.depth'", "6N + 2"]),
    (TINY.replace("EPOCHS", "1").replace("name: synthetic", "name: cifar100"),
     ["key 'dataset' = 'cifar100' is not supported"]),
    (TINY.replace("EPOCHS", "1").replace("loss: ce", "loss: dual"), ["key 'train.loss' = 'dual'", "dual-stream"]),
    ("dataset: {name: cifar10}\nmodel: {arch: resnet, block: ds}\n", ["key 'dataset.root' is missing"]),
])
def test_config_errors_name_file_and_key(tmp_path, text, needles):
    path = _config(tmp_path, text, "bad.yaml")
    with pytest.raises(UserError) as info:
        load_train_config(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    for needle in needles:
        assert needle in message, message


def test_config_error_on_the_command_line_is_one_line(tmp_path):
    path = _config(tmp_path, TINY.replace("EPOCHS", "1").replace("batch_size", "batchsize"), "bad.yaml")
    rc, _, err = _run_cli("train", path, "--out", tmp_path / "run")
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err
    assert "bad.yaml" in lines[0] and "unknown key 'train.batchsize'" in lines[0]
    assert "did you mean 'train.batch_size'" in lines[0]
    assert not (tmp_path / "run").exists()


def test_resnet8_ds_run_writes_measurements_and_a_loadable_checkpoint(tmp_path):
    config = load_train_config(_config(tmp_path, TINY.replace("EPOCHS", "1")))
    metrics = train_network(tmp_path / "run", config, progress=False)
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk["finished"] and on_disk["epochs_done"] == 1 and len(on_disk["history"]) == 1
    row = on_disk["history"][0]
    assert set(row) >= {"loss", "train_accuracy", "test_accuracy", "lr", "measurements"}
    m = row["measurements"]
    assert "stem_neuron" in m["firing_rate"] and "blocks.0.sn_out" in m["firing_rate"]
    assert all(0.0 <= r <= 3.0 for r in m["firing_rate"].values())        # K = 3: spike counts 0..3
    assert all(0.0 <= r <= 1.0 for r in m["dormant_ratio"].values())
    assert all(m["dormant_ratio"][name] == pytest.approx(m["dormant_high_ratio"][name] + m["dormant_low_ratio"][name])
               for name in m["dormant_ratio"])
    ops = m["synaptic_ops_per_image"]
    assert ops["mac"] > 0 and ops["ac"] >= 0 and m["energy_pj_per_image"] == pytest.approx(0.9 * ops["ac"]
                                                                                           + 4.6 * ops["mac"])
    assert set(m["gradient_mean_abs"]) == {"block0", "block1", "block2"}
    assert all(g > 0 for g in m["gradient_mean_abs"].values())
    assert (tmp_path / "run" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert metrics["test_accuracy"] == on_disk["test_accuracy"]
    # weights-only checkpoint that records the network config; accel.checkpoint rebuilds it
    payload = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert payload["model"] == "network" and payload["config"]["block"] == "ds"
    assert {"optimizer", "scheduler", "rng", "epoch"} <= set(payload["train_state"])
    net, _ = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert type(net).__name__ == "SpikingResNet"
    assert torch.equal(net.state_dict()["classifier.weight"], payload["state_dict"]["classifier.weight"])


def test_resume_ends_with_the_same_weights(tmp_path):
    config = load_train_config(_config(tmp_path, TINY.replace("EPOCHS", "3")))
    train_network(tmp_path / "straight", config, progress=False)
    partial = train_network(tmp_path / "resumed", config, progress=False, stop_after=2)
    assert partial["epochs_done"] == 2 and not partial["finished"]
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")[1]["train_state"]["epoch"] == 2
    final = train_network(tmp_path / "resumed", config, progress=False)   # automatic resume
    assert final["finished"] and [h["epoch"] for h in final["history"]] == [1, 2, 3]
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert straight["state_dict"].keys() == resumed["state_dict"].keys()
    for key, value in straight["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
    assert straight["metrics"]["history"][2]["loss"] == resumed["metrics"]["history"][2]["loss"]
    # the same RUN_DIR with another configuration is refused, naming the key that differs
    other = load_train_config(_config(tmp_path, TINY.replace("EPOCHS", "4")))
    with pytest.raises(ValueError, match="'train.epochs' differs"):
        train_network(tmp_path / "resumed", other, progress=False)


def test_dual_stream_network_trains_with_the_dual_loss(tmp_path, monkeypatch):
    import spikecore.models.blocks

    calls = []
    original = spikecore.models.blocks.dual_stream_loss
    monkeypatch.setattr(spikecore.models.blocks, "dual_stream_loss", lambda *a, **k: calls.append(1) or original(*a, **k))
    text = TINY.replace("EPOCHS", "1").replace("block: ds", "block: dual, join: IAND").replace("levels: 3, ", "")
    config = load_train_config(_config(tmp_path, text.replace("loss: ce", "loss: dual")))
    assert config["train"]["loss"] == "dual"
    metrics = train_network(tmp_path / "run", config, progress=False)
    assert len(calls) == 2 + 1                        # 2 training batches + the measurement batch
    row = metrics["history"][0]
    assert 0.0 <= row["test_accuracy_dsnn"] <= 1.0 and row["measurements"]["synaptic_ops_per_image"]["ac"] >= 0
    assert load_train_config(_config(tmp_path, text.replace("loss: ce, ", ""), "d.yaml"))["train"]["loss"] == "dual"
    with pytest.raises(UserError, match="'train.loss' = 'ce'"):
        load_train_config(_config(tmp_path, text, "e.yaml"))


def _generic_checkpoint(path, config, dataset):
    net = build_network(config)
    run = {"dataset": {"name": dataset}, "model": config, "train": {}}
    torch.save({"format": "spikecore-checkpoint", "version": 1, "model": "network", "config": config,
                "state_dict": net.state_dict(), "metrics": {}, "train_state": {"run_config": run}}, path)
    return path


def test_compile_a_generic_digits_checkpoint_and_reject_what_the_core_lacks(tmp_path):
    ds = {"arch": "resnet", "block": "ds", "depth": 8, "width": 4, "stages": 2, "in_channels": 1}
    from spikecore.accel.flows.methods import methods_arch_path

    rc, _, err = _run_cli("compile", _generic_checkpoint(tmp_path / "ds.pt", ds, "digits"), "--arch",
                          methods_arch_path(), "--out", tmp_path / "p")
    assert rc == 0, err
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert [layer["kind"] for layer in manifest["layers"]].count("sum") == 2    # one DS join per block
    vgg = {"arch": "vgg", "layers": [4, "M", 6], "image_size": 8, "in_channels": 1, "classes": 10}
    rc, _, err = _run_cli("compile", _generic_checkpoint(tmp_path / "vgg.pt", vgg, "digits"), "--out", tmp_path / "q")
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err
    assert "layer features.3: max pooling of multi-valued events needs the comparators of 'max_pool: true'" in lines[0]
    assert not (tmp_path / "q").exists()
    rc, _, err = _run_cli("compile", _generic_checkpoint(tmp_path / "c.pt", ds, "synthetic"), "--out", tmp_path / "r")
    assert rc == 2 and "its integer input is unknown" in err


def test_digits_path_unchanged(tmp_path):
    path = _config(tmp_path, "dataset: digits\nmodel:\n  channels: [4, 8]\n  timesteps: 1\ntrain:\n  epochs: 1\n"
                             "  batch_size: 128\n")
    config = load_train_config(path)
    assert "generic" not in config and set(config) == {"model", "train"}
    rc, out, err = _run_cli("train", path, "--out", tmp_path / "run", "--quiet")
    assert rc == 0, err
    assert {p.name for p in (tmp_path / "run").iterdir()} >= {"checkpoint.pt", "metrics.json", "curves.png"}
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["dataset"] == "digits" and len(metrics["history"]) == 1 and "measurements" not in metrics["history"][0]
    net, payload = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert payload["model"] == "digits" and type(net).__name__ == "DigitsNet"
    assert "train_state" not in payload
    rc, _, err = _run_cli("train", path, "--out", tmp_path / "run2", "--resume")
    assert rc == 2 and "--resume needs a generic configuration" in err
