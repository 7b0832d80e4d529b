"""One Byzantine case against real node processes behind lying proxies.

A :class:`Liars` cluster is a started :class:`~pakr.coordinator.localcluster.LocalCluster`
with a :class:`~tests.byzantine.proxy.LyingProxy` in front of every node. :func:`run_case`
registers a fresh user while every proxy is honest, sets the lies, recovers with a wrong
password and then the right one, and checks what issue 12 requires:

* right password: exactly the secret, never a wrong one, never ``InvalidPassword`` or
  ``LockedOut``; every liar whose reply fails verification (a ``NAMED`` lie, when it was
  asked first: lured, or in Recover3) is named in one of the two tries, and no honest
  node ever is (a forged proof, K_i or signature next to a correct Z_i is only checked
  when the combination fails, which the wrong-password try forces; the right-password try
  names what it had to verify);
* wrong password: ``InvalidPassword`` but never ``LockedOut``, and no node's durable guess
  count grows by more than one (no liar makes it cost more than one guess per node asked);
* afterwards, with the lies gone, the user is neither locked nor bricked: recovery works.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import pakr
from pakr._transport import GrpcTransport, NodeTransport
from pakr.coordinator.localcluster import LocalCluster
from pakr.proto.manifest import Manifest, ManifestNode
from tests.byzantine.lies import LURE, NAMED, VERIFIED_ONLY, method_of
from tests.byzantine.proxy import Lie, LyingProxy
from tests.security.sec_live import guess_counts

SECRET = bytes(range(32))
PASSWORD = "correct horse"
WRONG = "battery staple"
DEADLINE = 3.0  # generous: the machine running the suite may be loaded


class Liars:
    """Proxies in front of every node of ``cluster``; ``lies[index][method]``."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.manifest = cluster.manifest()
        self.proxies: dict[int, LyingProxy] = {}
        for node in cluster.nodes:
            proxy = LyingProxy(
                f"127.0.0.1:{node.address.rpartition(':')[2]}",
                node.tls_cert.read_bytes(),
                (node.tls_cert.parent / "node.key").read_bytes(),
            )
            self.proxies[node.index] = proxy.start()
        self.names = {n.index: n.ref.name for n in self.manifest.nodes}

    @property
    def n(self) -> int:
        return len(self.proxies)

    @property
    def t(self) -> int:
        return self.manifest.threshold

    def close(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()

    def honest(self) -> None:
        for proxy in self.proxies.values():
            proxy.lies = {}

    def set(self, lies: Mapping[int, Mapping[str, Lie]]) -> None:
        """Set the lies (every other node honest) and start counting calls afresh."""
        self.honest()
        for proxy in self.proxies.values():
            proxy.calls.clear()
            proxy.answered.clear()
        for index, by_method in lies.items():
            self.proxies[index].lies = dict(by_method)

    def client(self, deadline: float = DEADLINE) -> pakr.Client:
        """A fresh client (fresh distrust memory) whose transports go through the proxies."""

        def factory(node: ManifestNode, manifest: Manifest) -> NodeTransport:
            return GrpcTransport(
                node.ref,
                self.proxies[node.index].address,
                tls_cert_pem=node.tls_cert_pem,
                tls_cert_sha256=node.tls_cert_sha256,
                insecure=manifest.dev and node.insecure,
                hpke_public_key=node.hpke_public_key,
            )

        return pakr.Client.from_manifest(
            self.cluster.manifest_path,
            tenant=self.cluster.tenant,
            token_provider=pakr.dev_token_provider(self.cluster.tenant_key_path),
            deadline=deadline,
            transport_factory=factory,
            operator_key=self.cluster.operator_public_key(),
        )


@dataclass
class Accusations(logging.Handler):
    """Collects the nodes the SDK names as misbehaving (its ``recover: ignored`` warnings)."""

    texts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        logging.Handler.__init__(self, logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("recover: ignored "):
            self.texts.append(message)

    def named(self, names: Mapping[int, str]) -> set[int]:
        return {i for i, name in names.items() if any(name in text for text in self.texts)}

    def __hash__(self) -> int:
        return id(self)


@contextmanager
def accusations() -> Iterator[Accusations]:
    handler = Accusations()
    logger = logging.getLogger("pakr")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def run_case(
    liars: Liars, lies: Mapping[int, Mapping[str, Lie]], *, wrong_first: bool = True
) -> None:
    """Register, lie, recover (wrong then right password), check; raise AssertionError."""
    user = f"byz-{uuid.uuid4().hex[:12]}"
    cluster = liars.cluster
    liars.honest()
    with liars.client() as c:
        c.register(user, PASSWORD, SECRET)
    liars.set(lies)
    label = {i: sorted(lie.name for lie in m.values()) for i, m in lies.items()}
    accused = Accusations()
    logger = logging.getLogger("pakr")
    logger.addHandler(accused)
    try:
        if wrong_first:
            before = guess_counts(cluster, user)
            with liars.client() as c:
                try:
                    c.recover(user, WRONG)
                except pakr.LockedOut as error:
                    raise AssertionError(f"{label}: wrong password gave LockedOut") from error
                except pakr.InvalidPassword:
                    pass
                else:
                    raise AssertionError(f"{label}: a wrong password recovered something")
            after = guess_counts(cluster, user)
            for index, count in after.items():
                grew = (count or 0) - (before[index] or 0)
                assert grew <= 1, f"{label}: node {index} counted {grew} guesses for one try"
        with liars.client() as c:
            try:
                got = c.recover(user, PASSWORD)
            except pakr.PakrError as error:
                raise AssertionError(f"{label}: right password failed: {error!r}") from error
        assert got == SECRET, f"{label}: recovered a wrong secret"
        named = accused.named(liars.names)
        honest_named = named - set(lies)
        assert not honest_named, f"{label}: honest node(s) {honest_named} named: {accused.texts}"
        for index, by_method in lies.items():
            for lie in by_method.values():
                # its forged reply was sent (a hedged call cancelled first never was)
                asked = liars.proxies[index].answered.get(method_of(lie), 0) > 0
                recover1 = by_method.get("Recover1")
                lured = recover1 is not None and recover1.name == LURE.name
                if method_of(lie) == "Recover2" and not lured:
                    continue  # asked only as a hedge or spare: its call may be cancelled
                if lie.name in VERIFIED_ONLY and not lured:
                    continue
                if lie.name in NAMED and asked and only_lie_in(by_method, lie):
                    assert index in named, f"{label}: liar {index} not named ({accused.texts})"
    finally:
        logger.removeHandler(accused)
        liars.honest()
    with liars.client() as c:
        assert c.recover(user, PASSWORD) == SECRET, f"{label}: user left locked or bricked"


def run_register_case(liars: Liars, lies: Mapping[int, Mapping[str, Lie]]) -> None:
    """Register under Register1 lies: it succeeds, or fails with a typed error and succeeds
    once the lies stop (nothing a liar does outlasts its repair); recovery then works."""
    user = f"byz-{uuid.uuid4().hex[:12]}"
    label = {i: sorted(lie.name for lie in m.values()) for i, m in lies.items()}
    liars.set(lies)
    try:
        with liars.client() as c:
            try:
                c.register(user, PASSWORD, SECRET)
                registered = True
            except pakr.PakrError:
                registered = False
        if registered:
            with liars.client() as c:
                assert c.recover(user, PASSWORD) == SECRET, f"{label}: wrong secret"
    finally:
        liars.honest()
    with liars.client() as c:
        if not registered:
            try:  # the failed call may have stored it (CommitIncomplete): the app retries it
                c.register(user, PASSWORD, SECRET, if_exists="replace")
            except pakr.PakrError as error:
                message = f"{label}: register still fails after repair: {error!r}"
                raise AssertionError(message) from error
        assert c.recover(user, PASSWORD) == SECRET, f"{label}: user bricked"


def only_lie_in(by_method: Mapping[str, Lie], lie: Lie) -> bool:
    """Whether ``lie`` is the only reply-changing lie besides the Recover1 lure (then the
    liar must be named when asked; combined lies may hide each other, e.g. a stall)."""
    others = [other for m, other in by_method.items() if other is not lie and m != "Recover1"]
    return not others
