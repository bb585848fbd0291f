"""Front ends: how people use the package.

Owns the command line (``cli``), the notebooks' set-up (``notebook``, ``install``), the resume
panel (``widgets``), optuna-dashboard (``dashboard``) and ``migrate-config`` (``migrate``). The
top layer: may import everything; nothing imports it but ``hpo_helpers.__main__`` and the
public API's lazy names.
"""
