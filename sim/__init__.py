"""sim: executes a Program on an architecture configuration, bit-exact, with a cycle-level account."""
from .engine import SimResult, simulate

__all__ = ["SimResult", "simulate"]
