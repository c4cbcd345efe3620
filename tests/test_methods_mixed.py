"""Networks that mix block kinds per stage or per block (``block: [ds, sew, lsn]``): semantics, validation,
equality with the pure networks stage by stage, one training step, and the compiler."""
import pytest
import torch

from spikecore.models.blocks import DSBasicBlock, LSNBlock, SEWBlock
from spikecore.models.networks import build_network

BASE = {"arch": "resnet", "depth": 8, "width": 4, "stages": 3, "in_channels": 1, "classes": 10, "timesteps": 2}


def tiny(**config):
    torch.manual_seed(0)
    return build_network({**BASE, **config})


def test_mixed_resnet_equals_the_pure_networks_stage_by_stage():
    """Each stage of ``[ds, sew, lsn]`` is the pure network's stage (same weights, same outputs), each block
    with its own paper's neuron and norm."""
    mixed = tiny(block=["ds", "sew", "lsn"], connect="IAND")
    pure = {kind: tiny(block=kind, **({"connect": "IAND"} if kind == "sew" else {})) for kind in ("ds", "sew", "lsn")}
    assert [type(b) for b in mixed.blocks] == [DSBasicBlock, SEWBlock, LSNBlock] and mixed.block_kind == "mixed"
    assert mixed.blocks[1].sn2.decay == 1.0 and mixed.blocks[2].excitatory[1].decay == 0.5  # IF (SEW), LIF 0.5 (LSN)
    mixed.stem_conv.load_state_dict(pure["ds"].stem_conv.state_dict())
    mixed.stem_norm.load_state_dict(pure["ds"].stem_norm.state_dict())
    for index, kind in enumerate(("ds", "sew", "lsn")):
        mixed.blocks[index].load_state_dict(pure[kind].blocks[index].state_dict())
    mixed.classifier.load_state_dict(pure["lsn"].classifier.state_dict())
    x = torch.rand(3, 1, 8, 8)  # train mode: batch statistics, so the fresh networks are active
    with torch.no_grad():
        h = pure["ds"].stem_neuron(pure["ds"].stem_norm(pure["ds"].stem_conv(mixed.to_sequence(x))))
        for index, kind in enumerate(("ds", "sew", "lsn")):
            h = pure[kind].blocks[index](h)
        assert h.sum() > 0  # spikes reach the classifier: the comparison is not vacuous
        assert torch.equal(mixed(x), pure["lsn"].head(h))


def test_ms_stage_after_a_spiking_stage_takes_the_spikes_and_is_closed_by_a_neuron():
    net = tiny(block=["sew", "ms", "lsn"])
    assert net.blocks[1].sn_in is None and list(net.closing_neurons) == ["1"] and net.final_neuron is None
    pure_ms = tiny(block="ms")
    net.blocks[1].load_state_dict(pure_ms.blocks[1].state_dict())
    with torch.no_grad():
        for norm in (net.blocks[1].path.bn2, pure_ms.blocks[1].path.bn2):  # undo the zero init: a live path
            norm.weight.fill_(1.0)
    spikes = (torch.rand(2, 3, 4, 8, 8) < 0.4).float()
    net.eval(), pure_ms.eval()
    with torch.no_grad():  # the MS paper's LIF (V_th 0.5) passes binary spikes unchanged: SN(x) = x
        assert torch.equal(net.blocks[1](spikes), pure_ms.blocks[1](spikes))
    first_ms = tiny(block=["ms", "sew", "lsn"])
    assert first_ms.stem_neuron is None and list(first_ms.closing_neurons) == ["0"]


def test_mixed_resnet_trains_a_step():
    net = tiny(block=["ms", "ds", "sew"], connect="OR")
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.rand(8, 1, 8, 8), torch.arange(8)
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    assert torch.isfinite(loss) and net.stem_conv.module.weight.grad.abs().sum() > 0
    before = net.stem_conv.module.weight.detach().clone()
    optimizer.step()
    assert not torch.equal(before, net.stem_conv.module.weight)


def test_per_block_lists():
    net = tiny(depth=14, block=["ds", "ds", "sew", "lsn", "lsn", "lsn"], connect=[None, None, "XOR", None, None, None],
               norm=["tdbn", "bn", "bn"])
    assert [type(b).__name__ for b in net.blocks] == ["DSBasicBlock", "DSBasicBlock", "SEWBlock", "LSNBlock",
                                                      "LSNBlock", "LSNBlock"]
    assert net.blocks[2].connect == "XOR" and type(net.blocks[1].path.bn1).__name__ == "TdBN"
    per_stage = tiny(depth=14, block="ds", neuron=[{"type": "mlf"}, {"type": "lif"}, {"type": "mlf"}, {"type": "lif"}])
    assert [b.path.sn1.levels for b in per_stage.blocks] == [1, 1, 3, 3, 1, 1]


