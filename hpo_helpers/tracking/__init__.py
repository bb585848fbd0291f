"""Tracking: MLflow, optional and never in the way of the search.

Owns the set-up API users of the original notebooks know (``setup``) and the parent/child runs
of a sweep (``tracker``). mlflow is imported lazily. May import every layer below
(``core``, ``storage``, ``settings``, ``data``, ``study``).
"""
