"""``python -m pakr.coordinator`` is the ``pakr`` command."""

from pakr.coordinator.entry import run

run()
