"""Neurons (MLF K = 1..4, LIF, IF) and surrogates against hand-computed cases."""
import math

import pytest
import torch

from spikecore.models import IF, LIF, MLF, arctan, make_neuron, rectangle, sigmoid, triangle
from spikecore.models.surrogates import make_surrogate


def run(neuron, values):
    """Feed a scalar sequence ``values`` (T steps, one unit); return the spike counts as a list."""
    return neuron(torch.tensor(values, dtype=torch.float64).view(-1, 1)).view(-1).tolist()


def test_if_integrates_without_leak_and_fires_at_threshold():
    # u: 0.6, 1.2 -> fire, reset then 0.0, 1.0 -> fires because IF fires on u >= V_th
    assert run(IF(v_th=1.0), [0.6, 0.6, 0.0, 1.0]) == [0, 1, 0, 1]


def test_if_passes_spike_trains_unchanged():
    spikes = (torch.rand(6, 3, 5) < 0.5).double()
    assert torch.equal(IF(v_th=1.0)(spikes), spikes)


def test_lif_leak_half_as_in_lsn():
    # u: 0.8; 0.4 + 0.8 = 1.2 fire; 0 + 0.8; 0.4 + 0.3 = 0.7
    assert run(LIF(v_th=1.0, decay=0.5), [0.8, 0.8, 0.8, 0.3]) == [0, 1, 0, 0]


@pytest.mark.parametrize("levels, expected", [(1, 1), (2, 2), (3, 3), (4, 3)])
def test_mlf_levels_one_to_four_single_step(levels, expected):
    # thresholds 0.6, 1.6, 2.6, 3.6: an input of 3.0 crosses the first three
    assert run(MLF(levels=levels), [3.0]) == [expected]


def test_mlf_four_levels_reset_per_level():
    # step 1: u_k = 3.0 fires levels 1..3; step 2: those reset to 0 + 0.7 (level 1 fires),
    # level 4 keeps 0.25 * 3.0 + 0.7 = 1.45 < 3.6
    assert run(MLF(levels=4), [3.0, 0.7]) == [3, 1]


def test_mlf_output_shape_is_input_shape():
    x = torch.randn(3, 2, 4, 5, 5)
    assert MLF(levels=3, v_th=0.6, width=1.0, decay=0.25)(x).shape == x.shape


def test_surrogate_derivatives_hand_values():
    v = torch.tensor([0.0, 0.4, 0.5, 1.0 / math.pi])
    assert rectangle(1.0).derivative(v).tolist() == [1.0, 1.0, 0.0, 1.0]
    assert torch.allclose(triangle(1.0).derivative(v), torch.tensor([1.0, 0.6, 0.5, 1 - 1 / math.pi]))
    # arctan, alpha = 2: 1 / (1 + (pi v)^2); at v = 1/pi that is 1/2
    assert torch.allclose(arctan(2.0).derivative(v)[[0, 3]], torch.tensor([1.0, 0.5]))
    # sigmoid, alpha = 4: 4 s (1 - s) with s = sigmoid(4 v); at 0 it is 1
    s = 1 / (1 + math.exp(-1.6))
    assert torch.allclose(sigmoid(4.0).derivative(v)[[0, 1]], torch.tensor([1.0, 4 * s * (1 - s)]))


@pytest.mark.parametrize("factory", [rectangle, triangle, arctan, sigmoid])
def test_surrogate_backward_is_its_derivative_and_forward_is_heaviside(factory):
    spike = factory()
    v = torch.linspace(-2, 2, 41, requires_grad=True)
    out = spike(v)
    out.sum().backward()
    assert torch.equal(out.detach(), (v.detach() > 0).float())
    assert torch.allclose(v.grad, spike.derivative(v.detach()))


def test_strict_and_inclusive_firing_at_threshold():
    v = torch.zeros(1)
    assert rectangle(strict=True)(v).item() == 0.0
    assert rectangle(strict=False)(v).item() == 1.0


def test_neuron_uses_given_surrogate_in_backward():
    x = torch.tensor([[1.4]], requires_grad=True)  # one step; u - V_th = 0.4
    LIF(v_th=1.0, decay=0.5, surrogate=triangle(1.0))(x).sum().backward()
    assert x.grad.item() == pytest.approx(0.6)
    x.grad = None
    LIF(v_th=1.0, decay=0.5, surrogate={"name": "arctan", "alpha": 2.0})(x).sum().backward()
    assert x.grad.item() == pytest.approx(1 / (1 + (math.pi * 0.4) ** 2))


def test_trace_returns_membranes_before_reset():
    membranes, spikes = LIF(v_th=1.0, decay=0.5).trace(torch.tensor([[0.8], [0.8], [0.8]]))
    assert membranes.view(-1).tolist() == pytest.approx([0.8, 1.2, 0.8])
    assert spikes.view(-1).tolist() == [0, 1, 0]


def test_make_neuron_and_errors_name_the_key():
    neuron = make_neuron({"type": "mlf", "levels": 2, "v_th": 0.5})
    assert isinstance(neuron, MLF) and neuron.thresholds == [0.5, 1.5]
    with pytest.raises(ValueError, match="neuron.type"):
        make_neuron({"type": "izhikevich"})
    with pytest.raises(ValueError, match="neuron.tau"):
        make_neuron({"type": "lif", "tau": 2.0})
    with pytest.raises(ValueError, match="surrogate"):
        make_surrogate({"name": "gaussian"})
    with pytest.raises(ValueError, match="width must be positive"):
        triangle(0.0)
