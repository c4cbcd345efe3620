"""Networks from dicts, and the metrics (firing rate, dormant ratio, AC/MAC, energy, gradients)."""
import pytest
import torch
from torch import nn

from spikecore.models import ActivityMonitor, GradientMonitor, SynapticOpsCounter, build_network, energy_pj
from spikecore.models.blocks import TimeDistributed
from spikecore.models.metrics import dormant_mask, resnet_stages
from spikecore.models.neurons import MLF


@pytest.mark.parametrize("block", ["spiking", "ds", "ms", "sew", "lsn", "dual"])
def test_resnet8_variants_run_and_backpropagate(block):
    net = build_network({"arch": "resnet", "block": block, "depth": 8, "width": 4, "timesteps": 2})
    assert len(net.blocks) == 3 and net.classifier.in_features == 16
    out = net(torch.rand(2, 3, 8, 8))
    (sum(out) if isinstance(out, tuple) else out).sum().backward()
    assert net.stem_conv.module.weight.grad is not None


def test_widths_and_depth():
    net = build_network({"arch": "resnet", "block": "ds", "depth": 14, "width": "middle"})
    assert len(net.blocks) == 6 and net.stem_conv.module.out_channels == 32 and net.classifier.in_features == 128


def test_hybrid_levels_per_layer():
    net = build_network({"arch": "resnet", "block": "ds", "depth": 8, "width": 4, "levels": [1, 2, 3, 4]})
    assert net.stem_neuron.levels == 1
    assert [b.sn_out.levels for b in net.blocks] == [2, 3, 4]
    vgg = build_network({"arch": "vgg", "layers": [4, "M", 8], "fc_hidden": [16], "image_size": 8, "levels": [3, 1, 2]})
    assert [m.levels for m in vgg.modules() if isinstance(m, MLF)] == [3, 1, 2]


def test_dual_stream_modes():
    net = build_network({"arch": "resnet", "block": "dual", "depth": 8, "width": 4, "timesteps": 2})
    x = torch.rand(2, 3, 8, 8)
    spike_logits, acc_logits = net(x)
    net.set_stream_mode("fsnn")
    assert torch.equal(net(x), spike_logits)
    net.set_stream_mode("dsnn")
    assert torch.equal(net(x), acc_logits)


def test_sequence_input_and_sew7b():
    net = build_network({"arch": "sew7b", "width": 4, "connect": "IAND"})
    assert net(torch.rand(3, 2, 2, 128, 128)).shape == (2, 11)


@pytest.mark.parametrize("config, key", [
    ({"arch": "resnet", "block": "ds", "depth": 10}, "depth"),
    ({"arch": "resnet", "block": "foo"}, "block"),
    ({"arch": "resnet", "block": "ds", "width": "huge"}, "width"),
    ({"arch": "resnet", "block": "ds", "levels": [1, 2]}, "levels"),
    ({"arch": "resnet", "block": "sew", "levels": 2}, "levels"),
    ({"arch": "resnet", "block": "ds", "connect": "AND"}, "connect"),
    ({"arch": "resnet", "block": "ds", "neuron": {"type": "lif", "tau": 2}}, "neuron.tau"),
    ({"arch": "resnet", "block": "ds", "dropout": 0.1}, "dropout"),
    ({"arch": "vgg", "layers": "VGG16"}, "layers"),
    ({"arch": "transformer"}, "arch"),
    ({"arch": "resnet", "block": "ds", "norm": "layer"}, "norm"),
])
def test_bad_config_names_the_key(config, key):
    with pytest.raises(ValueError, match=f"^{key}"):
        build_network(config)


def test_activity_monitor_hand_case():
    net = nn.Sequential(MLF(levels=2))  # thresholds 0.6, 1.6, rectangle windows [0.1, 1.1] and [1.1, 2.1]
    x = torch.tensor([0.0, 0.5, 1.7, 3.0]).view(1, 4)
    with ActivityMonitor(net) as monitor:
        net(x)
    stats = monitor.layers["0"]
    assert stats.firing_rate == pytest.approx((0 + 0 + 2 + 2) / 4)
    assert stats.active_rate == pytest.approx(0.5)
    assert stats.dormant_ratio == pytest.approx(2 / 4)  # 0.0 (left of every window) and 3.0 (right of all)
    assert dormant_mask(net[0], x).tolist() == [[True, False, False, True]]


def test_synaptic_ops_split_and_energy():
    conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    net = nn.Sequential(TimeDistributed(conv))
    spikes = torch.zeros(1, 1, 1, 3, 3)
    spikes[0, 0, 0, 1, 1] = 1   # the centre reaches all 9 outputs of each of 2 channels
    spikes[0, 0, 0, 0, 0] = 1   # a corner reaches 4 outputs per channel
    with SynapticOpsCounter(net) as counter:
        net(spikes)
    assert (counter.ops.ac, counter.ops.mac) == (26.0, 0.0)
    with SynapticOpsCounter(net) as counter:
        net(2 * spikes)  # multi-valued: dense MACs, each input times its reach (corner 4, edge 6, centre 9)
    assert counter.ops.mac == 2 * (4 * 4 + 4 * 6 + 1 * 9) and counter.ops.ac == 0
    with SynapticOpsCounter(net, multivalued="repeated_ac") as counter:
        net(2 * spikes)
    assert counter.ops.ac == 52.0
    assert energy_pj(counter.ops) == pytest.approx(0.9 * 52)


def test_gradient_monitor_per_stage():
    net = build_network({"arch": "resnet", "block": "ms", "depth": 8, "width": 4, "timesteps": 2})
    with GradientMonitor(resnet_stages(net)) as monitor:
        net(torch.rand(2, 3, 8, 8)).sum().backward()
    assert sorted(monitor.mean_abs) == ["block0", "block1", "block2"]
    assert all(value > 0 for value in monitor.mean_abs.values())
