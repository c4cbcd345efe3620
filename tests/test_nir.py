"""NIR import and export (docs/nir.md).

Networks built and exported by snnTorch and by SpikingJelly (each its own NIR exporter) import, compile and
run on the core: golden == simulator == RTL, and the hardware-exact spikes of every layer equal the
library's own spike trains (weights k/8, thresholds and leaks chosen so that the integer model is exact).
Our networks go to NIR and back to an identical Program (every memory word, every layer description).
What the core cannot run is rejected naming the node (more cases in tests/test_bad_inputs.py).
"""
import json

import nir
import numpy as np
import pytest
import torch

from spikecore.accel.flows.cli import main
from spikecore.accel.contract.compiler import compile_network
from spikecore.accel.contract.config import default_arch, load_arch
from spikecore.errors import UserError
from spikecore.accel.flows.methods import methods_arch_path
from spikecore.accel.flows.nir_io import export_graph, import_graph, read_nir, write_nir
from spikecore.accel.flows.verify import run_golden, verify
from spikecore.models import load_digits_split
from spikecore.sim.engine import simulate_batch

T, SAMPLES, RTL_SAMPLES = 4, 60, 2
pytestmark = pytest.mark.filterwarnings("ignore:nirtorch.extract_nir_graph:DeprecationWarning")  # snnTorch's call


def _eighths(shape, generator, limit=7):
    """Weights k/8, |k| <= limit: exactly representable, and with headroom for T = 4 halvings of the leak."""
    return torch.randint(-limit, limit + 1, shape, generator=generator).to(torch.float32) / 8


@pytest.fixture(scope="module")
def pixels():
    return load_digits_split()[2][:SAMPLES]


@pytest.fixture(scope="module")
def snntorch_model(tmp_path_factory):
    """conv3x3(1->4) - Leaky(beta 0.5) - flatten - linear(256->10) - Leaky(beta 0.5), reset to zero."""
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    def leaky(shape):  # per-neuron parameters: snnTorch's exporter then writes shaped NIR nodes
        return snn.Leaky(beta=torch.full(shape, 0.5), threshold=torch.full(shape, 1.0), init_hidden=True,
                         reset_mechanism="zero")

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1, bias=False), leaky((4, 8, 8)), torch.nn.Flatten(),
                              torch.nn.Linear(256, 10), leaky((10,)))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        net[0].weight.copy_(_eighths(net[0].weight.shape, generator))
        net[3].weight.copy_(_eighths(net[3].weight.shape, generator))
        net[3].bias.copy_(_eighths(net[3].bias.shape, generator, limit=4))
    path = tmp_path_factory.mktemp("snntorch") / "snn.nir"
    nir.write(path, export_to_nir(net, torch.zeros(1, 1, 8, 8), ignore_dims=[0]))
    return net, path


def _snntorch_spikes(net, pixels):
    """snnTorch's own spike trains ``[T, N, ...]`` of both Leaky layers for the static input pixels / 16."""
    from snntorch import utils

    recorded = {1: [], 4: []}
    hooks = [net[i].register_forward_hook(lambda m, i_, o, i=i: recorded[i].append(o)) for i in recorded]
    utils.reset(net)
    with torch.no_grad():
        for _ in range(T):
            net(pixels.float() / 16)
    for hook in hooks:
        hook.remove()
    return [torch.stack(recorded[i]).to(torch.float64) for i in (1, 4)]


def test_snntorch_network_spikes_equal_snntorch_on_the_hardware_exact_model(snntorch_model, pixels):
    net, path = snntorch_model
    graph = read_nir(path)
    assert {type(n).__name__ for n in graph.nodes.values()} == {"Input", "Conv2d", "LIF", "Flatten", "Affine",
                                                                 "Output"}
    imported = import_graph(graph, path, dt=1e-4, timesteps=T, input_scale=16)
    assert [s["kind"] for s in imported.specs] == ["neuron", "neuron", "readout"]
    assert imported.specs[0]["neuron"]["decay"] == 0.5 and imported.specs[0]["neuron"]["v_th"] == 1.0
    arch = default_arch()
    program = compile_network(imported, arch)
    assert [layer.shift for layer in program.layers[:2]] == [1, 1]
    golden = run_golden(program, arch, pixels)
    theirs = _snntorch_spikes(net, pixels)
    for ours, reference in zip(golden["spikes"], theirs):
        assert torch.equal(ours.to(torch.float64), reference)
        assert 0.05 < float(reference.mean()) < 0.95           # active: the comparison is not vacuous
    # the readout counts the output spikes, at the readout's integer scale
    assert torch.equal(golden["logits"].to(torch.float64), theirs[1].sum(0) * float(program.layers[-1].scale[0]))
    # and the imported float model is snnTorch's
    for ours, reference in zip(imported.trace(pixels.float() / 16), theirs):
        assert torch.equal(ours, reference)


