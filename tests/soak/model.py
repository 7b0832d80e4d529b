"""The soak's model: what each user should have, and which outcomes are violations.

A user's state is a set of *candidates* — ``(password, secret)`` pairs one of which is in
force — plus whether it may be deleted. A successful register or password change makes the
state definite (one candidate); an operation that failed part-way (``CommitIncomplete``,
``ClusterUnavailable``, a crash) adds what it may have written, because the protocol lets
either outcome stand. ``spent`` counts the guesses that may have been counted since the last
successful login (wrong passwords, and right ones that failed after Recover2), which decides
whether an ``InvalidPassword`` on the right password is a violation.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class UserModel:
    """One user's expected state (guarded by :attr:`Model.lock`)."""

    user_id: str
    candidates: list[tuple[bytes, bytes, int]] = field(default_factory=list)  # pw, secret, limit
    maybe_deleted: bool = False
    deleted: bool = False  # definitely deleted (a delete succeeded)
    max_guesses: int = 10
    spent: int = 0
    generation: int = 0  # bumped by every write, so a concurrent reader knows it raced
    writing: int = 0  # writes in flight (a reader overlapping one may see either state)

    @property
    def definite(self) -> bool:
        return len(self.candidates) == 1 and not self.maybe_deleted and not self.deleted

    @property
    def registered(self) -> bool:
        return bool(self.candidates) and not self.deleted

    def settle(self, password: bytes, secret: bytes, max_guesses: int) -> None:
        self.candidates = [(password, secret, max_guesses)]
        self.maybe_deleted = self.deleted = False
        self.max_guesses = max_guesses
        self.spent = 0
        self.generation += 1

    def maybe(self, password: bytes, secret: bytes, max_guesses: int) -> None:
        if (password, secret, max_guesses) not in self.candidates:
            self.candidates.append((password, secret, max_guesses))
        if self.deleted:  # a registration after a delete may or may not have landed
            self.deleted, self.maybe_deleted = False, True
        self.generation += 1

    def accepts(self, password: bytes, secret: bytes) -> tuple[bytes, bytes, int] | None:
        """The candidate ``(password, secret)`` matches, if any."""
        return next((c for c in self.candidates if c[:2] == (password, secret)), None)

    def begin_write(self) -> None:
        self.writing += 1
        self.generation += 1

    def end_write(self) -> None:
        self.writing -= 1
        self.generation += 1

    def proven(self, candidate: tuple[bytes, bytes, int]) -> None:
        """With every node up and no chaos (the final check), a login shows ``candidate`` is
        in force. Not during chaos: a version committed on fewer than r nodes (the change
        that raised ``CommitIncomplete``) may be out of sight now and chosen later."""
        self.candidates = [candidate]
        self.max_guesses = candidate[2]
        self.maybe_deleted = self.deleted = False
        self.spent = 0


@dataclass
class Model:
    """Every user of the soak, the figures, and the violations found."""

    users: dict[str, UserModel] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ops: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    notes: Counter[str] = field(default_factory=Counter)

    def count(self, op: str, outcome: str) -> None:
        with self.lock:
            self.ops[f"{op}:{outcome}"] += 1

    def violation(self, text: str) -> None:
        with self.lock:
            self.violations.append(text)

    def note(self, what: str) -> None:
        with self.lock:
            self.notes[what] += 1

    @property
    def operations(self) -> int:
        return sum(self.ops.values())
