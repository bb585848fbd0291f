"""Results: what a finished (or running) study gives the user.

Owns test scores of kept models (``evaluate``), the final refit (``refit``), prediction
(``prediction``), model selection (``selection``), figures (``report``) and notebook 03's view
(``inspection``). May import every layer below; never the sweep (the sweep calls results after
its loop, not the reverse) or the front ends. ``inspection`` and ``report`` are readers: they
import neither ``sweep`` nor ``training``.
"""
