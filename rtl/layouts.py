"""Amaranth views of the memory-word layouts defined once in :mod:`spikecore.accel.contract.layouts`.

The RTL never declares a field itself: every ``data.StructLayout`` here is derived from the
:class:`spikecore.accel.contract.layouts.Layout` that the compiler packs and the simulator unpacks, so the three cannot drift.
Amaranth places struct members LSB-first in declaration order and array element ``i`` at ``i * width``,
which is exactly the placement of :meth:`spikecore.accel.contract.layouts.Layout.pack`.
"""
from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from spikecore.accel.contract.config import ArchConfig
from spikecore.accel.contract.layouts import Field, Layout, all_layouts


def field_shape(field: Field):
    """Amaranth shape of one field: a scalar, or nested ``ArrayLayout`` for an array (outer axis first).

    Parameters
    ----------
    field : accel.layouts.Field
        The field; ``field.shape`` ``(L, K)`` gives ``ArrayLayout(ArrayLayout(scalar, K), L)``.
    """
    shape = signed(field.width) if field.signed else unsigned(field.width)
    for extent in reversed(field.shape):
        shape = data.ArrayLayout(shape, extent)
    return shape


def to_amaranth(layout: Layout) -> data.StructLayout:
    """The ``data.StructLayout`` of a memory word, member for member; its ``size`` equals ``layout.width``."""
    struct = data.StructLayout({field.name: field_shape(field) for field in layout.fields})
    if struct.size != layout.width:
        raise AssertionError(f"{layout.name}: Amaranth layout is {struct.size} bits, accel layout {layout.width}")
    return struct


def memory_layouts(arch: ArchConfig) -> dict:
    """``{memory name: data.StructLayout}`` for every memory of the core (keys of ``all_layouts``)."""
    return {name: to_amaranth(layout) for name, layout in all_layouts(arch).items()}
