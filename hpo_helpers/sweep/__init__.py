"""Sweep: the loop that runs trials until ``max_trials`` are COMPLETE, resumably.

Owns one sweep session (``session``: opened with an ``ExitStack``, per-trial listeners,
``run_sweep``), device workers (``workers``), disk and memory between trials
(``housekeeping``), the hooks a front end receives (``events``) and several backbones in
sequence (``backbones``). May import every layer below; only the front ends import it.
"""
