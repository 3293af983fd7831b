"""``python -m mrenhance`` runs the command line (also under torchrun)."""

import sys

from mrenhance.cli import main

sys.exit(main())
