"""``python -m xai_core``: the command line (``xai_core.cli``)."""
import sys

from .cli import main

sys.exit(main())
