"""``python -m s3grid`` runs the CLI."""

import sys

from s3grid.cli import main

sys.exit(main())
