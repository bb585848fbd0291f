"""Storage: where a study's files live and how they are written so that a kill never leaves half.

Owns the on-disk layout (``layout``: every folder and file name of a study), the roots per
runtime (``paths``), atomic writes and set-asides (``durable``), SQLite snapshots to the durable
folder (``snapshot``), background checkpoint mirroring (``mirror``) and trial checkpoint folders
(``checkpoints``). May import ``core`` only.
"""
