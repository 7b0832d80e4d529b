"""``python -m pakr.node``: the node commands on their own (``pakr node ...``)."""

import sys

from pakr.node.cli import main

sys.exit(main(["node", *sys.argv[1:]]))
