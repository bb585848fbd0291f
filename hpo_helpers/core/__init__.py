"""Core: what every other layer may use and nothing of the project's own below it.

Owns the error tree (``errors``), the validator of names that become paths (``names``), secret
masking (``redaction``), runtime detection (``runtime``: local, Colab, Kaggle, Azure ML, as a
pure function of the environment), the fault-injection points of the kill harness (``faults``),
OS process locks (``filelocks``) and the safe-stop request (``stopping``). Imports only the
standard library and third-party packages.
"""
