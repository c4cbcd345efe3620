"""The core's schedule and its cycle costs (``docs/core.md``, "Schedule"), named once.

This module is where the cycle formula lives: both engines (``sim/tables.py`` event by event,
``sim/dense.py`` from aggregate counts) and the memory-traffic model (``sim/cost.py``) call the functions
below, and ``docs/core.md`` writes the same formula with the same state names. Every function is linear in
its counts, so it takes integers or numpy arrays of them (one per image) alike.

Each state of the controller costs one cycle, except ACC, which costs one cycle per addition, ``a(v)`` for
an event of value ``v`` (:func:`additions`; 1 in a ``max`` stage's passes), and EMIT, which costs one cycle
per emitted event. With ``S = update_steps`` and ``A = acc_slots``, one inference takes (timestep-major)::

    cycles = CLEAR + SCAN
           + sum over t, passes l of [ DESC + LATCH + EV
                                       + sum_events (EV + PTR + FAN + SYN + count_e * (SYN + WRD + a(v_e)))
                                       + update_l * (URD + sum_groups (c * S + EMIT * emitted_g)) + NEXT ]

    CLEAR = state_rows * max(S, A),   SCAN = n_inputs + 1,   c = URD + UWR (+ USUM when S > 1)

and in the layer-major schedule, once per pass (``t_0``: the first timestep the input fired in)::

    cycles = CLEAR + SCAN
           + sum over passes l of [ DESC + LATCH + EV
                                    + sum_trains (EV + PTR + FAN + SYN
                                                  + count_e * (SYN + WRD + a(v_e[t_0])
                                                               + sum_{t > t_0: v_e[t] > 0} (ARD + a(v_e[t]))))
                                    + update_l * (URD + sum_groups (c * S * T + EMIT * trains_emitted_g)) + NEXT ]

On a core with ``event_input`` (timestep-major only) the input scan runs at the start of every timestep over
that timestep's ``w_t`` input words (:func:`event_scan_cycles_of`), so ``SCAN = n_inputs + 1`` once becomes
``sum_t (w_t + 2)``, with ``w_t`` the nonzero values of frame ``t`` (:func:`scan_words`).
"""
from __future__ import annotations

import numpy as np

# -- cycles of each state (docs/core.md, "Schedule") -----------------------------------------------------------
DESC = 1    # read the pass descriptor
LATCH = 1   # latch it
EV = 1      # read an input event (one more EV finds no event left)
PTR = 1     # read the event's pointer word
FAN = 1     # latch its synapse rows' start and count
SYN = 1     # read a synapse row (one more SYN finds the event's rows done)
WRD = 1     # read the weight word and the accumulator word
ACC = 1     # per addition into the accumulators: a(v) of them for an event of value v, writing back on the last
ARD = 1     # layer-major, later timesteps of a synapse row: read the accumulator word (the weight word stays)
URD = 1     # read a group step's state, params and accumulator words (one more URD finds the groups done)
USUM = 1    # register the level sums (only with update_steps > 1)
UWR = 1     # update and write a group step's state
EMIT = 1    # per emitted event: append it to the output region and the trace
NEXT = 1    # go to the next pass, timestep, or finish
SCAN = 1        # per input the input scan reads: a pixel, or (event_input) a word of the timestep
SCAN_DRAIN = 1  # the cycle after the last pixel, which appends its event (a core without event_input)
SCAN_PRIME = 1  # event_input: present the timestep's first word to the inputs memory (primed = 0)
SCAN_STOP = 1   # event_input: find the word of another timestep, or none left, and end the scan

#: Cycles of a pass run besides its accumulate and update phases.
PASS_CYCLES = DESC + LATCH + NEXT
#: Cycles of an input event besides its synapse rows: EV, PTR, FAN and the SYN that finds its rows done.
EVENT_CYCLES = EV + PTR + FAN + SYN


def additions(values, bitserial: bool, maximum: bool = False):
    """``a(v)``: the accumulator additions (ACC cycles) of an event of value ``v``.

    ``a(v) = v`` in the ``repeat`` multi-value mode (``v`` additions of the weight word) and ``popcount(v)``
    in the ``bitserial`` mode (one addition of ``w << b`` per set bit ``b``); for a pass of a ``max`` stage
    ``a(v) = 1`` for every event ``v > 0`` (one comparison ``acc = max(acc, v)``) in either mode.

    Parameters
    ----------
    values : numpy array or torch tensor of non-negative integers (integer or floating dtype)
    bitserial : bool
    maximum : bool
        The pass belongs to a ``max`` stage.

    Returns
    -------
    The same kind of array, element-wise ``a(v)``.
    """
    if maximum:
        return values * 0 + (values > 0)
    if not bitserial:
        return values
    count = values * 0
    remaining = values
    while bool((remaining != 0).any()):
        count = count + remaining % 2
        remaining = remaining // 2
    return count


def update_step_cycles(update_steps: int) -> int:
    """``c``: cycles of one update step before its events, ``URD + UWR``, plus ``USUM`` when a group is
    updated in ``update_steps > 1`` steps (the neuron unit registers its level sums between read and write)."""
    return URD + (USUM if update_steps > 1 else 0) + UWR


