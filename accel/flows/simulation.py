"""Simulation as a flow: the digits test images, a batch run with progress, the report and its plot.

The numbers come from :mod:`spikecore.sim` (the engines and the cost model); this module turns them into the
``accel sim`` report (``docs/core.md`` lists its fields) for the command line, sweeps and :mod:`spikecore.api`.
"""
from __future__ import annotations

from pathlib import Path

from spikecore.errors import UserError


def digits_test_images(samples: int | None = None):
    """The digits test set ``(pixels [N, 1, 8, 8], labels [N])``, its first ``samples`` images when given."""
    from spikecore.models import load_digits_split

    _, _, x_te, y_te = load_digits_split()
    if samples is not None:
        if samples < 1:
            raise UserError(f"--samples must be at least 1, got {samples}")
        if samples > len(x_te):
            raise UserError(f"--samples {samples}: the digits test set has {len(x_te)} images")
        x_te, y_te = x_te[:samples], y_te[:samples]
    return x_te, y_te


#: The datasets ``--dataset`` names; any other value is a folder of ``.npz`` samples.
DATASETS = ("digits", "cifar10", "dvs-gesture", "cifar10-dvs")
#: Most samples read from a folder of ``.npz`` files.
MAX_NPZ_SAMPLES = 100_000


def test_images(dataset: str = "digits", samples: int | None = None, root=None, program=None):
    """Integer test inputs ``(pixels [N, ...] int64, labels [N])`` of ``dataset`` (``--dataset``), the first
    ``samples`` of them when given.

    ``digits``: scikit-learn's digits split (pixels 0..16); ``cifar10``: the CIFAR-10 test batch under ``root``
    (``--data-root``; pixels 0..255, for networks trained with ``dataset.normalize: false``); ``dvs-gesture`` and
    ``cifar10-dvs``: the test recordings under ``root`` binned into count frames ``[N, T, 2, H, W]`` by the
    training loaders, with the binning the ``program`` records (``meta["input"]``, from the checkpoint; the
    dataset's defaults otherwise, at the program's ``T`` and frame size), counts above ``program.input_max``
    clipped to it (``docs/numerics.md``, "Event input"); a folder: its ``*.npz`` files in name order, each
    holding an integer ``image`` (the Program's input, any shape with as many values, or a frame per timestep:
    ``[T, ...]``) and an integer ``label``.
    """
    if samples is not None and samples < 1:
        raise UserError(f"--samples must be at least 1, got {samples}")
    if dataset == "digits":
        return digits_test_images(samples)
    if dataset in ("dvs-gesture", "cifar10-dvs"):
        images, labels = _event_test_set(dataset, root, program, samples)
    elif dataset == "cifar10":
        images, labels = _cifar10_test_set(root)
    elif Path(dataset).is_dir():
        images, labels = _npz_samples(Path(dataset), samples)
    else:
        raise UserError(f"--dataset {dataset}: not one of {', '.join(DATASETS)} and not a folder of .npz samples")
    if samples is not None:
        if samples > len(images):
            raise UserError(f"--samples {samples}: the {dataset} test set has {len(images)} images")
        images, labels = images[:samples], labels[:samples]
    return images, labels


