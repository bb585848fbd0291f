"""``python -m hpo_helpers``: see :mod:`hpo_helpers.frontends.cli`."""

from __future__ import annotations

import sys

from .frontends.cli import main

sys.exit(main())
