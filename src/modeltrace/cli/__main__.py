"""``python -m modeltrace.cli``: the same as the ``modeltrace`` command."""

import sys

from modeltrace.cli import main

sys.exit(main())