def event_binning(dataset: str, program) -> dict:
    """How the test recordings of ``dataset`` (``dvs-gesture`` or ``cifar10-dvs``) are binned for ``program``:
    the loader's keyword arguments. The Program's ``meta["input"]["dataset"]`` (the training run's binning) is
    read as untrusted input: each value is checked."""
    if program is None:
        raise UserError(f"--dataset {dataset}: the recordings are binned as the Program of a network trained on "
                        f"them records; accel sim and accel verify take them, accel sweep does not yet")
    record = program.meta.get("input")
    if not isinstance(record, dict) or record.get("encoding") != "events":
        raise UserError(f"--dataset {dataset}: the program was not compiled from a network trained on event "
                        f"frames (its manifest's meta.input says so when it was)")
    recorded = record.get("dataset") or {}
    if not isinstance(recorded, dict):
        raise UserError("program manifest: meta.input.dataset must be a mapping")
    name = dataset.replace("-", "_")
    if recorded.get("name", name) != name:
        raise UserError(f"--dataset {dataset}: the program's network was trained on {recorded.get('name')!r}")
    shape = tuple(program.input_shape)
    if len(shape) != 3 or shape[0] != 2 or shape[1] != shape[2]:
        raise UserError(f"--dataset {dataset}: the program takes {list(shape)}, not square 2-polarity frames")
    binning = {"timesteps": program.timesteps, "size": shape[1],
               "dt_ms": recorded.get("dt_ms", 30.0 if name == "dvs_gesture" else 10.0)}
    if name == "cifar10_dvs":
        binning["downsample"] = recorded.get("downsample", 3.04)
    for key, value in binning.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1e6:
            raise UserError(f"program manifest: meta.input.dataset.{key} = {str(value)[:40]!r} is not a positive "
                            f"number")
    return binning


def _event_test_set(dataset: str, root, program, samples):
    import torch

    from spikecore.models.datasets import CIFAR10DVS, DVSGesture, DatasetFormatError, DatasetNotFoundError

    binning = event_binning(dataset, program)
    if root is None:
        raise UserError(f"--dataset {dataset} needs --data-root DIR (the folder of the recordings)")
    try:
        data = (DVSGesture if dataset == "dvs-gesture" else CIFAR10DVS)(root, train=False, **binning)
        count = len(data) if samples is None else min(samples, len(data))
        items = [data[i] for i in range(count)]
    except (DatasetNotFoundError, DatasetFormatError, ValueError) as exc:
        raise UserError(f"--dataset {dataset}: {str(exc).splitlines()[0]}") from None
    if not items:
        raise UserError(f"--dataset {dataset}: the test split under {root} holds no samples")
    if samples is not None and samples > len(data):
        raise UserError(f"--samples {samples}: the {dataset} test set has {len(data)} samples")
    frames = torch.stack([frames for frames, _ in items]).round().to(torch.int64)
    return frames.clamp(max=program.input_max), torch.tensor([label for _, label in items])


def _cifar10_test_set(root):
    from spikecore.models.datasets import DatasetFormatError, DatasetNotFoundError, load_cifar10

    if root is None:
        raise UserError("--dataset cifar10 needs --data-root DIR (the cifar-10-batches-py folder or its parent)")
    try:
        images, labels = load_cifar10(root, train=False)
    except (DatasetNotFoundError, DatasetFormatError) as exc:
        raise UserError(str(exc).splitlines()[0]) from None
    return images.long(), labels


def _npz_samples(folder: Path, samples: int | None):
    import numpy as np
    import torch

    files = sorted(folder.glob("*.npz"))[:samples or MAX_NPZ_SAMPLES]
    if not files:
        raise UserError(f"--dataset {folder}: holds no .npz samples")
    images, labels = [], []
    for path in files:
        try:
            with np.load(path, allow_pickle=False) as data:
                image, label = np.asarray(data["image"]), np.asarray(data["label"])
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise UserError(f"{path}: not a sample (.npz with integer arrays 'image' and 'label'): "
                            f"{type(exc).__name__}") from None
        if image.dtype.kind not in "iub" or label.dtype.kind not in "iu" or label.size != 1:
            raise UserError(f"{path}: 'image' must hold integers and 'label' one integer")
        if image.size and (image.min() < 0 or image.max() >= 1 << 24):
            raise UserError(f"{path}: 'image' values must lie in [0, 2^24)")
        if images and image.shape != images[0].shape:
            raise UserError(f"{path}: image shape {list(image.shape)} differs from {files[0].name}'s "
                            f"{list(images[0].shape)}")
        images.append(image.astype(np.int64))
        labels.append(int(label.reshape(-1)[0]))
    return torch.from_numpy(np.stack(images)), torch.tensor(labels)


