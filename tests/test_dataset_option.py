"""Networks trained on any supported dataset reach the core (issue 19, item 2): checkpoints record their input,
`accel sim` and `accel verify` take `--dataset`; inputs the core cannot take are refused naming the reason."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spikecore.accel.contract.checkpoint import load_checkpoint
from spikecore.accel.flows.cli import main
from spikecore.models import load_digits_split

from bad_input import assert_table_lists
from test_datasets import _write_cifar

ARCH = """\
name: cifar-small
lanes: 8
weight_bits: 8
acc_bits: 24
membrane_bits: 24
input_bits: 8
max_levels: 4
max_timesteps: 16
multivalue: bitserial
event_regions: 6
clock_mhz: 24
memories: {layers: 64, pointers: 32768, synapses: 65536, weights: 4096, params: 128, state: 8192, events: 8192,
           inputs: 4096, trace: 65536}
"""


def train(tmp_path, dataset: str, model: str) -> str:
    config = tmp_path / "train.yaml"
    config.write_text(f"dataset: {dataset}\nmodel: {model}\ntrain: {{epochs: 1, optimizer: adam, lr: 0.005, "
                      f"batch_size: 8}}\n")
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    return str(tmp_path / "run" / "checkpoint.pt")


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    _write_cifar(root / "cifar-10-batches-py", n=6)
    return root


@pytest.fixture(scope="module")
def cifar_vgg(cifar, tmp_path_factory):
    """A VGG trained on CIFAR-format files (pixels / 255) and compiled for a core with room for 32x32x3."""
    tmp = tmp_path_factory.mktemp("vgg")
    checkpoint = train(tmp, f"{{name: cifar10, root: {cifar}, normalize: false, augment: false}}",
                       "{arch: vgg, layers: [4, A, A, A], neuron: {type: lif, v_th: 0.05}, timesteps: 2}")
    (tmp / "arch.yaml").write_text(ARCH)
    assert main(["compile", checkpoint, "--arch", str(tmp / "arch.yaml"), "--out", str(tmp / "prog")]) == 0
    return tmp, checkpoint


def test_checkpoint_records_the_input(cifar_vgg):
    _, checkpoint = cifar_vgg
    payload = torch.load(checkpoint, weights_only=True)
    assert payload["input"] == {"dataset": "cifar10", "shape": [3, 32, 32], "timesteps": 2, "encoding": "direct",
                                "max": 255, "why": None}
    net, _ = load_checkpoint(checkpoint)
    assert net.input_shape == (3, 32, 32) and net.input_scale == 255


def test_cifar_vgg_simulates_golden_equal_on_the_cifar_test_set(cifar, cifar_vgg):
    tmp, _ = cifar_vgg
    from spikecore import api

    arch = api.load_arch(tmp / "arch.yaml")
    program = api.load_program(tmp / "prog", arch)
    images, labels = api.load_images(dataset="cifar10", root=cifar)
    assert images.dtype == torch.int64 and images.shape == (6, 3, 32, 32) and int(images.max()) <= 255
    from spikecore.accel.flows.verify import verify
    from spikecore.sim.engine import simulate_batch

    sims = simulate_batch(program, arch, images.reshape(len(images), -1).numpy())
    report, golden = verify(program, arch, images, None, sims)
    assert report["bit_exact"], report["mismatches"][:3]
    assert sum(int(s.sum()) for s in golden["spikes"]) > 0
    assert main(["sim", str(tmp / "prog"), "--arch", str(tmp / "arch.yaml"), "--dataset", "cifar10", "--data-root",
                 str(cifar), "--out", str(tmp / "sim.json"), "--quiet"]) == 0
    assert json.loads((tmp / "sim.json").read_text())["samples"] == 6


@pytest.mark.slow
def test_cifar_vgg_verifies_on_the_rtl(cifar, cifar_vgg):
    """Done-when of issue 19 (the VGG half): trained on CIFAR-format files, bit and cycle exact on the RTL."""
    tmp, _ = cifar_vgg
    assert main(["verify", str(tmp / "prog"), "--arch", str(tmp / "arch.yaml"), "--dataset", "cifar10",
                 "--data-root", str(cifar), "--samples", "2", "--out", str(tmp / "verify.json"), "--quiet"]) == 0
    report = json.loads((tmp / "verify.json").read_text())
    assert report["bit_exact"] is True and report["cycle_exact"] is True


@pytest.fixture(scope="module")
def cifar_ds_resnet(cifar, tmp_path_factory):
    """A DS-ResNet-8 (one stage, width 4) trained on CIFAR-format files and compiled for a core with room."""
    tmp = tmp_path_factory.mktemp("ds")
    checkpoint = train(tmp, f"{{name: cifar10, root: {cifar}, normalize: false, augment: false}}",
                       "{arch: resnet, block: ds, depth: 8, width: 4, stages: 1, timesteps: 2, "
                       "neuron: {type: mlf, levels: 2, v_th: 0.05}, norm: bn}")  # active after one epoch
    arch = ARCH.replace("cifar-small", "cifar-resnet").replace("pointers: 32768", "pointers: 65536") \
        .replace("synapses: 65536", "synapses: 262144").replace("state: 8192", "state: 32768") \
        .replace("events: 8192", "events: 32768")
    (tmp / "arch.yaml").write_text(arch)
    assert main(["compile", checkpoint, "--arch", str(tmp / "arch.yaml"), "--out", str(tmp / "prog")]) == 0
    return tmp


def test_cifar_ds_resnet_is_golden_equal_to_the_simulator(cifar, cifar_ds_resnet):
    from spikecore import api
    from spikecore.accel.flows.verify import verify
    from spikecore.sim.engine import simulate_batch

    arch = api.load_arch(cifar_ds_resnet / "arch.yaml")
    program = api.load_program(cifar_ds_resnet / "prog", arch)
    images, _ = api.load_images(dataset="cifar10", root=cifar)
    sims = simulate_batch(program, arch, images.reshape(len(images), -1).numpy())
    report, golden = verify(program, arch, images, None, sims)
    assert report["bit_exact"], report["mismatches"][:3]
    assert sum(int(s.sum()) for s in golden["spikes"]) > 100  # every stage has something to compare


@pytest.mark.slow
def test_cifar_ds_resnet_verifies_on_the_rtl(cifar, cifar_ds_resnet):
    """Done-when of issue 19 (the DS-ResNet half): trained on CIFAR-format files, bit and cycle exact on the RTL."""
    assert main(["verify", str(cifar_ds_resnet / "prog"), "--arch", str(cifar_ds_resnet / "arch.yaml"),
                 "--dataset", "cifar10", "--data-root", str(cifar), "--samples", "1",
                 "--out", str(cifar_ds_resnet / "verify.json"), "--quiet"]) == 0
    report = json.loads((cifar_ds_resnet / "verify.json").read_text())
    assert report["bit_exact"] is True and report["cycle_exact"] is True


def test_npz_folder_gives_the_same_run_as_the_digits(tmp_path, digits_program, arch):
    """A folder of .npz samples is read in name order; the digits written there simulate as the digits do."""
    from spikecore import api

    _, _, x, y = load_digits_split()
    for i in range(5):
        np.savez(tmp_path / f"s{i:02d}.npz", image=x[i].numpy(), label=np.int64(y[i]))
    images, labels = api.load_images(dataset=str(tmp_path))
    assert torch.equal(images, x[:5]) and torch.equal(labels, y[:5])
    assert api.simulate(digits_program, arch, images, labels)["cycles"] == \
        api.simulate(digits_program, arch, x[:5], y[:5])["cycles"]


@pytest.mark.parametrize("case, make, message", [
    ("dataset-normalised-cifar", None,
     "trained on normalised CIFAR-10 images (dataset.normalize: true), which are not integer pixels"),
    ("dataset-event-frames-compile", None, "trained on synthetic real-valued event frames, which have no integer counts"),
    ("dataset-event-sim", ["--dataset", "dvs-gesture"],
     "--dataset dvs-gesture: the program was not compiled from a network trained on event frames"),
    ("dataset-unknown", ["--dataset", "mnist"], "--dataset mnist: not one of digits, cifar10, dvs-gesture"),
    ("dataset-cifar-without-root", ["--dataset", "cifar10"], "--dataset cifar10 needs --data-root DIR"),
    ("dataset-npz-float", "float", "'image' must hold integers and 'label' one integer"),
    ("dataset-npz-empty", "empty", "holds no .npz samples"),
    ("dataset-npz-shapes", "shapes", "image shape [3] differs from a.npz's [64]"),
    ("dataset-wrong-size", "wrong-size", "the program takes 64 inputs of at most 16 (or a frame of them per timestep), the test images are 3 values"),
])
def test_inputs_the_core_cannot_take_are_refused(case, make, message, tmp_path, cifar, capsys, digits_program):
    digits_program.save(tmp_path / "prog")
    if case == "dataset-normalised-cifar":
        checkpoint = train(tmp_path, f"{{name: cifar10, root: {cifar}, augment: false}}",
                           "{arch: vgg, layers: [2, A, A, A, A], levels: 1, timesteps: 1}")
        argv = ["compile", checkpoint, "--out", str(tmp_path / "p2")]
    elif case == "dataset-event-frames-compile":
        checkpoint = train(tmp_path, "{name: synthetic, kind: dvs, train_samples: 8, test_samples: 4, size: 8, "
                                     "timesteps: 2}", "{arch: vgg, layers: [2, A], levels: 1, timesteps: 2}")
        argv = ["compile", checkpoint, "--out", str(tmp_path / "p2")]
    else:
        folder = tmp_path / "samples"
        folder.mkdir()
        if make == "float":
            np.savez(folder / "a.npz", image=np.zeros(64, np.float32), label=np.int64(1))
        elif make == "shapes":
            np.savez(folder / "a.npz", image=np.zeros(64, np.int64), label=np.int64(1))
            np.savez(folder / "b.npz", image=np.zeros(3, np.int64), label=np.int64(1))
        elif make == "wrong-size":
            np.savez(folder / "a.npz", image=np.ones(3, np.int64), label=np.int64(1))
        dataset = ["--dataset", str(folder)] if isinstance(make, str) else make
        argv = ["sim", str(tmp_path / "prog"), "--out", str(tmp_path / "sim.json"), "--quiet", *dataset]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "sim.json").exists() and not (tmp_path / "p2").exists()


def test_dataset_refusals_are_listed_in_the_table():
    assert_table_lists(["dataset-normalised-cifar", "dataset-event-frames-compile", "dataset-event-sim",
                        "dataset-unknown", "dataset-cifar-without-root", "dataset-npz-float", "dataset-npz-empty",
                        "dataset-npz-shapes", "dataset-wrong-size"])


def test_sweep_on_a_folder_of_samples(tmp_path, capsys):
    """`accel sweep --dataset DIR`: every point runs on the folder's images (the digits written there give the
    digits' accuracy and cycles), the journal tells the two datasets apart, and a changed sample is a new point;
    an unknown dataset is refused before any point runs."""
    from spikecore.accel.flows import sweep

    _, _, x, y = load_digits_split()
    folder = tmp_path / "samples"
    folder.mkdir()
    for i in range(6):
        np.savez(folder / f"s{i:02d}.npz", image=x[i].numpy(), label=np.int64(y[i]))
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text("name: tiny\nsamples: 6\ngrid:\n  lanes: [8]\n")
    on_digits, on_folder = sweep.load_sweep(spec_file), sweep.load_sweep(spec_file, str(folder))
    digits_task, folder_task = sweep.plan(on_digits)[0], sweep.plan(on_folder)[0]
    assert digits_task["id"] != folder_task["id"] and folder_task["dataset"] == str(folder)
    a, b = sweep.evaluate_point(digits_task), sweep.evaluate_point(folder_task)
    assert b["status"] == "ok" and b["samples"] == 6
    assert (a["accuracy"], a["cycles_mean"]) == (b["accuracy"], b["cycles_mean"])
    np.savez(folder / "s05.npz", image=x[9].numpy(), label=np.int64(y[9]))
    assert sweep.plan(sweep.load_sweep(spec_file, str(folder)))[0]["id"] != folder_task["id"]
    assert main(["sweep", str(spec_file), "--out", str(tmp_path / "out"), "--quiet", "--workers", "1",
                 "--dataset", str(folder)]) == 0
    assert (tmp_path / "out" / "sweep.csv").is_file()
    capsys.readouterr()
    assert main(["sweep", str(spec_file), "--out", str(tmp_path / "bad"), "--dataset", "mnist"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--dataset mnist: not one of" in err and "\n" not in err
    assert not (tmp_path / "bad").exists()
