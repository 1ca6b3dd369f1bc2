"""A deterministic discrete-event simulator of one machine's GPUs.

It drives the daemon's own ``core.schedule()`` through a simulated GPU model, runner and
clock, so every policy the daemon can run is measured here first.
"""