def accumulate_cycles_of(events, rows, adds, phases=1):
    """Cycles of timestep-major accumulate phases.

    ``phases * EV + events * (EV + PTR + FAN + SYN) + rows * (SYN + WRD) + adds * ACC``: per phase the EV
    that finds no event left, per input event :data:`EVENT_CYCLES`, per synapse row a SYN and a WRD, and
    the ACC cycles.

    Parameters
    ----------
    events : int or array
        Input events read.
    rows : int or array
        Synapse rows of those events.
    adds : int or array
        ``sum_events count_e * a(v_e)``: the additions into accumulator words (lane additions / ``lanes``).
    phases : int
        Accumulate phases (pass runs) summed.
    """
    return phases * EV + events * EVENT_CYCLES + rows * (SYN + WRD) + adds * ACC


def layer_major_accumulate_cycles(trains, train_rows, acc_updates, adds):
    """Cycles of a layer-major pass's accumulate phase.

    ``EV + trains * (EV + PTR + FAN + SYN) + train_rows * (SYN + WRD) + (acc_updates - train_rows) * ARD
    + adds * ACC``: per event word (a neuron's train) :data:`EVENT_CYCLES`; per synapse row a SYN and, at the
    first timestep the input fired in, a WRD; an ARD at each later such timestep (a train holds at least
    one nonzero value, so ``acc_updates - train_rows`` of the accumulator reads are ARDs); the ACC cycles;
    and the EV that finds no event left.

    Parameters
    ----------
    trains : int or array
        Event words (trains) read.
    train_rows : int or array
        Synapse rows of those trains.
    acc_updates : int or array
        Accumulator words added into: per synapse row, one per timestep its input fired in.
    adds : int or array
        ``sum_trains count_e * sum_t a(v_e[t])``: the additions into accumulator words (lane additions /
        ``lanes``).
    """
    return EV + trains * EVENT_CYCLES + train_rows * (SYN + WRD) + (acc_updates - train_rows) * ARD + adds * ACC


def update_cycles_of(n_groups: int, update_steps: int, emitted, phases=1, timesteps: int = 1):
    """Cycles of update phases.

    ``phases * (URD + c * update_steps * n_groups * timesteps) + EMIT * emitted``: per phase the URD that
    finds the groups done, per group and timestep ``update_steps`` steps of ``c``
    (:func:`update_step_cycles`) cycles, and one EMIT per emitted event (layer-major: per emitted train).

    Parameters
    ----------
    n_groups : int
        Lane groups of the stage.
    update_steps : int
        ``S``: steps per group (``ArchConfig.update_steps``).
    emitted : int or array
        Events (layer-major: trains) emitted by the phases.
    phases : int
        Update phases summed (timestep-major: one per timestep).
    timesteps : int
        Timesteps one phase updates (layer-major: ``T``; else 1).
    """
    step = update_step_cycles(update_steps)
    return phases * (URD + step * update_steps * n_groups * timesteps) + EMIT * emitted


def cleared_words(state_rows: int, arch) -> tuple:
    """``(accumulator words, state words)`` CLEAR writes: ``acc_slots`` and ``update_steps`` per used row."""
    return state_rows * arch.acc_slots, state_rows * arch.update_steps


def clear_cycles_of(program, arch) -> int:
    """Cycles of CLEAR: ``state_rows * max(S, A)``, one accumulator and one state word written per cycle, both
    memories at once (:func:`cleared_words`)."""
    return max(cleared_words(program.state_rows, arch))


def scan_cycles_of(n_inputs: int) -> int:
    """Cycles of the input scan of a core without ``event_input``, once per inference: ``n_inputs * SCAN +
    SCAN_DRAIN`` (every pixel read, plus one cycle to append the last nonzero one)."""
    return n_inputs * SCAN + SCAN_DRAIN


def event_scan_cycles_of(words):
    """Cycles of one timestep's input scan on a core with ``event_input``: ``SCAN_PRIME + words * SCAN +
    SCAN_STOP`` (= ``w_t + 2``): the cycle presenting the first word, one per word of the timestep, and the one
    that finds a word of another timestep (or none) and ends the scan.

    Parameters
    ----------
    words : int or array
        ``w_t``: the input words of the timestep (the nonzero values of its frame, :func:`scan_words`).
    """
    return SCAN_PRIME + words * SCAN + SCAN_STOP


def scan_words(frames):
    """``w_t``: the input words of each timestep on a core with ``event_input`` (one per nonzero value of the
    frame), an int64 array of ``frames``' shape without its last axis (``[T]`` for ``[T, n_inputs]``, ``[N, T]``
    for ``[N, T, n_inputs]``)."""
    return (np.asarray(frames) != 0).sum(-1).astype(np.int64)


def setup_cycles_of(program, arch, words=None):
    """Cycles of CLEAR and the input scans: ``state_rows * max(S, A) + n_inputs + 1`` (:func:`clear_cycles_of`,
    :func:`scan_cycles_of`), or with ``event_input`` ``state_rows * max(S, A) + sum_t (w_t + 2)``
    (:func:`event_scan_cycles_of`, once per timestep; the scans of timesteps after the first run between
    passes, but they are counted here, not in any stage's account).

    Parameters
    ----------
    words : array, needed with ``event_input`` (ignored without)
        ``w_t`` per timestep (:func:`scan_words`): ``[T]`` for one inference (an int is returned) or ``[N, T]``
        (an array of ``N`` is returned).
    """
    clear = clear_cycles_of(program, arch)
    if not arch.event_input:
        return clear + scan_cycles_of(program.n_inputs)
    if words is None:
        raise ValueError(f"architecture {arch.name} has event_input: its input scans' cycles need the input "
                         f"words of each timestep")
    scans = event_scan_cycles_of(words).sum(-1)
    return clear + (int(scans) if getattr(scans, "ndim", 0) == 0 else scans)
