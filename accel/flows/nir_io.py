"""NIR import and export: ``accel import MODEL.nir --out CHECKPOINT``, ``accel export CHECKPOINT --nir MODEL.nir``.

NIR (the Neuromorphic Intermediate Representation, package ``nir``) describes a network as a graph of
continuous-time nodes. The importer discretises each node with the time step ``dt`` (forward Euler, as
snnTorch, SpikingJelly and Norse do), maps it onto the numerics contract (``docs/numerics.md``) and writes
a :class:`spikecore.models.graphnet.GraphNet` checkpoint that ``accel compile`` / ``accel verify`` take like any
other; what cannot be mapped exactly is rejected naming the node. The exporter writes any compilable
checkpoint as standard NIR nodes, with what NIR cannot say (MLF levels, logic gates, the membrane
shortcut, the quantization) as metadata that this importer reads back and other readers ignore. The
mapping of every node is in ``docs/nir.md``.
"""
from __future__ import annotations

import heapq
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from spikecore.accel.contract.checkpoint import CONFIG_INT_RANGES, all_finite
from spikecore.errors import UserError
from spikecore.accel.contract.layouts import MAX_SHIFT
from spikecore.accel.contract.lowering import PIXELS, FloatSource, identity_weight, lower, output_shape

DEFAULT_DT = 1e-4          # the time step snnTorch's and SpikingJelly's exporters assume
META_KEY = "spikecore"     # metadata key (graph and nodes) holding a JSON string
META_FORMAT = "spikecore-nir"
META_VERSION = 1
#: Largest size of one dimension of a map, and largest neuron count of a map or the input: far above any core
#: (``memories.state`` holds at most 2^20 rows), small enough that no shape arithmetic overflows.
MAX_NIR_DIM = 1 << 20
MAX_NIR_NEURONS = 1 << 24
#: Node attributes that the importer does not read numbers from: NIR derives the types from the parameters.
UNCHECKED_ATTRIBUTES = ("metadata", "input_type", "output_type")
SUPPORTED = ("Input", "Output", "Conv2d", "Linear", "Affine", "Scale", "LIF", "IF", "SumPool2d", "AvgPool2d",
             "Flatten")


# ---- reading ------------------------------------------------------------------------------------

def read_nir(path):
    """Read a NIR file; raises :class:`UserError` naming the file when it is missing or not NIR."""
    import nir

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such NIR file")
    try:
        graph = nir.read(path, type_check=False)
    except Exception as exc:  # h5py and nir raise many types on garbage input
        raise UserError(f"{path}: truncated or not a NIR file ({type(exc).__name__})") from None
    if not isinstance(graph, nir.NIRGraph):
        raise UserError(f"{path}: the file holds a single {type(graph).__name__} node, not a NIR graph")
    return graph


def _metadata(owner, where: str) -> dict:
    """The ``spikecore`` metadata of a node or graph (``{}`` when absent)."""
    text = (getattr(owner, "metadata", None) or {}).get(META_KEY)
    if text is None:
        return {}
    try:
        data = json.loads(text.decode() if isinstance(text, bytes) else str(text))
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{where}: malformed {META_KEY} metadata (not JSON)") from None
    if not isinstance(data, dict):
        raise UserError(f"{where}: malformed {META_KEY} metadata (not a mapping)")
    return data


def _natural_key(name: str) -> tuple:
    """Sort key that orders ``lif2`` before ``lif10``."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name))


@dataclass
class _Value:
    """What flows on a NIR edge, as linear terms over event-emitting stages.

    ``stage`` set: the events of that stage (or the pixels), unscaled; otherwise the sum of ``terms``
    (sources acting on float values) plus ``bias``. ``shape`` is the natural (C, H, W) or (N,) shape;
    ``flat`` records a NIR Flatten on the way.
    """

    shape: tuple
    terms: list = field(default_factory=list)
    bias: torch.Tensor | None = None
    stage: int | None = None
    flat: bool = False


def _identity_term(stage: int, shape: tuple) -> FloatSource:
    if len(shape) == 3:
        return FloatSource(stage, "conv", identity_weight(shape[0]))
    return FloatSource(stage, "linear", torch.eye(shape[0], dtype=torch.float64))


def _diagonal(term: FloatSource) -> torch.Tensor | None:
    """Per-channel factors of a term that only scales its input's events, else ``None``."""
    w = term.weight
    if term.op == "conv":
        if w.shape[0] != w.shape[1] or w.shape[2:] != (1, 1) or term.stride != 1 or term.padding != 0:
            return None
        w = w[:, :, 0, 0]
    elif w.shape[0] != w.shape[1]:
        return None
    d = torch.diagonal(w)
    return d.clone() if torch.equal(torch.diag(d), w) else None