def test_snntorch_network_through_the_command_line_is_bit_exact_on_the_rtl(snntorch_model, tmp_path, capsys):
    _, path = snntorch_model
    checkpoint = tmp_path / "snn.pt"
    assert main(["import", str(path), "--out", str(checkpoint)]) == 2       # T and the input scale are needed
    assert "does not record --timesteps" in capsys.readouterr().err
    assert main(["import", str(path), "--out", str(checkpoint), "--timesteps", str(T), "--input-scale", "16"]) == 0
    assert "3 stages (2 neuron, 1 readout)" in capsys.readouterr().out
    report_path = tmp_path / "report.json"
    assert main(["verify", str(checkpoint), "--samples", str(RTL_SAMPLES), "--out", str(report_path), "--quiet"]) == 0
    report = json.loads(report_path.read_text())
    assert report["bit_exact"] and report["cycle_exact"] and report["samples"] == RTL_SAMPLES
    gap = report["float_vs_integer"]  # the float model equals the integer one: no quantization error at all
    assert gap["logit_max_abs_diff"] == 0.0 and gap["accuracy_gap_pp"] == 0.0


def test_spikingjelly_network_through_its_nir_exchange_runs_bit_exact(tmp_path, pixels, rtl_cache):
    """SpikingJelly 2.0's ``activation_based.nir_exchange.export_to_nir``: LIF (tau 2), average pool, IF."""
    from spikecore.rtl.runner import run_inferences
    from spikingjelly.activation_based import functional, layer, neuron
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    # thresholds 0.99: SpikingJelly fires on v >= v_th, NIR and the core on v > v_th; no membrane (a multiple
    # of 2^-10 here) can equal 0.99, so both rules agree
    net = torch.nn.Sequential(layer.Conv2d(1, 4, 3, padding=1, bias=False),
                              neuron.LIFNode(tau=2.0, decay_input=False, v_threshold=0.99), layer.AvgPool2d(2),
                              layer.Flatten(), layer.Linear(64, 10), neuron.IFNode(v_threshold=0.99))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        net[0].weight.copy_(_eighths(net[0].weight.shape, generator))
        net[4].weight.copy_(_eighths(net[4].weight.shape, generator))
        net[4].bias.copy_(_eighths(net[4].bias.shape, generator, limit=4))
    functional.set_step_mode(net, "m")
    path = tmp_path / "sj.nir"
    export_to_nir(net, torch.zeros(T, 1, 1, 8, 8), save_path=path)
    imported = import_graph(read_nir(path), path, dt=1e-4, timesteps=T, input_scale=16)
    assert [s["kind"] for s in imported.specs] == ["neuron", "sum", "neuron", "readout"]
    arch = default_arch()
    program = compile_network(imported, arch)
    recorded = {}
    for i in (1, 2, 5):
        net[i].register_forward_hook(lambda m, i_, o, i=i: recorded.__setitem__(i, o))
    functional.reset_net(net)
    with torch.no_grad():
        net((pixels.float() / 16).unsqueeze(0).repeat(T, 1, 1, 1, 1))
    golden = run_golden(program, arch, pixels)
    # the pool stage emits sums of 2x2 spikes: SpikingJelly's averages times 4
    for ours, (i, scale) in zip(golden["spikes"], ((1, 1), (2, 4), (5, 1))):
        assert torch.equal(ours.to(torch.float64), recorded[i].to(torch.float64) * scale)
        assert float(recorded[i].mean()) > 0.05
    sims = simulate_batch(program, arch, pixels.reshape(len(pixels), -1).numpy())
    report, _ = verify(program, arch, pixels, None, sims)
    assert report["bit_exact"], report["mismatches"][:3]
    inputs = [[int(v) for v in row] for row in pixels[:RTL_SAMPLES].reshape(RTL_SAMPLES, -1).tolist()]
    rtl = run_inferences(program.memory_image(arch), inputs, arch, rtl_cache / "rtl", simulator="verilator")
    report, _ = verify(program, arch, pixels[:RTL_SAMPLES], rtl, sims[:RTL_SAMPLES])
    assert report["bit_exact"] and report["cycle_exact"], report["mismatches"][:3]


