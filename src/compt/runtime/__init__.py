"""The process a job runs in (plain Python, no Lightning): stopping it cleanly on a signal or a lost claim
(:mod:`~compt.runtime.stopping`), CPU arithmetic that is the same on every machine
(:mod:`~compt.runtime.numerics`), the run's log file (:mod:`~compt.runtime.runlog`) and library noise kept out
of it (:mod:`~compt.runtime.noise`).

``train.py`` sets these up before the run driver is imported; the Lightning layer (:mod:`compt.training`), the
job (:mod:`compt.jobs`) and ``compt evaluate`` use them, and nothing here imports any of those.
"""