@pytest.mark.parametrize("config, message", [
    ({"block": ["ms", "sew"]}, "block: expected one value or a list of 3 entries"),
    ({"block": ["ds", "xx", "ms"]}, "block: expected one of"),
    ({"block": ["dual", "dual", "sew"]}, "block: 'dual' cannot be mixed"),
    ({"block": ["ds", "sew", "lsn", "ds"], "depth": 14}, "block: expected one value or a list of 3 entries .* or 6"),
    ({"block": ["ds", "sew", "sew", "lsn", "lsn", "lsn"], "depth": 14, "connect": "AND"},
     r"block: block 1 \('sew'\) joins by a logic function, which needs spikes, but its input from block 0 \('ds'\)"),
    ({"block": "sew", "connect": "AND", "neuron": {"type": "mlf"}}, "block: block 0 .* K > 1|block: block 0 .*stem"),
    ({"block": ["ds", "sew", "lsn"], "connect": ["AND", "AND", None]}, "connect: block 0 is 'ds'"),
    ({"block": ["ds", "ms", "lsn"], "connect": "AND"}, "connect: only for block 'sew'"),
    ({"block": "ds", "neuron": {"type": ["lif"]}}, "neuron.type: expected one of"),
    ({"block": "ds", "neuron": {"type": "lif", "v_th": [0.5]}}, "neuron.v_th: expected a number"),
    ({"block": "ds", "neuron": [{"type": "lif"}] * 2}, "neuron: expected one value or a list of 4"),
    ({"block": ["ds", "sew", "lsn"], "levels": 3}, "levels: only the 'mlf' neuron has levels, the neuron of layer 2"),
])
def test_bad_mixed_configs_name_the_key(config, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        build_network({**BASE, **config})


@pytest.mark.parametrize("kinds, connect", [(["ds", "sew", "lsn"], "IAND"), (["ms", "sew", "lsn"], "ADD"),
                                             (["sew", "ms", "lsn"], "ADD")])
def test_mixed_resnet_trained_a_step_on_the_digits_compiles_bit_exact(kinds, connect):
    """The compiler takes a mixed ResNet, MS blocks included: a run of MS blocks passes its membrane stream in
    the accumulators (the stem has no neuron when it starts the network; the block after a spiking block takes
    the spikes), and a closing neuron turns it into spikes for the next spiking block."""
    from spikecore.accel.contract.compiler import compile_network
    from spikecore.accel.contract.config import load_arch
    from spikecore.accel.flows.methods import methods_arch_path
    from spikecore.accel.flows.verify import verify
    from spikecore.models import load_digits_split
    from spikecore.models.digits import DIGITS_MAX_PIXEL
    from spikecore.sim.engine import simulate_batch

    x, y, x_test, _ = load_digits_split()
    net = tiny(block=kinds, connect=connect, timesteps=4)
    net.input_scale, net.input_shape = DIGITS_MAX_PIXEL, (1, 8, 8)
    optimizer = torch.optim.Adam(net.parameters(), 1e-2)
    torch.nn.functional.cross_entropy(net(x[:64].float() / DIGITS_MAX_PIXEL), y[:64]).backward()
    optimizer.step()
    net.eval()
    with torch.no_grad():  # statistics that amplify: a step-trained network is nearly silent in eval mode
        for module in net.modules():
            if getattr(module, "running_var", None) is not None:
                module.running_var.fill_(0.05)
                module.running_mean.zero_()
    arch = load_arch(methods_arch_path())
    program = compile_network(net, arch)
    names = [layer.name for layer in program.layers]
    assert {"sum", "gate", "neuron", "readout"} <= {layer.kind for layer in program.layers}
    if "ms" in kinds:
        closing = kinds.index("ms")
        assert f"closing{closing}" in names and ("stem" in names) == (kinds[0] != "ms")
    pixels = x_test[:4]
    sims = simulate_batch(program, arch, pixels.reshape(len(pixels), -1).numpy())
    report, _ = verify(program, arch, pixels, None, sims)
    assert report["bit_exact"], report["mismatches"][:3]
    silent = [name for stage, name in enumerate(names[:-1]) if not any(len(idx) for r in sims
                                                                       for idx, _ in r.events[stage])]
    assert not silent, f"stages without events (a vacuous comparison): {silent}"
