"""Settings: what the user wrote, read once into frozen, validated dataclasses.

Owns the YAML loaders and their one-error-per-file reporting (``config``) and what a study
stores besides Optuna's fields (``schema``: study names and user-attribute keys). May import
``core`` and ``storage``.
"""