def _same_program(a, b) -> None:
    """Every memory column, every layer description and every quantized array equal."""
    assert a.memories.keys() == b.memories.keys()
    for name, columns in a.memories.items():
        for key, column in columns.items():
            assert np.array_equal(column, b.memories[name][key]), (name, key)
    assert [l.manifest() for l in a.layers] == [l.manifest() for l in b.layers]
    assert (a.timesteps, a.input_shape, a.input_max, a.arch_fingerprint) == \
        (b.timesteps, b.input_shape, b.input_max, b.arch_fingerprint)
    for x, y in zip(a.layers, b.layers):
        for key in ("bias", "thresholds", "scale"):
            assert np.array_equal(getattr(x, key), getattr(y, key)), (x.name, key)
        for s, t in zip(x.sources, y.sources):
            assert np.array_equal(s.weight, t.weight), x.name


def test_digits_network_round_trips_through_nir_to_an_identical_program(tmp_path, capsys):
    from spikecore.accel.contract.checkpoint import shipped_checkpoint_path
    from spikecore.accel.contract.program import Program

    model = tmp_path / "digits.nir"
    assert main(["export", str(shipped_checkpoint_path()), "--nir", str(model)]) == 0
    assert main(["import", str(model), "--out", str(tmp_path / "back.pt")]) == 0   # T, scale, dt: recorded
    assert "quantization matches the file's" in capsys.readouterr().out
    for source, out in ((shipped_checkpoint_path(), "original"), (tmp_path / "back.pt", "round_trip")):
        assert main(["compile", str(source), "--out", str(tmp_path / out)]) == 0
    _same_program(Program.load(tmp_path / "original"), Program.load(tmp_path / "round_trip"))
    # what plain NIR readers see: standard nodes, the MLF levels as metadata
    graph = read_nir(model)
    assert type(graph.nodes["conv0"]).__name__ == "LIF" and type(graph.nodes["classifier"]).__name__ == "Output"
    assert json.loads(graph.nodes["conv0"].metadata["spikecore"])["levels"] == 3


def test_metadata_is_ignored_cleanly_by_another_reader(tmp_path):
    """SpikingJelly's NIR importer builds and runs our exported digits network (as K = 1 LIF neurons)."""
    from spikecore.accel.contract.checkpoint import load_checkpoint, shipped_checkpoint_path
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    net, _ = load_checkpoint(shipped_checkpoint_path())
    write_nir(export_graph(net, default_arch()), tmp_path / "digits.nir")
    module = import_from_nir(nir.read(tmp_path / "digits.nir"))
    out = module(torch.ones(2, 1, 8, 8))
    assert out[0].shape == (2, 10)


@pytest.mark.parametrize("name", ["ds-resnet", "ms-resnet", "lsn", "dst-dsnn"])
def test_method_networks_round_trip_to_an_identical_program(name, tmp_path):
    """Sums, the membrane shortcut (carry), a three-input gate and the DSNN accumulation pathway."""
    from spikecore.accel.flows.methods import build_untrained, methods_arch_path, prepare

    arch = load_arch(methods_arch_path())
    net = prepare(name, build_untrained(name, seed=1, calibration=load_digits_split()[0][:50]))
    write_nir(export_graph(net, arch), tmp_path / "m.nir")
    back = import_graph(read_nir(tmp_path / "m.nir"), tmp_path / "m.nir", 1e-4, net.timesteps, 16)
    original, round_trip = compile_network(net, arch), compile_network(back, arch)
    kinds = {layer.kind for layer in original.layers}
    assert {"ds-resnet": "sum", "dst-dsnn": "sum", "lsn": "gate"}.get(name, "neuron") in kinds
    assert name != "ms-resnet" or any(layer.carry is not None for layer in round_trip.layers)
    _same_program(original, round_trip)


