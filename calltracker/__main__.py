"""`python -m calltracker` runs the CLI."""

from calltracker.cli.main import main

raise SystemExit(main())
