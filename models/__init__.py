"""models: PyTorch neurons, tdBN, networks, datasets, training and the hardware-exact (golden) mode.

Nothing here imports the hardware side (accel, sim, rtl).
"""
from .neurons import MLF, LIF, mlf_step, rectangle, RectangleSpike, mlf_thresholds
from .tdbn import TdBN
from .digits import DigitsNet, load_digits_split, DIGITS_MAX_PIXEL
from .hwexact import neuron_step_int, saturate, IntegerLayer, run_integer_network

__all__ = ["MLF", "LIF", "mlf_step", "rectangle", "RectangleSpike", "mlf_thresholds", "TdBN", "DigitsNet",
           "load_digits_split", "DIGITS_MAX_PIXEL", "neuron_step_int", "saturate", "IntegerLayer",
           "run_integer_network"]
