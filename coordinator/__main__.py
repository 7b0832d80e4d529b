"""``python -m pakr.coordinator`` is the ``pakr`` command."""

import sys

from pakr.coordinator.cli import main

sys.exit(main())
