"""``python -m pakr.node``: the node commands on their own (``pakr node ...``)."""

import sys

from pakr.node.extras import explain_missing

try:
    from pakr.node.cli import main
except ModuleNotFoundError as missing:  # a base install: `pip install pakr` is the SDK alone
    explain_missing(missing)

sys.exit(main(["node", *sys.argv[1:]]))
