"""``python -m adatastore``: the command line."""

from .cli import main

raise SystemExit(main())
