"""Fidelity to the seed papers: the energy counter (classifier, AC/MAC by input kind), the dormant sides,
each paper's defaults, the MLF paper's hybrid levels."""
import pytest
import torch
from torch import nn

from spikecore.models import MLF, ActivityMonitor, DigitsNet, SynapticOpsCounter, build_network
from spikecore.models.blocks import TimeDistributed
from spikecore.models.tdbn import TdBN

T, N = 2, 3


def count(net, x, **options):
    net.eval()
    with torch.no_grad(), SynapticOpsCounter(net, **options) as counter:
        net(x)
    return counter.ops


def test_resnet_classifier_is_counted_as_macs_on_the_pooled_features():
    """DST: the classifier's operations are MACs (its input is the global average pool of the spikes)."""
    net = build_network({"arch": "resnet", "block": "sew", "depth": 8, "width": 4, "timesteps": T, "in_channels": 1})
    ops = count(net, torch.rand(N, 1, 8, 8))
    assert ops.per_layer["classifier"] == (0.0, T * N * 16 * 10)  # 16 channels x 10 classes per image and step
    assert ops.per_layer["stem_conv"][0] == 0 and ops.per_layer["stem_conv"][1] > 0  # pixels: MACs


def test_ac_or_mac_follows_the_layer_input_kind_not_the_batch_values():
    """A K = 3 MLF layer's counts cost MACs even when a batch's counts are all 0/1; K = 1 spikes cost ACs."""
    net = build_network({"arch": "vgg", "layers": [4, 4], "image_size": 4, "in_channels": 1, "timesteps": T,
                         "levels": [1, 1, 3], "fc_hidden": [5]})
    x = torch.zeros(N, 1, 4, 4)  # silent: every neuron outputs 0, which is "binary" by value (pixels: real)
    ops = count(net, x, input_kind="real")
    assert ops.per_layer["features.3"] == (0.0, 0.0)        # K = 1 spikes: ACs, and none fired
    assert ops.per_layer["classifier"] == (0.0, T * N * 5 * 10)  # K = 3 counts: dense MACs, though all 0
    assert ops.per_layer["features.0"] == (0.0, T * N * 4 * (4 * 4 + 8 * 6 + 4 * 9))  # pixels: MACs
    assert count(net, x, multivalued="repeated_ac").per_layer["classifier"] == (0.0, 0.0)  # counts 0: no AC


def test_digits_network_layers_are_counted():
    net = DigitsNet(levels=[1, 3], timesteps=T)
    ops = count(net, torch.randint(0, 17, (N, 1, 8, 8)))
    assert ops.per_layer["conv0"] == (0.0, T * N * 16 * (4 * 4 + 24 * 6 + 36 * 9))  # pixels / 16: MACs
    assert ops.per_layer["conv1"][1] == 0.0                                     # K = 1 spikes: ACs only
    assert ops.per_layer["fc"] == (0.0, T * N * 32 * 16 * 10)                   # K = 3 counts: dense MACs


def test_network_input_kind_can_be_given():
    net = nn.Sequential(TimeDistributed(nn.Conv2d(1, 2, 3, padding=1, bias=False)))
    frames = torch.zeros(1, 1, 1, 3, 3)
    frames[0, 0, 0, 1, 1] = 1
    assert (count(net, frames).ac, count(net, frames, input_kind="real").mac) == (18.0, 2 * (4 * 4 + 4 * 6 + 9))
    with pytest.raises(ValueError, match="^input_kind"):
        SynapticOpsCounter(net, input_kind="pixels")


def test_dormant_units_split_into_the_mlf_papers_two_sides():
    net = nn.Sequential(MLF(levels=2))  # windows [0.1, 1.1] and [1.1, 2.1]
    x = torch.tensor([0.0, 0.5, 1.7, 3.0, -1.0]).view(1, 5)
    with ActivityMonitor(net) as monitor:
        net(x)
    stats = monitor.layers["0"]
    assert stats.dormant_low_ratio == pytest.approx(2 / 5)    # 0.0 and -1.0: left of h_1 (dormant*)
    assert stats.dormant_high_ratio == pytest.approx(1 / 5)   # 3.0: right of every window (dormant)
    assert stats.dormant_ratio == pytest.approx(3 / 5)
    assert set(monitor.report()["0"]) >= {"dormant_high_ratio", "dormant_low_ratio"}


def test_each_block_kind_defaults_to_its_papers_settings():
    resnet = {"arch": "resnet", "depth": 8, "width": 4, "timesteps": T}
    ms = build_network({**resnet, "block": "ms"})
    neuron = ms.blocks[0].sn_in  # MS-ResNet Table VII: LIF, V_th 0.5, tau_mem 0.25, a = 1, fires on u > V_th
    assert (neuron.levels, neuron.v_th, neuron.decay, neuron.spike.parameter, neuron.spike.strict) == \
        (1, 0.5, 0.25, 1.0, True)
    dual = build_network({**resnet, "block": "dual"})
    spike = dual.blocks[0].sn2.spike  # DST Appendix C.3: arctan, alpha = 2; IF fires on u >= V_th
    assert (spike.function.__name__, spike.parameter, spike.strict) == ("ArctanSpike", 2.0, False)
    lsn = build_network({**resnet, "block": "lsn"})  # LSN: plain BN (the paper names no tdBN)
    assert isinstance(lsn.blocks[0].excitatory[0].bn1.module, nn.BatchNorm2d)
    assert isinstance(build_network({**resnet, "block": "ds"}).blocks[0].path.bn1, TdBN)


def test_hybrid_levels_four_after_the_addition_three_inside_the_path():
    """MLF paper Appendix E: K = 4 where the shortcut is added, K = 3 elsewhere."""
    net = build_network({"arch": "resnet", "block": "spiking", "depth": 14, "width": 4, "timesteps": T,
                         "levels": {"plain": 3, "added": 4}})
    assert net.stem_neuron.levels == 3
    assert all((b.path.sn1.levels, b.sn_out.levels) == (3, 4) for b in net.blocks)
    mixed = build_network({"arch": "resnet", "block": ["spiking", "ds", "spiking"], "depth": 8, "width": 4,
                           "levels": [3, {"plain": 3, "added": 4}, 2, {"plain": 1, "added": 2}]})
    assert (mixed.blocks[1].sn_out.levels, mixed.blocks[2].path.sn1.levels, mixed.blocks[2].sn_out.levels) == (2, 1, 2)
    with pytest.raises(ValueError, match="^levels: a hybrid entry"):
        build_network({"arch": "resnet", "block": "spiking", "depth": 8, "levels": {"plain": 3, "add": 4}})
    with pytest.raises(ValueError, match="^levels: hybrid"):
        build_network({"arch": "vgg", "layers": [4], "image_size": 4, "levels": {"plain": 3, "added": 4}})