class _Importer:
    """Builds a GraphNet description from a NIR graph, node by node in topological order."""

    def __init__(self, graph, path, dt: float, timesteps: int, input_scale: float):
        self.graph, self.path, self.dt = graph, str(path), dt
        self.timesteps, self.input_scale = timesteps, input_scale
        self.specs, self.params, self.index = [], [], {}

    def fail(self, name: str, message: str) -> UserError:
        return UserError(f"{self.path}: node '{name}' ({type(self.graph.nodes[name]).__name__}): {message}")

    # -- graph walk ------------------------------------------------------------------------------
    def run(self) -> dict:
        nodes = self.graph.nodes
        for name in sorted(nodes, key=_natural_key):
            kind = type(nodes[name]).__name__
            if kind not in SUPPORTED:
                raise self.fail(name, f"not supported on the core (supported: {', '.join(SUPPORTED)})")
        preds = {name: [] for name in nodes}
        for edge in self.graph.edges:
            a, b = (str(v) for v in edge)
            if a not in nodes or b not in nodes:
                raise UserError(f"{self.path}: edge ({a!r}, {b!r}) names a node the graph does not have")
            preds[b].append(a)
        inputs = [n for n in nodes if type(nodes[n]).__name__ == "Input"]
        outputs = [n for n in nodes if type(nodes[n]).__name__ == "Output"]
        if len(inputs) != 1 or len(outputs) != 1:
            raise UserError(f"{self.path}: the graph has {len(inputs)} Input and {len(outputs)} Output nodes; "
                            f"the core runs networks with one of each")
        order = self._topological(preds, outputs[0])
        values = {}
        for name in order:
            values[name] = self._node(name, [values[p] for p in preds[name]])
        return {"input_shape": list(values[inputs[0]].shape), "input_scale": self.input_scale,
                "timesteps": self.timesteps, "stages": self.specs}

    def _topological(self, preds: dict, output: str) -> list:
        """Nodes that lead to ``output``, producers first; stages keep the order their metadata records."""
        live, todo = {output}, [output]
        while todo:
            for p in preds[todo.pop()]:
                if p not in live:
                    live.add(p)
                    todo.append(p)
        succs = {n: [] for n in live}
        missing = {n: 0 for n in live}
        for n in live:
            for p in preds[n]:
                succs[p].append(n)
                missing[n] += 1

        def key(n):
            order = _metadata(self.graph.nodes[n], f"{self.path}: node '{n}'").get("order", -1)
            return (order if isinstance(order, int) else -1, _natural_key(n), n)

        ready = [key(n) for n in live if missing[n] == 0 and n != output]
        heapq.heapify(ready)
        result = []
        while ready:
            n = heapq.heappop(ready)[-1]
            result.append(n)
            for s in succs[n]:
                missing[s] -= 1
                if missing[s] == 0 and s != output:
                    heapq.heappush(ready, key(s))
        if len(result) != len(live) - 1 or missing[output] != 0:
            stuck = sorted((n for n in live if missing[n] > 0 and n != output), key=_natural_key)
            raise self.fail(stuck[0] if stuck else output, "lies on a cycle (recurrent connections are not "
                            "supported: the core runs feed-forward stages)")
        return result + [output]

    def _node(self, name: str, inputs: list) -> _Value:
        node = self.graph.nodes[name]
        kind = type(node).__name__
        self._check_numbers(name, node)
        if kind == "Input":
            try:
                shape = np.asarray(node.input_type["input"]).reshape(-1)
            except (AttributeError, KeyError, TypeError, ValueError):
                raise self.fail(name, "has no input shape (input_type['input'])") from None
            if len(shape) not in (1, 3):
                raise self.fail(name, f"input shape {shape.tolist()}: the core takes images [C, H, W] or flat "
                                f"vectors [N]")
            return _Value(self._map_shape(name, shape, "input shape"), stage=PIXELS)
        if not inputs:
            raise self.fail(name, "has no input edge")
        value = self._merge(name, inputs)
        handler = {"Output": self._output, "Conv2d": self._conv, "Linear": self._linear, "Affine": self._linear,
                   "Scale": self._scale, "LIF": self._neuron, "IF": self._neuron, "SumPool2d": self._pool,
                   "AvgPool2d": self._pool, "Flatten": self._flatten}[kind]
        try:
            return handler(name, node, value)
        except (TypeError, ValueError, IndexError, RuntimeError) as exc:  # attributes of the wrong type or shape
            raise self.fail(name, f"malformed node ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None

    def _check_numbers(self, name: str, node) -> None:
        """Every number a node brings (weights, biases, taus, thresholds, strides, ...) real and finite."""
        for attribute, value in vars(node).items():
            if attribute in UNCHECKED_ATTRIBUTES or value is None or isinstance(value, (str, bytes)):
                continue
            try:
                array = np.asarray(value)
            except (TypeError, ValueError):  # ragged nested sequences
                raise self.fail(name, f"{attribute} is not an array of numbers") from None
            if array.dtype.kind == "c":
                raise self.fail(name, f"{attribute} holds complex numbers; the core computes with real ones")
            if not all_finite(array):
                raise self.fail(name, f"{attribute} contains NaN or Inf")

    def _map_shape(self, name: str, shape, what: str) -> tuple:
        """A map's or the input's shape as positive integers within :data:`MAX_NIR_DIM`, at most
        :data:`MAX_NIR_NEURONS` neurons in all."""
        sizes = np.asarray(shape).reshape(-1)
        if sizes.dtype.kind not in "iuf" or np.any(sizes != np.round(sizes)) or np.any(sizes < 1) \
                or np.any(sizes > MAX_NIR_DIM) or math.prod(int(v) for v in sizes) > MAX_NIR_NEURONS:
            raise self.fail(name, f"{what} {sizes.tolist()}: expected positive sizes of at most {MAX_NIR_DIM} "
                            f"each and {MAX_NIR_NEURONS} neurons in all")
        return tuple(int(v) for v in sizes)

    # -- values ----------------------------------------------------------------------------------
    def _current(self, value: _Value) -> tuple:
        """``(terms, bias)`` of a value (events become identity terms)."""
        if value.stage is not None:
            return [_identity_term(value.stage, value.shape)], torch.zeros(value.shape[0], dtype=torch.float64)
        return list(value.terms), value.bias.clone()

    def _merge(self, name: str, inputs: list) -> _Value:
        """Edges into one node sum their values."""
        if len(inputs) == 1:
            return inputs[0]
        if len({(v.shape, v.flat) for v in inputs}) > 1:
            raise self.fail(name, f"its inputs have different shapes {sorted({v.shape for v in inputs})}")
        terms, bias = [], torch.zeros(inputs[0].shape[0], dtype=torch.float64)
        for v in inputs:
            t, b = self._current(v)
            terms += t
            bias = bias + b
        return _Value(inputs[0].shape, terms, bias, flat=inputs[0].flat)

    def _events(self, name: str, value: _Value) -> list:
        """``[(stage, per-channel factor)]`` of a value that is (scaled) events, as a synaptic map needs."""
        if value.stage is not None:
            return [(value.stage, torch.ones(value.shape[0], dtype=torch.float64))]
        diagonals = [_diagonal(t) for t in value.terms]
        if any(d is None for d in diagonals) or bool(value.bias.any()):
            raise self.fail(name, "reads a synaptic current, not events: a linear node must read a neuron, a "
                            "pool or the input (fold consecutive linear nodes into one before exporting)")
        return [(t.input, d) for t, d in zip(value.terms, diagonals)]

    def _per_channel(self, name: str, array, shape: tuple, what: str) -> torch.Tensor:
        """A per-neuron NIR parameter as one value per channel (the core has per-channel parameters)."""
        a = np.asarray(array, dtype=np.float64)
        count = math.prod(shape)
        if a.size == 0:
            raise self.fail(name, f"{what} has no values")
        if a.size == 1:
            return torch.full((shape[0],), float(a.reshape(-1)[0]), dtype=torch.float64)
        if a.size != count:
            raise self.fail(name, f"{what} has {a.size} values for {count} neurons")
        a = a.reshape(shape)
        if len(shape) == 3:
            if not np.array_equal(a, np.broadcast_to(a[:, :1, :1], shape)):
                raise self.fail(name, f"{what} differs within a channel; the core has one value per channel")
            a = a[:, 0, 0]
        return torch.from_numpy(np.ascontiguousarray(a))

    def _uniform(self, name: str, array, what: str) -> float:
        a = np.unique(np.asarray(array, dtype=np.float64))
        if a.size == 0:
            raise self.fail(name, f"{what} has no values")
        if a.size != 1:
            raise self.fail(name, f"{what} differs across neurons ({a.min():g} .. {a.max():g}); the core has one "
                            f"{what} per layer")
        return float(a[0])

    def _pair(self, name: str, value, what: str) -> int:
        a = np.asarray(value).reshape(-1)
        if a.size not in (1, 2) or a.dtype.kind not in "iuf" or np.any(a != np.round(a)) or a.min() < 0 \
                or a.max() > MAX_NIR_DIM or a[0] != a[-1]:
            raise self.fail(name, f"{what} {a.tolist()}: only equal, whole, non-negative values (at most "
                            f"{MAX_NIR_DIM}) in both dimensions")
        return int(a[0])

    # -- stages ----------------------------------------------------------------------------------
    def _stage(self, name: str, kind: str, terms: list, bias: torch.Tensor, **spec) -> int:
        if not terms:
            raise self.fail(name, "has no synaptic input")
        self.specs.append({"name": name, "kind": kind, "neuron": None, "truth_table": 0, "carry": None,
                           "gain": 1.0, **spec,
                           "sources": [{"input": t.input, "op": t.op, "shape": list(t.weight.shape),
                                        "stride": t.stride, "padding": t.padding} for t in terms]})
        self.params.append(([t.weight for t in terms], bias))
        self.index[name] = len(self.specs) - 1
        return len(self.specs) - 1

    def _gain(self, terms: list) -> float:
        """Float value of one integer unit of a sum: the smallest nonzero coefficient on whole events."""
        coefficients = []
        for t in terms:
            producer = 1.0 / self.input_scale if t.input == PIXELS else self.specs[t.input]["gain"]
            w = (t.weight * producer).abs()
            coefficients.append(w[w > 0].min() if bool((w > 0).any()) else torch.tensor(math.inf))
        return float(min(coefficients))

    # -- node handlers ---------------------------------------------------------------------------
    def _conv(self, name, node, value: _Value) -> _Value:
        if value.flat or len(value.shape) != 3:
            raise self.fail(name, f"a 2-D convolution of a {list(value.shape)} input")
        w = torch.as_tensor(np.asarray(node.weight, dtype=np.float64))
        if w.dim() != 4 or w.shape[1] != value.shape[0]:
            raise self.fail(name, f"weight {list(w.shape)} does not fit {value.shape[0]} input channels")
        if int(np.asarray(node.groups)) != 1 or np.any(np.asarray(node.dilation) != 1):
            raise self.fail(name, "grouped or dilated convolutions are not supported")
        stride = self._pair(name, node.stride, "stride")
        if isinstance(node.padding, str):
            if node.padding == "same" and (stride != 1 or w.shape[2] != w.shape[3] or w.shape[2] % 2 == 0):
                raise self.fail(name, "padding 'same' needs stride 1 and an odd square kernel")
            padding = (w.shape[2] - 1) // 2 if node.padding == "same" else 0
        else:
            padding = self._pair(name, node.padding, "padding")
        if stride < 1:
            raise self.fail(name, "stride 0: a stride is at least 1")
        terms = [FloatSource(x, "conv", w * d.view(1, -1, 1, 1), stride, padding) for x, d in self._events(name, value)]
        bias = node.bias if getattr(node, "bias", None) is not None else np.zeros(w.shape[0])
        shape = self._map_shape(name, output_shape(value.shape, terms[0]), "output shape")
        return _Value(shape, terms, self._per_channel(name, bias, (w.shape[0],), "bias"))

    def _linear(self, name, node, value: _Value) -> _Value:
        w = torch.as_tensor(np.asarray(node.weight, dtype=np.float64))
        n_in = math.prod(value.shape)
        if len(value.shape) == 3 and not value.flat:
            raise self.fail(name, f"a linear map of a {list(value.shape)} input: put a Flatten before it")
        if w.dim() != 2 or w.shape[1] != n_in:
            raise self.fail(name, f"weight {list(w.shape)} does not fit {n_in} inputs")
        positions = n_in // value.shape[0]
        terms = [FloatSource(x, "linear", w * d.repeat_interleave(positions).view(1, -1))
                 for x, d in self._events(name, value)]
        bias = getattr(node, "bias", None)
        bias = np.zeros(w.shape[0]) if bias is None else bias
        return _Value((int(w.shape[0]),), terms, self._per_channel(name, bias, (w.shape[0],), "bias"))

    def _scale(self, name, node, value: _Value) -> _Value:
        d = self._per_channel(name, node.scale, value.shape, "scale")
        terms, bias = self._current(value)
        terms = [FloatSource(t.input, t.op, t.weight * d.view((-1,) + (1,) * (t.weight.dim() - 1)), t.stride,
                             t.padding) for t in terms]
        scaled = _Value(value.shape, terms, bias * d, flat=value.flat)
        meta = _metadata(node, f"{self.path}: node '{name}'")
        kind = meta.get("kind")
        if kind is None:
            return scaled
        if kind == "sum":
            gain = float(meta.get("gain", self._gain(terms)))
            stage = self._stage(name, "sum", terms, scaled.bias, gain=gain)
        elif kind == "gate":
            stage = self._stage(name, "gate", terms, scaled.bias, truth_table=int(meta.get("truth_table", 0)))
        else:
            raise self.fail(name, f"{META_KEY} metadata kind {kind!r} is not a sum or a gate")
        return _Value(value.shape, stage=stage, flat=value.flat)

    def _pool(self, name, node, value: _Value) -> _Value:
        if value.flat or len(value.shape) != 3:
            raise self.fail(name, f"pooling of a {list(value.shape)} input")
        k = np.asarray(node.kernel_size).reshape(-1).astype(np.int64)
        kh, kw = int(k[0]), int(k[-1])
        stride = self._pair(name, node.stride, "stride")
        padding = self._pair(name, node.padding, "padding")
        if not 1 <= kh <= value.shape[1] + 2 * padding or not 1 <= kw <= value.shape[2] + 2 * padding or stride < 1:
            raise self.fail(name, f"kernel {[kh, kw]} with stride {stride} does not fit a {list(value.shape)} input "
                            f"padded by {padding}")
        factor = 1.0 / (kh * kw) if type(node).__name__ == "AvgPool2d" else 1.0
        channels = value.shape[0]
        terms = []
        for x, d in self._events(name, value):
            w = torch.zeros(channels, channels, kh, kw, dtype=torch.float64)
            w[torch.arange(channels), torch.arange(channels)] = (d * factor).view(-1, 1, 1)
            terms.append(FloatSource(x, "conv", w, stride, padding))
        meta = _metadata(node, f"{self.path}: node '{name}'")
        stage = self._stage(name, "sum", terms, torch.zeros(channels, dtype=torch.float64),
                            gain=float(meta.get("gain", self._gain(terms))))
        return _Value(self._map_shape(name, output_shape(value.shape, terms[0]), "output shape"), stage=stage)

    def _flatten(self, name, node, value: _Value) -> _Value:
        ndim = len(value.shape)
        start, end = int(np.asarray(node.start_dim)), int(np.asarray(node.end_dim))
        if start not in (0, -ndim) or end not in (-1, ndim - 1):
            raise self.fail(name, f"flattens dimensions {start}..{end} of {list(value.shape)}; only a full "
                            f"flatten (start_dim 0, end_dim -1) is supported")
        return _Value(value.shape, list(value.terms), value.bias, value.stage, flat=ndim == 3 or value.flat)

    def _neuron(self, name, node, value: _Value) -> _Value:
        shape = value.shape
        where = f"{self.path}: node '{name}'"
        meta = _metadata(node, where)
        if np.any(np.asarray(node.v_reset, dtype=np.float64) != 0):
            raise self.fail(name, "v_reset is not 0: the core resets the membrane to 0 (hard reset) only")
        threshold = self._uniform(name, node.v_threshold, "v_threshold")
        r = self._per_channel(name, node.r, shape, "r")
        if type(node).__name__ == "LIF":
            tau = self._uniform(name, node.tau, "tau")
            if tau <= 0:
                raise self.fail(name, f"tau = {tau:g}: a time constant is positive")
            step = float(np.float32(self.dt / tau))   # dt / tau, 24-bit precision
            decay = 1.0 - step
            mantissa, exponent = math.frexp(decay) if decay > 0 else (0.0, 0)
            if mantissa != 0.5 or not 0 <= 1 - exponent <= MAX_SHIFT:
                raise self.fail(name, f"decay 1 - dt/tau = {decay:g} (dt = {self.dt:g}, tau = {tau:g}) is not a "
                                f"power of two 2^-s with s <= {MAX_SHIFT} (cannot map to a shift); pass --dt if "
                                f"the exporter used another time step")
            gain = (r * step).to(torch.float32).to(torch.float64)
            leak = step * self._per_channel(name, node.v_leak, shape, "v_leak")
        else:
            decay, gain = 1.0, (r * self.dt).to(torch.float32).to(torch.float64)
            leak = torch.zeros(shape[0], dtype=torch.float64)
        terms, bias = self._current(value)
        terms = [FloatSource(t.input, t.op, t.weight * gain.view((-1,) + (1,) * (t.weight.dim() - 1)), t.stride,
                             t.padding) for t in terms]
        carry = meta.get("carry")
        if carry is not None and carry not in self.index:
            raise self.fail(name, f"{META_KEY} metadata: membrane shortcut from '{carry}', not an earlier neuron")
        neuron = {"type": "mlf", "levels": int(meta.get("levels", 1)), "v_th": threshold,
                  "width": float(meta.get("width", 1.0)), "decay": decay}
        stage = self._stage(name, "neuron", terms, bias * gain + leak, neuron=neuron,
                            carry=None if carry is None else self.index[carry])
        return _Value(shape, stage=stage, flat=value.flat)

    def _output(self, name, node, value: _Value) -> _Value:
        if len(value.shape) == 3 and not value.flat:
            raise self.fail(name, f"the output is a {list(value.shape)} map; the readout takes a vector of "
                            f"class scores (put a Flatten and a Linear before it)")
        if len(value.shape) == 3:
            positions = math.prod(value.shape[1:])
            terms = [FloatSource(x, "linear", torch.diag(d.repeat_interleave(positions)))
                     for x, d in self._events(name, value)]
            bias = torch.zeros(math.prod(value.shape), dtype=torch.float64)
        else:
            terms, bias = self._current(value)
        self._stage(name, "readout", terms, bias)
        return value


def import_graph(graph, path, dt: float, timesteps: int, input_scale: float):
    """A :class:`spikecore.models.graphnet.GraphNet` equal to the NIR ``graph`` discretised with time step ``dt``.

    Parameters
    ----------
    graph : nir.NIRGraph
    path : str or Path
        The file it came from, for messages.
    dt : float
        Time step (seconds): ``decay = 1 - dt/tau``, input gain ``r dt / tau`` (LIF) or ``r dt`` (IF).
    timesteps : int
        T, the timesteps of one inference.
    input_scale : float
        Integer pixels = float input x ``input_scale``.

    Raises
    ------
    UserError
        Naming the file and node of anything the core cannot run exactly.
    """
    from spikecore.models.graphnet import GraphNet

    importer = _Importer(graph, path, dt, timesteps, input_scale)
    config = importer.run()
    try:
        net = GraphNet(config)
    except ValueError as exc:
        raise UserError(f"{path}: {exc}") from None
    with torch.no_grad():
        for stage, (weights, bias) in zip(net.stages, importer.params):
            for param, w in zip(stage.weights, weights):
                param.copy_(w)
            stage.bias.copy_(bias)
    return net.eval()


def check_quantization(net, graph, path, arch) -> bool:
    """Compare the quantization an exported file records with the imported network's on ``arch``.

    Returns ``False`` (nothing to compare) when the file records none or was exported for another
    configuration; raises :class:`UserError` naming the node when they differ.
    """
    from spikecore.accel.contract.quantize import quantize_graph

    recorded = _metadata(graph, str(path)).get("arch") or {}
    if recorded.get("fingerprint") != arch.fingerprint():
        return False
    float_graph = lower(net, net.input_shape, net.input_scale)
    stages, scales = quantize_graph(float_graph, arch)
    for stage, scale in zip(stages, scales):
        name = stage.name
        record = _metadata(graph.nodes.get(name), f"{path}: node '{name}'").get("quantization") or {}
        got = {"scale": [float(v) for v in scale], "shift": int(stage.shift),
               "thresholds": stage.thresholds.tolist()}
        for key, expected in record.items():
            if got.get(key) != expected:
                raise UserError(f"{path}: node '{name}': the imported network quantizes to {key} {got.get(key)} "
                                f"on {arch.name}, the file records {expected} (edited after export?)")
    return True


# ---- export -------------------------------------------------------------------------------------

def export_graph(net, arch, dt: float = DEFAULT_DT):
    """The NIR graph of a compilable network, with ``spikecore`` metadata (see ``docs/nir.md``).

    Every stage's sources become Conv2d / Affine nodes (weights on float values, the stage's bias on the
    first), a neuron a LIF (or IF when it does not leak), a sum or gate a Scale of ones summing its
    inputs, the readout the Output node. ``arch`` is the configuration whose quantization is recorded.
    """
    import nir

    from spikecore.accel.contract.quantize import quantize_graph

    if not hasattr(net, "input_shape"):
        raise UserError(f"network {type(net).__name__}: its integer input is unknown (networks trained on the "
                        f"digits pixels export)")
    input_scale = float(getattr(net, "input_scale", 1.0))
    graph = lower(net, tuple(net.input_shape), input_scale)
    quantized, scales = quantize_graph(graph, arch)
    nodes = {"input": nir.Input(input_type={"input": np.array(graph.input_shape)})}
    edges = []
    for i, (stage, q, scale) in enumerate(zip(graph.stages, quantized, scales)):
        for j, src in enumerate(stage.sources):
            prev = "input" if src.input == PIXELS else graph.stages[src.input].name
            gain_in = 1.0 / input_scale if src.input == PIXELS else graph.stages[src.input].gain
            w = (src.weight * (stage.gain / gain_in)).numpy()
            b = (stage.bias * stage.gain if j == 0 else torch.zeros_like(stage.bias)).numpy()
            node = f"{stage.name}.in{j}"
            in_shape = graph.shape_of(src.input)
            if src.op == "conv":
                nodes[node] = nir.Conv2d(input_shape=tuple(in_shape[1:]), weight=w, stride=(src.stride,) * 2,
                                         padding=(src.padding,) * 2, dilation=(1, 1), groups=1, bias=b)
            else:
                if len(in_shape) == 3:
                    nodes[f"{node}.flatten"] = nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0,
                                                           end_dim=-1)
                    edges.append((prev, f"{node}.flatten"))
                    prev = f"{node}.flatten"
                nodes[node] = nir.Affine(weight=w, bias=b)
            edges += [(prev, node), (node, stage.name)]
        if stage.kind == "max":
            raise UserError(f"layer {stage.name}: max pooling of multi-valued events has no NIR node to export to")
        meta = {"kind": stage.kind, "order": i, "gain": stage.gain,
                "quantization": {"scale": [float(v) for v in scale], "shift": int(q.shift),
                                 "thresholds": q.thresholds.tolist()}}
        shape = stage.out_shape
        if stage.kind == "neuron":
            meta.update(levels=stage.neuron.levels, width=float(stage.neuron.width),
                        carry=None if stage.carry is None else graph.stages[stage.carry].name)
            full = lambda v: np.full(shape, float(v))
            if stage.neuron.decay == 1.0:
                node = nir.IF(r=full(1.0 / dt), v_threshold=full(stage.neuron.v_th), v_reset=full(0.0))
            else:
                tau = dt / (1.0 - stage.neuron.decay)
                node = nir.LIF(tau=full(tau), r=full(tau / dt), v_leak=full(0.0), v_threshold=full(stage.neuron.v_th),
                               v_reset=full(0.0))
        elif stage.kind == "readout":
            node = nir.Output(output_type={"output": np.array(shape)})
        else:
            meta["truth_table"] = stage.truth_table
            node = nir.Scale(scale=np.ones(shape))
        node.metadata = {META_KEY: json.dumps(meta)}
        nodes[stage.name] = node
    graph_meta = {"format": META_FORMAT, "version": META_VERSION, "timesteps": graph.timesteps,
                  "input_scale": input_scale, "dt": dt, "arch": {"name": arch.name, "fingerprint": arch.fingerprint()}}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={META_KEY: json.dumps(graph_meta)}, type_check=True)


