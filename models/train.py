"""Training of the digits network: progress bar, checkpoint, metrics JSON.

Checkpoints are plain dicts of tensors and numbers, so ``torch.load(path, weights_only=True)`` reads
them; nothing in a checkpoint can execute code.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from .atomic import atomic_write_bytes
from .digits import DigitsNet, load_digits_split

CHECKPOINT_FORMAT = "spikecore-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(net: DigitsNet, path: Path, metrics: dict) -> None:
    import io

    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": "digits",
        "config": dict(net.config),
        "state_dict": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "metrics": metrics,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def evaluate(net: DigitsNet, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            correct += int((net(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    return correct / len(x)


def train_digits(out_dir, model_config: dict | None = None, epochs: int = 40, batch_size: int = 32,
                 lr: float = 3e-3, weight_decay: float = 1e-4, seed: int = 0, progress: bool = True) -> dict:
    """Train :class:`DigitsNet` on the fixed digits split; writes ``checkpoint.pt`` and ``metrics.json``.

    Adam with a cosine learning-rate schedule; deterministic for a given seed and thread count.
    Returns the metrics dict (per-epoch loss and accuracies, final test accuracy, wall time).
    """
    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    x_tr, y_tr, x_te, y_te = load_digits_split()
    net = DigitsNet(**(model_config or {}))
    optimiser = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(x_tr) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    history = []
    start = time.perf_counter()
    bar = tqdm(range(epochs), desc="train digits", unit="epoch", disable=not progress)
    for epoch in bar:
        net.train()
        order = torch.randperm(len(x_tr), generator=generator)
        total_loss, correct = 0.0, 0
        for i in range(0, len(x_tr), batch_size):
            idx = order[i:i + batch_size]
            logits = net(x_tr[idx])
            loss = loss_fn(logits, y_tr[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total_loss += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y_tr[idx]).sum())
        test_acc = evaluate(net, x_te, y_te)
        history.append({"epoch": epoch + 1, "loss": total_loss / len(x_tr), "train_accuracy": correct / len(x_tr),
                        "test_accuracy": test_acc})
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", test=f"{test_acc:.4f}")
    metrics = {
        "dataset": "digits",
        "train_images": len(x_tr),
        "test_images": len(x_te),
        "test_accuracy": history[-1]["test_accuracy"],
        "train_seconds": time.perf_counter() - start,
        "threads": torch.get_num_threads(),
        "history": history,
    }
    save_checkpoint(net, out_dir / "checkpoint.pt", metrics)
    atomic_write_bytes(out_dir / "metrics.json", json.dumps(metrics, indent=2).encode())
    _plot_curves(history, out_dir / "curves.png")
    return metrics


def _plot_curves(history, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(epochs, [h["loss"] for h in history])
    ax_loss.set_xlabel("epoch"), ax_loss.set_ylabel("training loss")
    ax_acc.plot(epochs, [h["train_accuracy"] for h in history], label="train")
    ax_acc.plot(epochs, [h["test_accuracy"] for h in history], label="test")
    ax_acc.set_xlabel("epoch"), ax_acc.set_ylabel("accuracy"), ax_acc.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
