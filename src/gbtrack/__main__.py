"""``python -m gbtrack``: the ``gbtrack`` command (``events``, ``outbox``, ``emulator``)."""

import sys

from gbtrack.cli import main

sys.exit(main())
