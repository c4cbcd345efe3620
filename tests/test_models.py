"""Neurons, surrogate and tdBN against hand-computed cases; the golden integer step."""
import math

import pytest
import torch

from spikecore.models import MLF, LIF, TdBN, DigitsNet, neuron_step_int, mlf_thresholds, rectangle


def test_mlf_thresholds_default():
    assert mlf_thresholds(3, 0.6, 1.0) == pytest.approx([0.6, 1.6, 2.6])


def test_mlf_hand_computed_sequence():
    # one neuron, K=3, constant input 1.0: hand-computed with u_k <- 0.25 u_k (1 - o_k) + x, o_k = u_k > th_k
    x = torch.full((4, 1), 1.0)
    out = MLF(levels=3)(x)
    # t0: u = 1,1,1 -> fires level 1 only (1 > 0.6) -> 1
    # t1: u1 = 0 + 1 = 1 (reset) -> fire; u2 = 0.25 + 1 = 1.25; u3 = 1.25 -> count 1
    # t2: u1 = 1 -> fire; u2 = 0.3125 + 1 = 1.3125; -> count 1
    # t3: u1 = 1 fire; u2 = 1.328125 -> count 1
    assert out.squeeze(1).tolist() == [1.0, 1.0, 1.0, 1.0]
    big = MLF(levels=3)(torch.full((2, 1), 3.0))
    assert big.squeeze(1).tolist() == [3.0, 3.0]  # 3 > 2.6: all levels, all reset


def test_mlf_strict_threshold():
    assert MLF(levels=1)(torch.tensor([[0.6]])).item() == 0.0
    assert MLF(levels=1)(torch.tensor([[0.6000001]])).item() == 1.0


def test_lif_is_single_level_mlf():
    x = torch.randn(6, 5, 3)
    assert torch.equal(LIF()(x), MLF(levels=1)(x))


def test_rectangle_surrogate_gradient():
    v = torch.tensor([-0.6, -0.4, 0.0, 0.49, 0.5, 0.7], requires_grad=True)
    rectangle(1.0)(v).sum().backward()
    assert v.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    v2 = torch.tensor([0.2, 0.3], requires_grad=True)
    rectangle(0.5)(v2).sum().backward()
    assert v2.grad.tolist() == [2.0, 0.0]


def test_mlf_gradient_flows_through_time():
    x = torch.full((3, 1), 0.5, requires_grad=True)
    MLF(levels=2)(x).sum().backward()
    assert x.grad.abs().sum() > 0


def test_tdbn_matches_authors_formula_eval_and_train():
    torch.manual_seed(0)
    bn = TdBN(4, v_th=0.6, alpha=1.0, eps=1e-5)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5, -1.0]))
        bn.bias.copy_(torch.tensor([0.0, 0.1, -0.2, 0.3]))
    x = torch.randn(3, 5, 4, 2, 2)
    y = bn(x)  # training: batch statistics over T, N, H, W; biased variance; eps outside sqrt
    flat = x.transpose(0, 2).reshape(4, -1)
    mean, var = flat.mean(1), flat.var(1, unbiased=False)
    expect = 0.6 * (x - mean.view(1, 1, 4, 1, 1)) / (var.sqrt().view(1, 1, 4, 1, 1) + 1e-5)
    expect = expect * bn.weight.view(1, 1, 4, 1, 1) + bn.bias.view(1, 1, 4, 1, 1)
    assert torch.allclose(y, expect, atol=1e-6)
    n = flat.shape[1]
    assert torch.allclose(bn.running_var, 0.9 + 0.1 * var * n / (n - 1), atol=1e-6)
    bn.eval()
    a, b = bn.affine()
    assert torch.allclose(bn(x), x * a.view(1, 1, 4, 1, 1) + b.view(1, 1, 4, 1, 1), atol=1e-6)


def test_neuron_step_int_hand_computed():
    u = torch.tensor([[-7], [9], [0]])         # K=3 levels, one neuron
    th = torch.tensor([[5], [10], [20]])
    x = torch.tensor([4])
    u_next, count, sat = neuron_step_int(u, x, th, shift=2, bits=8)
    # v = (-7 >> 2) + 4 = -2 + 4 = 2 ; (9 >> 2) + 4 = 6 ; 0 + 4 = 4 ; none above thresholds
    assert u_next.squeeze(1).tolist() == [2, 6, 4] and count.item() == 0 and sat == 0
    u_next, count, sat = neuron_step_int(torch.tensor([[20], [0], [0]]), torch.tensor([5]), th, 2, 8)
    # v = 5 + 5 = 10 > 5 fires (reset to 0); 5 not > 10; 5 not > 20 -> equal-to-threshold does not fire
    assert u_next.squeeze(1).tolist() == [0, 5, 5] and count.item() == 1
    u_next, count, sat = neuron_step_int(torch.tensor([[100]]), torch.tensor([120]), torch.tensor([[200]]), 0, 8)
    assert u_next.item() == 127 and sat == 1 and count.item() == 0  # saturates at 2^7 - 1


def test_digits_net_shapes():
    net = DigitsNet()
    with torch.no_grad():
        logits, spikes = net(torch.randint(0, 17, (5, 1, 8, 8)), return_spikes=True)
    assert logits.shape == (5, 10)
    assert spikes[0].shape == (4, 5, 16, 8, 8) and spikes[1].shape == (4, 5, 32, 4, 4)
    assert spikes[0].max() <= 3 and spikes[0].min() >= 0
    assert math.isclose(float(spikes[0].round().sum()), float(spikes[0].sum()))
