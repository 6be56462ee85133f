"""`python -m p2pfl` runs the CLI."""

import sys

from p2pfl.cli import main

sys.exit(main())
