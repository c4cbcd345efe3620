"""What an inference's input is, for every implementation: an integer image, the same at every timestep, or
one integer frame per timestep (an event camera's binned events), and how a core with ``event_input`` receives
the frames (``docs/core.md``, "Event input").

This module only reshapes and lists: the golden model, the simulator's engines and the RTL each compute what
the input does on their own. :func:`input_frames` gives every implementation the same ``[N, T, n_inputs]``
frames; :func:`input_words` lists one inference's input events as the host writes them into the inputs memory
of an ``event_input`` core: one word ``(value, index, timestep)`` per nonzero value, sorted by timestep, then
index.
"""
from __future__ import annotations

import numpy as np

from spikecore.accel.contract.config import ArchConfig
from spikecore.accel.contract.layouts import input_layout
from spikecore.errors import UserError


def input_frames(program, pixels) -> np.ndarray:
    """The frames an inference of ``program`` sees, int64 ``[N, T, n_inputs]``.

    ``pixels`` is ``[N, ...]`` with ``n_inputs`` values an item (an image, the same at every timestep: direct
    encoding; ``[N, n_inputs]``, ``[N, C, H, W]``, or another shape of as many values, such as the digits'
    ``[1, 8, 8]`` for a flat MLP) or ``[N, T, ...]`` with ``n_inputs`` values a frame (a frame per timestep;
    ``T`` must be the program's). Raises ``ValueError`` for any other shape.
    """
    array = np.asarray(pixels.numpy() if hasattr(pixels, "numpy") else pixels)
    n_inputs, timesteps = program.n_inputs, program.timesteps
    if array.ndim >= 2 and int(np.prod(array.shape[1:])) == n_inputs:  # any shape of n_inputs values
        flat = array.reshape(len(array), 1, n_inputs).astype(np.int64)
        return np.broadcast_to(flat, (len(array), timesteps, n_inputs))
    if array.ndim >= 3 and array.shape[1] == timesteps and int(np.prod(array.shape[2:])) == n_inputs:
        return array.reshape(len(array), timesteps, n_inputs).astype(np.int64)
    raise ValueError(f"inputs of shape {list(array.shape)}: expected [N, {n_inputs}] or "
                     f"[N, {', '.join(map(str, program.input_shape))}] (an image), or the same with the "
                     f"{timesteps} timesteps after N (a frame per timestep)")


def is_static(frames: np.ndarray) -> bool:
    """Whether every inference's frames are the same at every timestep (an image, direct encoding)."""
    return bool((frames == frames[:, :1]).all())


def check_frames(program, arch: ArchConfig, frames: np.ndarray, source: str = "inputs") -> None:
    """Refuse frames that the core of ``arch`` cannot take, in one line naming ``source`` and the inference:
    values outside ``0 .. program.input_max``; frames that change over time on a core without ``event_input``;
    on an ``event_input`` core, more input events than ``memories.inputs`` in one inference or more than an
    event region (``memories.events``) in one timestep."""
    if frames.size and (frames.min() < 0 or frames.max() > program.input_max):
        number = int(np.argwhere((frames < 0) | (frames > program.input_max))[0][0])
        raise UserError(f"{source}: input {number} has values outside 0..{program.input_max}, the program's range")
    if not arch.event_input:
        if not is_static(frames):
            number = int(np.argwhere((frames != frames[:, :1]).any(axis=(1, 2)))[0][0])
            raise UserError(f"{source}: input {number} changes from one timestep to the next; frames need a core "
                            f"with 'event_input: true' (architecture {arch.name} scans one image)")
        return
    per_timestep = (frames != 0).sum(axis=2)
    totals = per_timestep.sum(axis=1)
    if totals.size and totals.max() > arch.memories.inputs:
        number = int(np.argmax(totals))
        raise UserError(f"{source}: input {number} has {int(totals[number])} input events, more than "
                        f"memories.inputs = {arch.memories.inputs} of architecture {arch.name}")
    if per_timestep.size and per_timestep.max() > arch.memories.events:
        number, timestep = (int(v) for v in np.argwhere(per_timestep == per_timestep.max())[0])
        raise UserError(f"{source}: input {number} has {int(per_timestep[number, timestep])} input events at "
                        f"timestep {timestep}, more than an event region holds (memories.events = "
                        f"{arch.memories.events})")


def input_words(arch: ArchConfig, frames: np.ndarray) -> list:
    """One inference's input events as packed words of the inputs memory of an ``event_input`` core: a word
    ``(value, index, timestep)`` for each nonzero value of ``frames`` (``[T, n_inputs]``), in timestep order,
    then index order."""
    if not arch.event_input:
        raise ValueError(f"architecture {arch.name} has no event input")
    timesteps, indices = np.nonzero(np.asarray(frames))
    return input_layout(arch).pack(value=np.asarray(frames)[timesteps, indices], index=indices, timestep=timesteps)


def host_inputs(program, arch: ArchConfig, frames: np.ndarray) -> list:
    """What the host writes into the inputs memory for each inference (``[N, T, n_inputs]`` frames): the pixels
    of the first frame (a core that scans one image), or the input words (:func:`input_words`)."""
    if arch.event_input:
        return [input_words(arch, sample) for sample in frames]
    return [[int(v) for v in sample[0]] for sample in frames]
