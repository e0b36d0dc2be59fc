"""`python -m torch_tconv ...`: the command-line interface (torch_tconv/cli.py)."""

from .cli import main

raise SystemExit(main())
