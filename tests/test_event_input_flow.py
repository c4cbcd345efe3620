"""Event-camera networks reach the core (issue 19, item 3): trained by `accel train` on DVS128-Gesture-format
recordings (written here), compiled for a core with `event_input`, and verified on the recordings' count frames,
a different frame each timestep, with `--dataset dvs-gesture`."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from spikecore import api
from spikecore.accel.contract.inputs import check_frames, input_frames, input_words
from spikecore.accel.contract.layouts import input_layout
from spikecore.accel.flows.cli import main
from spikecore.accel.flows.verify import verify
from spikecore.errors import UserError
from spikecore.models.datasets import DVSGesture
from spikecore.sim.engine import simulate_batch

from bad_input import assert_table_lists
from test_datasets import _write_gesture

ARCH = """\
name: dvs-small
lanes: 8
weight_bits: 8
acc_bits: 24
membrane_bits: 24
input_bits: 5
max_levels: 4
max_timesteps: 16
multivalue: bitserial
event_regions: 6
clock_mhz: 24
event_input: true
memories: {layers: 64, pointers: 16384, synapses: 131072, weights: 4096, params: 128, state: 8192, events: 4096,
           inputs: 4096, trace: 65536}
"""
#: Binning of the training run and of the verification: 4 timesteps of 1 ms, 128x128 pixels to 16x16.
DATASET = "{{name: dvs_gesture, root: {root}, timesteps: 4, dt_ms: 1, size: 16}}"


def write_recordings(root, seed=0):
    """Users 1 and 2 (training) and 24 (test), four gestures each: random events over 4 ms, several landing on
    the same pixel of a 16x16 frame in a millisecond (counts above 1)."""
    rng = np.random.default_rng(seed)
    for user, light in ((1, "fluorescent"), (2, "led"), (24, "lab")):
        events, rows = [], []
        for gesture in range(4):
            start, n = 10000 * (gesture + 1), 300
            t = np.sort(rng.integers(start, start + 4000, n))
            x, y, p = rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n)
            events += list(zip(t.tolist(), x.tolist(), y.tolist(), p.tolist()))
            rows.append((1 + (gesture + user) % 11, start, start + 5000))
        _write_gesture(root, user, light, events, rows)


def train_and_compile(folder, root, model: str):
    config = folder / "train.yaml"
    config.write_text(f"dataset: {DATASET.format(root=root)}\nmodel: {model}\n"
                      f"train: {{epochs: 1, optimizer: adam, lr: 0.005, batch_size: 8}}\n")
    assert main(["train", str(config), "--out", str(folder / "run"), "--quiet"]) == 0
    (folder / "arch.yaml").write_text(ARCH)
    checkpoint = str(folder / "run" / "checkpoint.pt")
    assert main(["compile", checkpoint, "--arch", str(folder / "arch.yaml"), "--out", str(folder / "prog")]) == 0
    arch = api.load_arch(folder / "arch.yaml")
    return checkpoint, arch, api.load_program(folder / "prog", arch)


@pytest.fixture(scope="module")
def gesture(tmp_path_factory):
    root = tmp_path_factory.mktemp("gesture")
    (root / "DvsGesture").mkdir()
    write_recordings(root / "DvsGesture")
    return root


@pytest.fixture(scope="module")
def gesture_vgg(gesture, tmp_path_factory):
    folder = tmp_path_factory.mktemp("vgg")
    return (folder,) + train_and_compile(folder, gesture, "{arch: vgg, layers: [4, A, A], neuron: {type: lif, "
                                                          "v_th: 0.01}}")


@pytest.fixture(scope="module")
def gesture_ds_resnet(gesture, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ds")
    return (folder,) + train_and_compile(folder, gesture, "{arch: resnet, block: ds, depth: 8, width: 4, stages: 1, "
                                                          "neuron: {type: mlf, levels: 2, v_th: 0.05}, norm: bn}")


def test_the_checkpoint_and_program_record_the_event_input(gesture_vgg):
    _, checkpoint, arch, program = gesture_vgg
    record = torch.load(checkpoint, weights_only=True)["input"]
    assert record == {"dataset": "dvs_gesture", "shape": [2, 16, 16], "timesteps": 4, "encoding": "events",
                      "max": None, "why": None}
    assert program.meta["input"] == {"encoding": "events",
                                     "dataset": {"name": "dvs_gesture", "timesteps": 4, "dt_ms": 1.0, "size": 16}}
    assert program.input_max == 31 == (1 << arch.input_bits) - 1 and program.timesteps == 4


def test_the_test_frames_are_the_training_loaders_clipped_at_the_input_range(gesture, gesture_vgg):
    _, _, arch, program = gesture_vgg
    frames, labels = api.load_images(dataset="dvs-gesture", root=gesture, program=program)
    loader = DVSGesture(gesture, train=False, timesteps=4, dt_ms=1, size=16)
    assert frames.dtype == torch.int64 and tuple(frames.shape) == (4, 4, 2, 16, 16)
    assert torch.equal(frames, torch.stack([loader[i][0] for i in range(4)]).to(torch.int64).clamp(max=31))
    assert labels.tolist() == [int(loader[i][1]) for i in range(4)]
    assert int(frames.max()) > 1                                   # counts, not spikes
    assert not torch.equal(frames[:, 0], frames[:, 1])             # a different frame each timestep


@pytest.mark.parametrize("network", ["gesture_vgg", "gesture_ds_resnet"])
def test_golden_equals_the_simulator_on_event_frames(gesture, network, request):
    _, _, arch, program = request.getfixturevalue(network)
    frames, _ = api.load_images(dataset="dvs-gesture", root=gesture, program=program)
    sims = simulate_batch(program, arch, frames.numpy())
    report, golden = verify(program, arch, frames, None, sims)
    assert report["bit_exact"], report["mismatches"][:3]
    assert sum(int(s.sum()) for s in golden["spikes"]) > 100       # every stage has something to compare
    # the input scan follows the frames: the same frames in another timestep order take other spikes
    shuffled = frames[:, [3, 2, 1, 0]]
    assert not all(np.array_equal(a.logits, b.logits)
                   for a, b in zip(sims, simulate_batch(program, arch, shuffled.numpy())))


def test_accel_verify_on_event_frames_is_bit_and_cycle_exact(gesture, gesture_vgg):
    """Done-when of issue 19 (event input, the VGG): `accel verify --dataset dvs-gesture` on the RTL."""
    folder, _, _, _ = gesture_vgg
    assert main(["verify", str(folder / "prog"), "--arch", str(folder / "arch.yaml"), "--dataset", "dvs-gesture",
                 "--data-root", str(gesture), "--samples", "2", "--simulator", "icarus",
                 "--out", str(folder / "verify.json"), "--quiet"]) == 0
    report = json.loads((folder / "verify.json").read_text())
    assert report["bit_exact"] is True and report["cycle_exact"] is True and report["samples"] == 2


@pytest.mark.slow
def test_the_ds_resnet_on_event_frames_verifies_on_the_rtl(gesture, gesture_ds_resnet):
    """Done-when of issue 19 (event input, the DS-ResNet)."""
    folder, _, _, _ = gesture_ds_resnet
    assert main(["verify", str(folder / "prog"), "--arch", str(folder / "arch.yaml"), "--dataset", "dvs-gesture",
                 "--data-root", str(gesture), "--samples", "1", "--out", str(folder / "verify.json"),
                 "--quiet"]) == 0
    report = json.loads((folder / "verify.json").read_text())
    assert report["bit_exact"] is True and report["cycle_exact"] is True


def test_input_words_list_the_nonzero_values_by_timestep_then_index(gesture_vgg):
    _, _, arch, program = gesture_vgg
    frames = np.zeros((1, 4, program.n_inputs), np.int64)
    frames[0, 2, [9, 3]] = [5, 31]
    frames[0, 0, 511] = 1
    words = input_layout(arch).unpack(input_words(arch, input_frames(program, frames)[0]))
    assert words["timestep"].ravel().tolist() == [0, 2, 2]
    assert words["index"].ravel().tolist() == [511, 3, 9] and words["value"].ravel().tolist() == [1, 31, 5]


def test_frames_the_core_cannot_take_are_refused(gesture_vgg, digits_program, arch):
    _, _, event_arch, program = gesture_vgg
    full = np.ones((1, 4, program.n_inputs), np.int64)             # 512 events a timestep, 2048 in all: fits
    check_frames(program, event_arch, full)
    small = replace(event_arch, memories=replace(event_arch.memories, inputs=2047, events=511))
    with pytest.raises(UserError, match=r"^test: input 0 has 2048 input events, more than memories.inputs = 2047"):
        check_frames(program, small, full, "test")
    small = replace(small, memories=replace(small.memories, inputs=2048))
    with pytest.raises(UserError, match=r"input 0 has 512 input events at timestep 0, more than an event region "
                                        r"holds \(memories.events = 511\)"):
        check_frames(program, small, full)
    with pytest.raises(UserError, match=r"input 0 has values outside 0..31"):
        check_frames(program, event_arch, full * 32)
    moving = np.zeros((1, digits_program.timesteps, digits_program.n_inputs), np.int64)
    moving[0, 1, 5] = 3
    with pytest.raises(UserError, match=r"input 0 changes from one timestep to the next; frames need a core with "
                                        r"'event_input: true'"):
        check_frames(digits_program, arch, moving)


def test_an_event_network_needs_an_event_input_core(gesture_vgg, tmp_path, capsys):
    _, checkpoint, _, _ = gesture_vgg
    capsys.readouterr()
    assert main(["compile", checkpoint, "--out", str(tmp_path / "prog")]) == 2
    err = capsys.readouterr().err.strip()
    assert "trained on event frames (a different frame each timestep), which need a core with 'event_input: true'" \
        in err and "\n" not in err
    assert not (tmp_path / "prog").exists()


def test_event_refusals_are_listed_in_the_table():
    assert_table_lists(["dataset-event-static-core", "event-input-capacity"])


def test_event_datasets_are_refused_where_the_binning_is_unknown(gesture, gesture_vgg, tmp_path, capsys):
    """`accel sweep` has no Program to read the binning from; a Program whose recorded binning is not numbers
    (a hand-edited manifest) is refused naming the key; both in one line, exit status 2, nothing written."""
    folder, _, _, _ = gesture_vgg
    spec = tmp_path / "sweep.yaml"
    spec.write_text("name: tiny\nsamples: 2\ngrid:\n  lanes: [8]\n")
    capsys.readouterr()
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--dataset", "dvs-gesture",
                 "--data-root", str(gesture)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--dataset dvs-gesture: the recordings are binned as the Program of a network trained on them" in err
    assert "\n" not in err and not (tmp_path / "out").exists()
    edited = tmp_path / "prog"
    shutil.copytree(folder / "prog", edited)
    manifest = next(edited.glob("*.json"))
    data = json.loads(manifest.read_text())
    data["meta"]["input"]["dataset"]["dt_ms"] = "1; rm -rf /"
    manifest.write_text(json.dumps(data))
    assert main(["sim", str(edited), "--arch", str(folder / "arch.yaml"), "--dataset", "dvs-gesture",
                 "--data-root", str(gesture), "--out", str(tmp_path / "sim.json"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "meta.input.dataset.dt_ms = '1; rm -rf /' is not a positive number" in err and "\n" not in err
    assert not (tmp_path / "sim.json").exists()
