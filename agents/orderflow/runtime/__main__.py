"""``python -m orderflow.runtime``: the runtime's own command line (see :mod:`.cli`)."""

import sys

from orderflow.runtime.cli import main

sys.exit(main())
