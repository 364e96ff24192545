"""``python -m kmsflow.cli``: the ``kmsflow`` command."""

from kmsflow.cli import main

raise SystemExit(main())
