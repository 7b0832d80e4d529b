"""Prometheus metrics of a node, in a registry of its own (several nodes can share a process
in tests). Label values are method names and outcome kinds only: never users or tenants,
which would be unbounded and would leak who uses the service."""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pakr_node_requests",
            "RPCs handled, by method and outcome (ok or the error kind)",
            ["method", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pakr_node_request_seconds",
            "RPC handling time, by method and outcome",
            ["method", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.key_exchange = Counter(
            "pakr_node_tls_key_exchange",
            "RPCs by the TLS key-exchange group of their connection ('none': plaintext;"
            " 'web', 'web-tls': the web listener, behind a proxy or with its own TLS);"
            " anything but X25519MLKEM768 can be decrypted by a future quantum computer",
            ["group"],
            registry=self.registry,
        )
        self.guesses = Counter(
            "pakr_node_guesses_counted",
            "password guesses counted (Recover2)",
            registry=self.registry,
        )
        self.refusal_logs_suppressed = Counter(
            "pakr_node_refusal_logs_suppressed",
            "Refused requests not logged (at most one line per peer per interval); "
            "every refusal is still counted in pakr_node_requests_total",
            registry=self.registry,
        )
        self.lockouts = Counter(
            "pakr_node_lockouts", "versions locked out and erased", registry=self.registry
        )
        self.store_errors = Counter(
            "pakr_node_store_errors",
            "store calls that failed (the request was answered UNAVAILABLE)",
            registry=self.registry,
        )
        self.erasures = Counter(
            "pakr_node_erasures",
            "erasures by the sweeper: lockout (a due lockout), superseded (a pending version"
            " older than the committed one), key_generation (a key generation destroyed)",
            ["reason"],
            registry=self.registry,
        )
        self.store_latency = Histogram(
            "pakr_node_store_seconds",
            "store call time, by operation",
            ["op"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._http: tuple[WSGIServer, threading.Thread] | None = None

    def observe(self, method: str, outcome: str, seconds: float) -> None:
        self.requests.labels(method, outcome).inc()
        self.latency.labels(method, outcome).observe(seconds)

    def serve(self, host: str, port: int) -> int:
        """Expose ``/metrics`` over HTTP; return the bound port."""
        server, thread = start_http_server(port, host, registry=self.registry)
        self._http = (server, thread)
        return int(server.server_port)

    def stop(self) -> None:
        if self._http is not None:
            server, thread = self._http
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            self._http = None
