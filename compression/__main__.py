"""`python -m compression ...`: see compression/cli.py."""

import sys

from compression.cli import main

sys.exit(main())
