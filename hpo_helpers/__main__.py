"""``python -m hpo_helpers``: see :mod:`hpo_helpers.cli`."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
