"""``python -m wharf_cli``: the same as the ``wharf`` command."""

from __future__ import annotations

import sys

from wharf_cli.main import main

sys.exit(main())
