"""``python -m gbtrack.emulator``: run the local Gameball emulator (as ``gbtrack emulator``)."""

import sys

from gbtrack.emulator._cli import main

if __name__ == "__main__":
    sys.exit(main())
