"""``python -m bench.scale [--gates 10,100,500] [--quick]``."""

from bench.scale.cli import main

raise SystemExit(main())
