"""The ``pakr.v1.Node`` gRPC servicer: thin glue around the store and the pure protocol steps.

:class:`NodeServicer` is the three RPC groups (:mod:`~pakr.node.rpc_registration`,
:mod:`~pakr.node.rpc_recovery`, :mod:`~pakr.node.rpc_operator`) over the shared plumbing of
:mod:`~pakr.node.rpc_base`; :func:`add_to_server` registers it so that a request body that
does not parse still reaches it and gets a typed refusal.
"""

from __future__ import annotations

from typing import Any

import grpc

from pakr.node.rpc_base import tolerant_parser
from pakr.node.rpc_operator import OperatorRpcs
from pakr.node.rpc_recovery import RecoveryRpcs
from pakr.node.rpc_registration import RegistrationRpcs
from pakr.proto.v1 import node_pb2 as pb
from pakr.proto.v1 import node_pb2_grpc

__all__ = ["NodeServicer", "add_to_server", "tolerant_parser"]


class NodeServicer(RegistrationRpcs, RecoveryRpcs, OperatorRpcs, node_pb2_grpc.NodeServicer):
    """Serves one node identity from one :class:`~pakr.node.store.base.Store`."""


def add_to_server(servicer: NodeServicer, server: grpc.aio.Server) -> None:
    """Register the ``pakr.v1.Node`` service on ``server``.

    Unlike the generated ``add_NodeServicer_to_server``, a request body that does not parse
    reaches the servicer, which answers INVALID_REQUEST with the typed error detail (counted,
    logged and rate limited like any refusal) instead of gRPC's bare UNKNOWN status.
    """
    service = pb.DESCRIPTOR.services_by_name["Node"]
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in service.methods:
        request_type = getattr(pb, method.input_type.name)
        response_type = getattr(pb, method.output_type.name)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            servicer.guarded(method.name, getattr(servicer, method.name)),
            request_deserializer=tolerant_parser(request_type),
            response_serializer=response_type.SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
