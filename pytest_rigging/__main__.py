"""`python -m pytest_rigging merge ...`, `html ...`: the command line (`plugin.cli`)."""

import sys

from pytest_rigging.plugin.cli import main

if __name__ == "__main__":
    sys.exit(main())