def core_inputs(program, arch, pixels):
    """``pixels`` as the simulator takes them: int64 ``[N, n_inputs]`` for images (the same at every timestep),
    ``[N, T, n_inputs]`` for frames (:func:`spikecore.accel.contract.inputs.input_frames`), after refusing in
    one line what does not fit the Program's input or the core
    (:func:`spikecore.accel.contract.inputs.check_frames`)."""
    import numpy as np

    from spikecore.accel.contract.inputs import check_frames, input_frames

    array = np.asarray(pixels.numpy() if hasattr(pixels, "numpy") else pixels)
    try:
        frames = input_frames(program, array)
    except ValueError:
        raise UserError(f"the program takes {program.n_inputs} inputs of at most {program.input_max} (or a frame "
                        f"of them per timestep), the test images are {int(np.prod(array.shape[1:]))} values "
                        f"{list(array.shape[1:])}: choose the --dataset the network was trained on") from None
    if array.size and (int(array.max()) > program.input_max or int(array.min()) < 0):
        raise UserError(f"the program takes {program.n_inputs} inputs of 0..{program.input_max}, the test "
                        f"inputs have values {int(array.min())}..{int(array.max())}: choose the --dataset the "
                        f"network was trained on")
    static = frames.strides[1] == 0  # an image, repeated over the timesteps (not copied)
    if arch.event_input or not static:
        check_frames(program, arch, frames, "the test inputs")
    return frames[:, 0] if static else np.ascontiguousarray(frames)


def simulate_images(program, arch, pixels, progress=True, keep_events=True, engine="auto") -> list:
    """One :class:`spikecore.sim.engine.SimResult` per image, with a progress bar over the images.

    ``keep_events=False`` is the performance mode (accounts only); ``engine`` is ``auto``, ``dense`` or
    ``tables`` (``docs/core.md``). Images that do not fit the Program's input are refused in one line.
    """
    from tqdm import tqdm

    from spikecore.sim.engine import DenseEngineUnsuitable, simulate_batch

    inputs = core_inputs(program, arch, pixels)
    with tqdm(total=len(inputs), desc="simulate", unit="img", disable=not progress) as bar:
        try:
            return simulate_batch(program, arch, inputs, bar, keep_events=keep_events, engine=engine)
        except DenseEngineUnsuitable as exc:  # only with an explicit --engine dense
            raise UserError(f"--engine dense: {exc}; use --engine tables or auto") from None


