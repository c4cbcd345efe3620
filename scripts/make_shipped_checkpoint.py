"""Regenerate the shipped digits checkpoint (accel/data/digits_checkpoint.pt) with the default settings.

    python scripts/make_shipped_checkpoint.py
"""
import shutil
import sys
import tempfile
from pathlib import Path

from spikecore.accel.flows.trainconfig import load_train_config
from spikecore.models.train import train_digits

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    config = load_train_config(None)
    with tempfile.TemporaryDirectory() as tmp:
        metrics = train_digits(tmp, config["model"], **config["train"])
        shutil.copyfile(Path(tmp) / "checkpoint.pt", ROOT / "accel" / "data" / "digits_checkpoint.pt")
    print(f"shipped checkpoint: test accuracy {metrics['test_accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
