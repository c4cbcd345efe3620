"""Residual blocks: joins, truth tables, identity mappings and shapes, on hand-computed cases."""
import itertools

import pytest
import torch

from spikecore.models import (DSBasicBlock, DualStreamBlock, LIF, LSNBlock, MSBasicBlock, SEWBlock, SpikingBasicBlock,
                    dual_stream_loss, logic_join, lsn_join)
from spikecore.models.blocks import lsn_neuron

BITS = list(itertools.product([0.0, 1.0], repeat=2))
TRUTH = {  # g(s, x) for (s, x) in BITS = (0,0), (0,1), (1,0), (1,1)   (DST Table 1)
    "ADD": [0, 1, 1, 2], "AND": [0, 0, 0, 1], "IAND": [0, 1, 0, 0], "OR": [0, 1, 1, 1], "XOR": [0, 1, 1, 0],
}


@pytest.mark.parametrize("connect", sorted(TRUTH))
def test_logic_join_truth_tables(connect):
    s, x = (torch.tensor(col) for col in zip(*BITS))
    assert logic_join(connect, s, x).tolist() == TRUTH[connect]


# LSN Table 5: (X, E, I) -> X'
LSN_TRUTH = {(0, 0, 0): 0, (0, 0, 1): 0, (0, 1, 0): 1, (0, 1, 1): 0,
             (1, 0, 0): 1, (1, 0, 1): 0, (1, 1, 0): 1, (1, 1, 1): 1}


def test_lsn_join_truth_table_and_boolean_form():
    for (x, e, i), expected in LSN_TRUTH.items():
        assert lsn_join(torch.tensor(float(x)), torch.tensor(float(e)), torch.tensor(float(i))).item() == expected
        boolean = (not (e ^ i) and x) or (e and not i)  # X' = (NOT(E XOR I) AND X) OR (E AND NOT I)
        assert int(bool(boolean)) == expected


def test_lsn_join_total_derivative_matches_table_5():
    # E and I as functions of X with chosen surrogate slopes dE/dX = 0.3, dI/dX = 0.7: the value stays
    # binary, the gradient carries the slope. Table 5's dX'/dX column in those symbols:
    d_e, d_i = 0.3, 0.7
    table = {(0, 0, 0): 1 + d_e, (0, 0, 1): 0, (0, 1, 0): d_e - d_i, (0, 1, 1): 1 - d_i,
             (1, 0, 0): 1 - d_i, (1, 0, 1): d_e - d_i, (1, 1, 0): 0, (1, 1, 1): 1 + d_e}
    for (x0, e0, i0), expected in table.items():
        x = torch.tensor(float(x0), requires_grad=True)
        e = e0 + d_e * (x - x.detach())
        i = i0 + d_i * (x - x.detach())
        lsn_join(x, e, i).backward()
        assert x.grad.item() == pytest.approx(expected), (x0, e0, i0)


def test_lsn_partial_derivatives_from_eq_8():
    # dX'/dE = 1 - X - I + 2 X I and dX'/dI = -X - E + 2 X E (Eq. 8; see docs/methods.md for Table 5)
    for x0, e0, i0 in LSN_TRUTH:
        x, e, i = (torch.tensor(float(v), requires_grad=True) for v in (x0, e0, i0))
        lsn_join(x, e, i).backward()
        assert e.grad.item() == 1 - x0 - i0 + 2 * x0 * i0
        assert i.grad.item() == -x0 - e0 + 2 * x0 * e0


def test_activation_after_vs_before_addition():
    # residual pre-activation 0.3 plus a shortcut spike, LIF V_th = 0.6, one step
    res, shortcut = torch.full((1, 1, 1, 1, 1), 0.3), torch.ones(1, 1, 1, 1, 1)
    spiking = SpikingBasicBlock(1, 1, neuron=LIF)
    ds = DSBasicBlock(1, 1, neuron=LIF)
    assert spiking.join(res, shortcut).item() == 1.0   # SN(0.3 + 1) = 1
    assert ds.join(res, shortcut).item() == 1.0        # SN(0.3) + 1 = 0 + 1
    big = torch.full_like(res, 0.9)
    assert spiking.join(big, shortcut).item() == 1.0   # the shortcut spike is lost: SN(1.9) = 1
    assert ds.join(big, shortcut).item() == 2.0        # SN(0.9) + 1 = 2: it is kept


def test_ms_block_zero_init_is_identity_on_membranes():
    block = MSBasicBlock(4, 4)
    assert torch.all(block.path.bn2.weight == 0)
    membrane = torch.randn(3, 2, 4, 6, 6)
    assert torch.equal(block(membrane), membrane)


@pytest.mark.parametrize("join", ["IF", "IAND", "OR", "XOR"])
def test_dual_stream_zero_init_is_identity_on_both_streams(join):
    torch.manual_seed(0)
    blocks = [DualStreamBlock(4, 4, join=join, zero_init_residual=True) for _ in range(3)]
    o = (torch.rand(4, 2, 4, 5, 5) < 0.4).float()
    a = o.clone()
    streams = (o, a)
    for block in blocks:
        streams = block(streams)
    assert torch.equal(streams[0], o) and torch.equal(streams[1], a)


def test_dual_stream_accumulates_residual_spikes():
    torch.manual_seed(1)
    block = DualStreamBlock(3, 3, join="IAND")
    o = (torch.rand(2, 2, 3, 4, 4) < 0.5).float()
    a = 2 * o
    o_next, a_next = block((o, a))
    s = block.sn2(block.path(o))
    assert torch.equal(a_next, s + a)                      # a_l = s_l + a_{l-1}
    assert torch.equal(o_next, (1 - s) * o)                # IAND
    assert block((o, None))[1] is None                     # FSNN: the AAP is skipped


def test_dual_stream_loss_is_sum_of_both():
    logits_s, logits_a, y = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    ce = torch.nn.functional.cross_entropy
    assert dual_stream_loss(logits_s, logits_a, y).item() == pytest.approx(ce(logits_s, y).item() + ce(logits_a, y).item())


def test_lsn_block_uses_paper_neuron_and_stays_binary():
    neuron = lsn_neuron()
    assert (neuron.v_th, neuron.decay, repr(neuron.spike)) == (1.0, 0.5, "triangle(1, strict=True)")
    out = LSNBlock(3, 6, stride=2)((torch.rand(2, 2, 3, 8, 8) < 0.5).float())
    assert out.shape == (2, 2, 6, 4, 4) and set(out.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("cls", [SpikingBasicBlock, DSBasicBlock, MSBasicBlock, SEWBlock, LSNBlock])
def test_downsampling_shapes(cls):
    assert cls(3, 8, stride=2)(torch.rand(2, 2, 3, 8, 8)).shape == (2, 2, 8, 4, 4)


def test_bad_join_names_key():
    with pytest.raises(ValueError, match="connect"):
        SEWBlock(2, 2, connect="NAND")
    with pytest.raises(ValueError, match="join"):
        DualStreamBlock(2, 2, join="ADD")