def write_nir(graph, path) -> None:
    """Write a NIR graph atomically (a complete file appears, or none)."""
    import nir

    from spikecore.atomic import atomic_write_bytes

    buffer = io.BytesIO()
    nir.write(buffer, graph)
    atomic_write_bytes(Path(path), buffer.getvalue())


# ---- command line -------------------------------------------------------------------------------

def _positive(value, what: str):
    """``value`` if it is a positive finite number (or ``None``), else :class:`UserError` naming ``what``."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not math.isfinite(value) or value <= 0):
        raise UserError(f"{what} must be a positive number, got {value!r}")
    return value


def network_from_nir(path, arch, dt=None, timesteps=None, input_scale=None) -> tuple:
    """The network of the NIR file ``path``: ``(GraphNet, dt, quantization_checked)``.

    ``dt``, ``timesteps`` and ``input_scale`` override what the file records (its spikecore metadata); a
    value neither given nor recorded is refused in one line. ``quantization_checked`` says whether the file
    carried our exporter's integer parameters and the quantizer reproduced them for ``arch``.
    """
    graph = read_nir(path)
    meta = _metadata(graph, str(path))
    if meta and (meta.get("format") != META_FORMAT or meta.get("version") != META_VERSION):
        raise UserError(f"{path}: {META_KEY} metadata of format {meta.get('format')!r} version "
                        f"{meta.get('version')!r} is not supported")
    dt = _positive(dt, "--dt") or _positive(meta.get("dt", DEFAULT_DT), f"{path}: recorded dt")
    timesteps = timesteps if timesteps is not None else meta.get("timesteps")
    input_scale = _positive(input_scale, "--input-scale") or \
        _positive(meta.get("input_scale"), f"{path}: recorded input_scale")
    if timesteps is None or input_scale is None:
        raise UserError(f"{path}: the file does not record {'--timesteps' if timesteps is None else '--input-scale'}"
                        f"; give it (T, and integer pixels = float input x scale, e.g. 16 for the digits)")
    lo, hi = CONFIG_INT_RANGES["timesteps"]
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or not lo <= timesteps <= hi:
        raise UserError(f"--timesteps must be an integer in [{lo}, {hi}], got {timesteps!r}")
    net = import_graph(graph, path, dt, timesteps, float(input_scale))
    return net, dt, check_quantization(net, graph, path, arch)


def cmd_import(args) -> int:
    """``accel import MODEL.nir --out CHECKPOINT``."""
    from spikecore.atomic import atomic_write_bytes
    from spikecore.models.graphnet import GRAPH_MODEL
    from spikecore.models.train import CHECKPOINT_FORMAT, CHECKPOINT_VERSION

    from spikecore.accel.contract.config import load_arch
    from spikecore.accel.flows.outputs import claim_output_file

    arch = load_arch(args.arch)
    claim_output_file(args.out, "import")
    net, dt, checked = network_from_nir(args.model, arch, args.dt, args.timesteps, args.input_scale)
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "model": GRAPH_MODEL,
               "config": net.config, "state_dict": net.state_dict(), "metrics": {},
               "source": {"nir": str(args.model), "dt": dt}}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(Path(args.out), buffer.getvalue())
    kinds = [spec["kind"] for spec in net.specs]
    print(f"imported {len(kinds)} stages ({', '.join(f'{kinds.count(k)} {k}' for k in dict.fromkeys(kinds))}) "
          f"from {args.model}, T = {net.timesteps}, dt = {dt:g}, input {list(net.input_shape)} x {net.input_scale:g}"
          + ("; quantization matches the file's" if checked else "") + f"; checkpoint {args.out}")
    return 0


def cmd_export(args) -> int:
    """``accel export CHECKPOINT --nir MODEL.nir``."""
    from spikecore.accel.contract.checkpoint import load_checkpoint, set_stream_mode
    from spikecore.accel.contract.config import load_arch
    from spikecore.accel.flows.outputs import claim_output_file

    arch = load_arch(args.arch)
    claim_output_file(args.nir, "export")
    net, _ = load_checkpoint(args.checkpoint)
    set_stream_mode(net, args.stream_mode, args.checkpoint)
    graph = export_graph(net, arch, _positive(args.dt, "--dt"))
    write_nir(graph, args.nir)
    print(f"NIR written to {args.nir}: {len(graph.nodes)} nodes, {len(graph.edges)} edges")
    return 0


def add_parsers(sub, arch_arg, stream_mode_arg) -> None:
    """The ``import`` and ``export`` subcommands (``arch_arg``, ``stream_mode_arg``: the CLI's shared options)."""
    p = sub.add_parser("import", help="a NIR graph (snnTorch, SpikingJelly, Norse, Sinabs, ...) -> a checkpoint")
    p.add_argument("model", metavar="MODEL.nir")
    p.add_argument("--out", required=True, metavar="CHECKPOINT")
    p.add_argument("--timesteps", type=int, default=None, help="T (default: as the file records)")
    p.add_argument("--input-scale", type=float, default=None,
                   help="integer pixels = float input x scale, e.g. 16 for the digits (default: as recorded)")
    p.add_argument("--dt", type=float, default=None,
                   help=f"time step of the discretisation (default: as recorded, else {DEFAULT_DT:g})")
    arch_arg(p)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="a checkpoint -> NIR, MLF levels, gates and quantization as metadata")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("--out", "--nir", dest="nir", required=True, metavar="MODEL.nir",
                   help="the NIR file to write (--nir is the earlier spelling)")
    p.add_argument("--dt", type=float, default=DEFAULT_DT, help=f"time step recorded (default {DEFAULT_DT:g})")
    arch_arg(p)
    stream_mode_arg(p)
    p.set_defaults(func=cmd_export)
