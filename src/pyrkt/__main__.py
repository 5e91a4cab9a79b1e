"""`python -m pyrkt` is the `rkt` command."""

from pyrkt.cli.main import main

raise SystemExit(main())
