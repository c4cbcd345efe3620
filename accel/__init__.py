"""spikecore.accel: the compiler contract and the flows built on it.

- :mod:`spikecore.accel.contract`: the architecture configuration, the memory-word layouts, the Program, the
  lowering of trained networks, the quantizer, the compiler's named passes and checkpoint loading. It imports
  no flow, simulator or RTL module.
- :mod:`spikecore.accel.flows`: the command line, reports and plots, verification, sweeps, synthesis, the area
  model, NIR exchange, training configurations and the demo methods.
"""
