"""Study: the Optuna study of a sweep, opened, resumed, repaired and read.

Owns the study lock, opening/resuming, recovery of interrupted trials and the fingerprint
(``store``), opening a study with its layout for a session (``opening``), the sampler and
pruner built from the config (``sampling``), targeted reads (``queries``), shared studies on a
database server (``distributed``), the read-only view (``status``), the storage wrapper that
refuses writes, served by the dashboard (``readonly``), and the hyperband scheduler's rung
decisions and promotions, made from the study alone (``halving``). Writers (``store``,
``opening``, ``distributed``, ``halving``) and readers (``queries``, ``status``) live side by
side; readers never import the sweep or training. May import ``core``, ``storage`` and
``settings``; independent of ``data``.
"""
