"""``python -m reasondistill`` (and ``accelerate launch -m reasondistill``) runs the CLI."""

import sys

from .cli import main

sys.exit(main())
