"""models: PyTorch neurons, tdBN, networks, datasets, training and the hardware-exact (golden) mode.

Nothing here imports the hardware side (accel, sim, rtl).
"""
from .neurons import MLF, LIF, IF, mlf_step, mlf_thresholds, make_neuron
from .surrogates import RectangleSpike, rectangle
from .surrogates import Surrogate, triangle, arctan, sigmoid, make_surrogate
from .tdbn import TdBN
from .digits import DigitsNet, load_digits_split, DIGITS_MAX_PIXEL
from .hwexact import (neuron_step_int, saturate, Source, IntegerStage, STAGE_KINDS, gate_table,
                      run_integer_network)
from .blocks import (SpikingBasicBlock, DSBasicBlock, MSBasicBlock, SEWBlock, LSNBlock, DualStreamBlock,
                     logic_join, lsn_join, dual_stream_loss, TimeDistributed)
from .networks import build_network
from .metrics import ActivityMonitor, SynapticOpsCounter, GradientMonitor, energy_pj

__all__ = ["MLF", "LIF", "mlf_step", "rectangle", "RectangleSpike", "mlf_thresholds", "TdBN", "DigitsNet",
           "load_digits_split", "DIGITS_MAX_PIXEL", "neuron_step_int", "saturate", "Source", "IntegerStage", "STAGE_KINDS", "gate_table",
           "run_integer_network", "IF", "make_neuron", "Surrogate", "triangle", "arctan", "sigmoid",
           "make_surrogate", "SpikingBasicBlock", "DSBasicBlock", "MSBasicBlock", "SEWBlock", "LSNBlock",
           "DualStreamBlock", "logic_join", "lsn_join", "dual_stream_loss", "TimeDistributed", "build_network",
           "ActivityMonitor", "SynapticOpsCounter", "GradientMonitor", "energy_pj"]
