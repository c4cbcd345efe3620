"""Helpers shared by the bad-input tests (tests/test_bad_inputs.py and tests/test_hostile_*.py): the promise
that a refused command prints exactly one line ``accel COMMAND: error: MESSAGE`` naming what is wrong, and
that every case is a row of docs/bad-inputs.md."""
from pathlib import Path

import torch

from spikecore.accel.contract.checkpoint import shipped_checkpoint_path

TABLE = Path(__file__).parents[1] / "docs" / "bad-inputs.md"


def write(path: Path, content) -> Path:
    """Write text or bytes to ``path``; returns it."""
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return path


def edited_checkpoint(tmp: Path, edit) -> Path:
    """The shipped checkpoint with ``edit(payload)`` applied, saved as ``tmp/edited.pt``."""
    payload = torch.load(shipped_checkpoint_path(), weights_only=True)
    edit(payload)
    torch.save(payload, tmp / "edited.pt")
    return tmp / "edited.pt"


def assert_one_error_line(stderr: str, command: str, needles=()) -> str:
    """Exactly one non-empty line on stderr, ``accel COMMAND: error: ...``, holding every needle; returns it."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"accel {command}: error: "), lines[0]
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def assert_table_lists(row_ids) -> None:
    """Every case id is a row of docs/bad-inputs.md."""
    table = TABLE.read_text()
    for row_id in row_ids:
        assert f"`{row_id}`" in table, row_id
