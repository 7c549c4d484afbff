"""``python -m bench.detection [--quick]``."""

from bench.detection.cli import main

raise SystemExit(main())
