"""Training: one trial's model, from documents to a validation score.

Owns the device policy (``device``), backbones (``backbones``), sub-token windows
(``encoding``), the resumable training loop (``train``), seqeval scores (``metrics``) and one
trial with its folds (``trial``: suggest, fit, report, record). May import every layer below;
never the sweep, results or front ends.
"""
