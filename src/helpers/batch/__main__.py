"""``python -m helpers.batch <batch.yaml>``: ``spiegel build`` without the rest of the CLI."""

import sys

from .build import main

sys.exit(main())
