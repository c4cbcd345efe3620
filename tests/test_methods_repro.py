"""Small-scale reproductions of the papers' claims, measured on the real blocks and networks."""
import math

import torch

from spikecore.models import ActivityMonitor, DSBasicBlock, LIF, SpikingBasicBlock, build_network
from spikecore.models.metrics import dormant_mask

V_TH, A = 0.6, 1.0


def phi(z):
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def test_theorem_1_monte_carlo_on_real_blocks():
    """MLF paper Theorem 1 (K = 1): P* < P, and ~41 % of shortcut spikes lost by spiking ResNet."""
    torch.manual_seed(0)
    channels = 32
    x = (torch.rand(1, 64, channels, 16, 16) < 0.5).float()  # T = 1: no residual membrane, as in the proof
    resnet = SpikingBasicBlock(channels, channels, neuron=LIF)
    ds = DSBasicBlock(channels, channels, neuron=LIF)
    ds.path.load_state_dict(resnet.path.state_dict())
    with torch.no_grad():
        y = resnet.residual(x)  # tdBN output, N(0, V_th^2) per channel
        assert abs(float(y.std()) - V_TH) < 0.01
        spike = x == 1
        # dormant *because of* the shortcut spike: right of the window [V_th - a/2, V_th + a/2]
        p = (dormant_mask(resnet.sn_out, y + x) & (y + x > V_TH))[spike].float().mean().item()
        p_star = (dormant_mask(ds.sn_out, y) & (y > V_TH))[spike].float().mean().item()
        ones, zeros = torch.ones_like(x), torch.zeros_like(x)
        lost = (resnet.join(y, ones) == resnet.join(y, zeros)).float().mean().item()
        lost_ds = (ds.join(y, ones) == ds.join(y, zeros)).float().mean().item()
    assert abs(p - (1 - phi((V_TH + A / 2 - 1) / V_TH))) < 0.01        # Eq. C.2: 0.434
    assert abs(p_star - (1 - phi((V_TH + A / 2) / V_TH))) < 0.01       # Eq. C.3: 0.033
    assert p_star < p
    assert abs(lost - (1 - (phi(1) - phi((V_TH - 1) / V_TH)))) < 0.02  # Eq. C.5: 41 % not mapped
    assert lost_ds == 0.0


def mean_dormant_ratio(levels: int) -> float:
    torch.manual_seed(0)
    net = build_network({"arch": "resnet", "block": "spiking", "depth": 8, "width": 8, "timesteps": 4,
                         "levels": levels})
    with ActivityMonitor(net) as monitor, torch.no_grad():
        net(torch.rand(8, 3, 16, 16) * 2)
    return monitor.mean_dormant_ratio()


def test_mlf_reduces_dormant_units():
    """MLF paper Fig. 4a: K = 3 leaves fewer dormant units than K = 1 (same weights, same input)."""
    k1, k3 = mean_dormant_ratio(1), mean_dormant_ratio(3)
    assert k3 < k1