def test_vgg_with_average_pooling_round_trips(tmp_path):
    from spikecore.models.networks import build_network

    torch.manual_seed(0)
    net = build_network({"arch": "vgg", "layers": [4, "A", 8], "fc_hidden": [16], "image_size": 8,
                         "in_channels": 1, "classes": 10, "timesteps": 2, "norm": "bn"}).eval()
    net.input_scale, net.input_shape = 16, (1, 8, 8)
    arch = default_arch()
    write_nir(export_graph(net, arch), tmp_path / "v.nir")
    back = import_graph(read_nir(tmp_path / "v.nir"), tmp_path / "v.nir", 1e-4, 2, 16)
    assert back.specs[1]["kind"] == "sum" and back.specs[1]["gain"] == 0.25
    _same_program(compile_network(net, arch), compile_network(back, arch))
    x = load_digits_split()[2][:20].float() / 16
    with torch.no_grad():
        assert torch.equal(net(x).to(torch.float64), back(x))


# ---- what is rejected, naming the node ---------------------------------------------------------------

def _graph(*nodes, edges=None):
    """A NIR graph of ``(name, node)`` pairs, chained in order unless ``edges`` are given."""
    names = [n for n, _ in nodes]
    edges = edges if edges is not None else list(zip(names, names[1:]))
    return nir.NIRGraph(nodes=dict(nodes), edges=edges, type_check=False)


def _lif(n=10, tau=2e-4, **kw):
    args = dict(tau=np.full(n, tau), r=np.full(n, tau / 1e-4), v_leak=np.zeros(n), v_threshold=np.ones(n),
                v_reset=np.zeros(n))
    args.update({k: np.full(n, v) if np.ndim(v) == 0 else v for k, v in kw.items()})
    return nir.LIF(**args)


INPUT = ("input", nir.Input(input_type={"input": np.array([1, 8, 8])}))
FLAT = ("flat", nir.Flatten(input_type={"input": np.array([1, 8, 8])}, start_dim=0, end_dim=-1))


def _fc(name="fc", n_in=64, n_out=10):
    return name, nir.Affine(weight=np.ones((n_out, n_in)) / 8, bias=np.zeros(n_out))


OUTPUT = ("output", nir.Output(output_type={"output": np.array([10])}))


