"""The compiler contract: what a trained network becomes and what every implementation of the core reads.

:mod:`.config` (architecture configuration), :mod:`.layouts` (memory words, defined once), :mod:`.program`
(the compiled image), :mod:`.lowering` (trained network to float graph), :mod:`.quantize` (float graph to
integer stages), :mod:`.compiler` (the named passes) and :mod:`.checkpoint` (loading trained networks).
Nothing here imports a flow (:mod:`spikecore.accel.flows`), the simulator or the RTL.
"""
