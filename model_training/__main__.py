"""``python -m model_training``."""

import sys

from .cli import main

sys.exit(main())
