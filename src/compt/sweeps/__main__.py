"""``python -m compt.sweeps list table1 [overrides]`` (the same as ``compt sweep list``)."""

import sys

from compt.sweeps.cli import main

sys.exit(main())