def sim_report(program, arch, results, labels, pixels, energy=None) -> dict:
    """The ``accel sim`` report of ``results`` (without its header): per-inference means of the cycle account,
    memory traffic and energy, plus the accuracy against ``labels`` (``None`` without labels; docs/core.md)."""
    import numpy as np

    from spikecore.sim.cost import energy_of, layer_accesses, load_energy_model, setup_accesses
    from spikecore.sim.engine import LayerAccount

    energy = energy or load_energy_model(None)
    totals = [LayerAccount(layer.name) for layer in program.layers]
    for r in results:
        for total, account in zip(totals, r.layers):
            total.add(account)
    n = len(results)
    cycles = np.array([r.cycles for r in results])
    predictions = np.array([int(np.argmax(r.logits)) for r in results])
    per_layer = []
    for layer, total in zip(program.layers, totals):
        entry = {k: v / n for k, v in total.__dict__.items() if k != "name"}
        neurons = layer.channels * layer.positions
        accesses = {name: (r / n, w / n) for name, (r, w) in layer_accesses(total, arch).items()}
        entry.update(name=layer.name, neurons=neurons,
                     firing_events_per_neuron_per_step=(total.output_events / n / program.timesteps / neurons
                                                        if layer.fires else None),
                     lane_utilization=(total.ac_ops / n / (arch.lanes * max(total.accumulate_cycles / n, 1))),
                     memory_reads={name: r for name, (r, _) in accesses.items()},
                     memory_writes={name: w for name, (_, w) in accesses.items()},
                     energy_ops_pj=total.ac_ops / n * energy.e_ac_pj,
                     energy_memory_pj=energy_of(accesses, arch, energy))
        per_layer.append(entry)
    inputs = core_inputs(program, arch, pixels)
    # the events region 0 receives per inference: an image's nonzero pixels once, or (event_input) every
    # timestep's input words, an image's nonzero pixels at each timestep
    input_events = float(np.count_nonzero(inputs) / n) * (program.timesteps if arch.event_input and inputs.ndim == 2
                                                          else 1)
    setup = setup_accesses(program.state_rows, program.n_inputs, input_events, arch, program.timesteps)
    setup_pj = energy_of(setup, arch, energy)
    ops_pj = sum(l["energy_ops_pj"] for l in per_layer)
    memory_pj = sum(l["energy_memory_pj"] for l in per_layer) + setup_pj
    sops = sum(l["ac_ops"] for l in per_layer)
    clock_hz = arch.clock_mhz * 1e6
    return {
        "samples": n,
        "arch": arch.name,
        "arch_fingerprint": arch.fingerprint(),
        "accuracy": None if labels is None else float((predictions == np.asarray(labels)).mean()),
        "cycles_mean": float(cycles.mean()),
        "cycles_min": int(cycles.min()),
        "cycles_max": int(cycles.max()),
        "cycles": cycles.tolist(),
        "clock_mhz": arch.clock_mhz,
        "latency_us_mean": float(cycles.mean() / clock_hz * 1e6),
        "throughput_inferences_per_s": float(clock_hz / cycles.mean()),
        # with event_input the input scans follow each inference's input words: their mean
        "setup_cycles": (float(np.mean([r.setup_cycles for r in results])) if arch.event_input
                         else int(results[0].setup_cycles)),
        "setup_memory_accesses": {name: {"reads": r, "writes": w} for name, (r, w) in setup.items()},
        "synaptic_ops_per_inference": sops,
        "energy_model": {"e_ac_pj": energy.e_ac_pj, "sram_pj_per_64bit": energy.sram_pj_per_64bit},
        "energy_ops_pj": ops_pj,
        "energy_memory_pj": memory_pj,
        "energy_total_pj": ops_pj + memory_pj,
        "pj_per_sop": (ops_pj + memory_pj) / sops if sops else None,
        "saturations": int(sum(r.saturations for r in results)),
        "trace_overflows": int(sum(r.trace_overflow for r in results)),
        "layers": per_layer,
    }


def plot_sim_report(report: dict, path: Path) -> None:
    """Cycles, lane utilisation, energy and firing rate per layer of a :func:`sim_report`, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spikecore.atomic import atomic_save_figure

    layers = report["layers"]
    names = [l["name"] for l in layers]
    fig, ((ax_c, ax_u), (ax_e, ax_f)) = plt.subplots(2, 2, figsize=(10, 7))
    acc = [l["accumulate_cycles"] for l in layers]
    upd = [l["update_cycles"] for l in layers]
    ax_c.bar(names, acc, label="accumulate")
    ax_c.bar(names, upd, bottom=acc, label="update")
    ax_c.set_ylabel("cycles per inference"), ax_c.set_title("cycles per layer"), ax_c.legend()
    ax_u.bar(names, [l["lane_utilization"] for l in layers], color="tab:purple")
    ax_u.set_ylim(0, 1), ax_u.set_ylabel("lane additions / lane-cycles"), ax_u.set_title("AC-lane utilization")
    ops = [l["energy_ops_pj"] / 1e3 for l in layers]
    mem = [l["energy_memory_pj"] / 1e3 for l in layers]
    ax_e.bar(names, ops, label="operations")
    ax_e.bar(names, mem, bottom=ops, label="memory")
    ax_e.set_ylabel("nJ per inference"), ax_e.legend()
    ax_e.set_title(f"energy ({report['pj_per_sop']:.2f} pJ/SOP overall)" if report["pj_per_sop"] else "energy")
    rates = [l["firing_events_per_neuron_per_step"] or 0.0 for l in layers]
    ax_f.bar(names, rates, color="tab:green")
    ax_f.set_ylabel("events / neuron / timestep"), ax_f.set_title("firing rate")
    fig.tight_layout()
    atomic_save_figure(fig, path)
