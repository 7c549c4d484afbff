"""`python -m robustness_gate.cli`: the same as the `robustness-gate` command."""

import sys

from robustness_gate.cli import main

sys.exit(main())
