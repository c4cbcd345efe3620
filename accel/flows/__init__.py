"""The flows built on the compiler contract: command line, reports, verification, sweeps, synthesis, area
model, NIR exchange, training configurations and demo methods."""