@pytest.mark.parametrize("nodes, edges, needles", [
    ((INPUT, FLAT, _fc(), ("lif", nir.CubaLIF(tau_syn=np.ones(10), tau_mem=np.ones(10), r=np.ones(10),
                                              v_leak=np.zeros(10), v_threshold=np.ones(10))), OUTPUT),
     None, ["node 'lif' (CubaLIF): not supported on the core"]),
    ((INPUT, FLAT, _fc(), ("lif", _lif(tau=1e-4 / 0.7)), OUTPUT), None,
     ["node 'lif' (LIF): decay 1 - dt/tau = 0.3", "not a power of two"]),
    ((INPUT, FLAT, _fc(), ("lif", _lif(v_reset=0.5)), OUTPUT), None, ["node 'lif' (LIF): v_reset is not 0"]),
    ((INPUT, FLAT, _fc(), ("lif", _lif(v_threshold=np.linspace(1, 2, 10))), OUTPUT), None,
     ["node 'lif' (LIF): v_threshold differs across neurons"]),
    ((INPUT, FLAT, _fc("fc1", 64, 10), _fc("fc2", 10, 10), ("lif", _lif()), OUTPUT), None,
     ["node 'fc2' (Affine): reads a synaptic current, not events"]),
    ((INPUT, FLAT, _fc(), ("lif", _lif()), _fc("rec", 10, 10), OUTPUT),
     [("input", "flat"), ("flat", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")],
     ["lies on a cycle (recurrent connections are not supported"]),
    ((INPUT, _fc(), ("lif", _lif()), OUTPUT), None, ["node 'fc' (Affine): a linear map of a [1, 8, 8] input"]),
    ((INPUT, ("conv", nir.Conv2d(input_shape=(8, 8), weight=np.ones((2, 1, 3, 3)), stride=1, padding=1,
                                 dilation=2, groups=1, bias=np.zeros(2))), OUTPUT), None,
     ["node 'conv' (Conv2d): grouped or dilated convolutions are not supported"]),
])
def test_unsupported_nodes_are_rejected_naming_the_node(nodes, edges, needles, tmp_path):
    path = tmp_path / "bad.nir"
    nir.write(path, _graph(*nodes, edges=edges))
    with pytest.raises(UserError) as caught:
        import_graph(read_nir(path), path, dt=1e-4, timesteps=T, input_scale=16)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)


def test_an_edited_quantization_record_is_caught(tmp_path, capsys):
    from spikecore.accel.contract.checkpoint import shipped_checkpoint_path

    model = tmp_path / "digits.nir"
    assert main(["export", str(shipped_checkpoint_path()), "--nir", str(model)]) == 0
    graph = read_nir(model)
    meta = json.loads(graph.nodes["conv1"].metadata["spikecore"])
    meta["quantization"]["shift"] = 3
    graph.nodes["conv1"].metadata["spikecore"] = json.dumps(meta)
    nir.write(model, graph)
    capsys.readouterr()
    assert main(["import", str(model), "--out", str(tmp_path / "x.pt")]) == 2
    assert "node 'conv1': the imported network quantizes to shift 2" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_a_leak_toward_v_leak_is_a_bias_and_r_a_gain(tmp_path):
    """tau dv/dt = (v_leak - v) + r I with dt/tau = 1/2: per step v <- v/2 + v_leak/2 + (r/2) I."""
    lif = _lif(r=np.full(10, 4.0), v_leak=np.full(10, 0.5))
    path = tmp_path / "leak.nir"
    nir.write(path, _graph(INPUT, FLAT, _fc(), ("lif", lif), OUTPUT))
    net = import_graph(read_nir(path), path, dt=1e-4, timesteps=T, input_scale=16)
    stage = net.stages[0]
    assert torch.equal(stage.weights[0], torch.full((10, 64), 2.0 / 8, dtype=torch.float64))
    assert torch.equal(stage.bias, torch.full((10,), 0.25, dtype=torch.float64))
    assert net.specs[0]["neuron"]["decay"] == 0.5


def test_an_inconsistent_graph_checkpoint_is_refused(snntorch_model, tmp_path, capsys):
    """The checkpoint loader rebuilds GraphNet from its config and refuses one that does not hold together."""
    _, path = snntorch_model
    checkpoint = tmp_path / "snn.pt"
    assert main(["import", str(path), "--out", str(checkpoint), "--timesteps", "2", "--input-scale", "16"]) == 0
    payload = torch.load(checkpoint, weights_only=True)
    payload["config"]["stages"][0]["carry"] = 1            # a membrane shortcut from a later stage
    torch.save(payload, tmp_path / "edited.pt")
    capsys.readouterr()
    assert main(["compile", str(tmp_path / "edited.pt"), "--out", str(tmp_path / "prog")]) == 2
    assert "edited.pt: bad model configuration (stages[0].carry: expected an earlier neuron stage" \
        in capsys.readouterr().err


def test_a_linear_layer_straight_on_the_pixels_is_golden_equal_to_the_simulator(tmp_path, pixels):
    """snnTorch's first tutorial network: Input [1, 8, 8] - Flatten - Affine - LIF. The golden model used to crash
    on a linear layer fed by the pixels directly (issue 19: `linear_map` on pixel events)."""
    generator = torch.Generator().manual_seed(3)
    fc = ("fc", nir.Affine(weight=_eighths((10, 64), generator).numpy().astype(np.float64), bias=np.zeros(10)))
    write_nir(_graph(INPUT, FLAT, fc, ("lif", _lif()), OUTPUT), tmp_path / "fc.nir")
    net = import_graph(read_nir(tmp_path / "fc.nir"), "fc.nir", 1e-4, T, 16.0)
    arch = load_arch(methods_arch_path())  # 20-bit accumulators for 64 pixels of up to 16 on one neuron
    program = compile_network(net, arch)
    sims = simulate_batch(program, arch, pixels.reshape(len(pixels), -1).numpy())
    report, golden = verify(program, arch, pixels, None, sims)
    assert report["bit_exact"], report["mismatches"][:3]
    assert sum(int(s.sum()) for s in golden["spikes"]) > 0  # the comparison is not vacuous
