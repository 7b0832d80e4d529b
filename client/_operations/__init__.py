"""One module per SDK operation, each driving the pure steps of ``pakr.proto``.

The protocol math lives in ``pakr.proto.register``/``recover``/``delete``; these modules only
decide which nodes to ask, how many answers are enough, and which error to raise.
"""
