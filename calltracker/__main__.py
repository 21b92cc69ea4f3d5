"""`python -m calltracker` runs the CLI."""

from calltracker.cli import main

raise SystemExit(main())
