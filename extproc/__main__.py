"""``python -m extproc`` is the ``extproc`` command."""

import sys

from .cli import main

sys.exit(main())
