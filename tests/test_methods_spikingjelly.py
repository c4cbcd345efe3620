"""Peer cross-check: SpikingJelly's LIF/IF nodes, surrogates and SEW blocks give exactly our spikes.

Matched settings (docs/methods.md): SpikingJelly's LIF with ``decay_input=False, v_reset=0.0`` computes
``H = V - V / tau + X`` and resets ``V = H (1 - S)``: our ``u = decay * u * (1 - o) + x`` with
``decay = 1 - 1 / tau``; it fires on ``H >= V_th``, our ``strict=False``. SpikingJelly's ``sew_resnet`` imports
``load_state_dict_from_url`` from torchvision at import time only (for pretrained weights we never use);
torchvision has no CPU build here, so that one name is provided from ``torch.hub`` when torchvision is absent.
"""
import pytest
import torch

from bench.peers import import_sew_resnet
from spikecore.models import IF, LIF, SEWBlock, arctan, rectangle, sigmoid

from spikingjelly.activation_based import functional, neuron, surrogate


def random_current(shape, seed):
    generator = torch.Generator().manual_seed(seed)
    return 1.5 * torch.randn(shape, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("tau", [2.0, 4.0 / 3.0])
def test_lif_matches_spikingjelly(tau):
    x = random_current((16, 8, 50), seed=0)
    theirs = neuron.LIFNode(tau=tau, decay_input=False, v_threshold=1.0, v_reset=0.0, step_mode="m")
    ours = LIF(v_th=1.0, decay=1 - 1 / tau, surrogate=rectangle(1.0, strict=False))
    assert torch.equal(ours(x), theirs(x))


def test_if_matches_spikingjelly():
    x = random_current((16, 8, 50), seed=1)
    theirs = neuron.IFNode(v_threshold=1.0, v_reset=0.0, step_mode="m")
    assert torch.equal(IF(v_th=1.0)(x), theirs(x))


@pytest.mark.parametrize("ours, theirs", [(sigmoid(4.0, strict=False), surrogate.Sigmoid(alpha=4.0)),
                                          (arctan(2.0, strict=False), surrogate.ATan(alpha=2.0))])
def test_surrogate_gradients_match_spikingjelly(ours, theirs):
    v = torch.linspace(-3, 3, 61, dtype=torch.float64, requires_grad=True)
    theirs(v).sum().backward()
    reference = v.grad.clone()
    v.grad = None
    ours(v).sum().backward()
    assert torch.allclose(v.grad, reference)


@pytest.mark.parametrize("connect", ["ADD", "AND", "IAND"])
@pytest.mark.parametrize("stride", [1, 2])
def test_sew_block_matches_spikingjelly(connect, stride):
    sew_resnet = import_sew_resnet()
    from spikingjelly.activation_based import layer
    torch.manual_seed(0)
    in_channels, out_channels = 4, 4 if stride == 1 else 8
    downsample = None
    if stride != 1:
        downsample = torch.nn.Sequential(sew_resnet.conv1x1(in_channels, out_channels, stride),
                                         layer.BatchNorm2d(out_channels))
    theirs = sew_resnet.BasicBlock(in_channels, out_channels, stride, downsample=downsample, cnf=connect,
                                   spiking_neuron=neuron.IFNode, v_threshold=1.0, v_reset=0.0)
    functional.set_step_mode(theirs, "m")
    ours = SEWBlock(in_channels, out_channels, stride, neuron=lambda: IF(v_th=1.0), norm="bn", connect=connect)
    ours.path.conv1.module.weight.data.copy_(theirs.conv1.weight)
    ours.path.conv2.module.weight.data.copy_(theirs.conv2.weight)
    if stride != 1:
        ours.shortcut[0].module.weight.data.copy_(theirs.downsample[0].weight)
    for module in (ours, theirs):
        module.double().train()
    x = (torch.rand(4, 3, in_channels, 8, 8, dtype=torch.float64) < 0.4).double()
    expected = theirs(x)
    assert expected.abs().sum() > 0
    assert torch.equal(ours(x), expected)
