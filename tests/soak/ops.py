"""The soak's operations: one SDK call each, its outcome checked against the model.

Rules (violations): a recovery never returns a secret the model does not allow for that
password, a wrong password never recovers, a definite user is never ``NotRegistered``, and
the right password is never refused as wrong while the guesses possibly spent since the last
successful login are below the user's limit. Transient failures (``ClusterUnavailable``,
``CommitIncomplete``, ``Conflict``) are allowed under chaos and make the state ambiguous
where the operation may have written.
"""

from __future__ import annotations

import os
import random

import pakr
from tests.soak.model import Model, UserModel

TRANSIENT = (pakr.ClusterUnavailable, pakr.CommitIncomplete, pakr.Conflict, pakr.RateLimited)
WRONG = b"definitely not the password"


class Ops:
    def __init__(self, model: Model, client: pakr.Client, rng: random.Random) -> None:
        self.model = model
        self.client = client
        self.rng = rng

    def step(self, user: UserModel) -> None:
        """One random operation on a user only this worker writes."""
        with self.model.lock:
            definite, deleted, spent, limit = (
                user.definite,
                user.deleted,
                user.spent,
                user.max_guesses,
            )
        roll = self.rng.random()
        if deleted or not definite:
            if roll < 0.5:
                self.recover(user)
            else:
                self.register(user)
        elif roll < 0.45:
            self.recover(user)
        elif roll < 0.6 and spent + 3 < limit:
            self.recover_wrong(user)
        elif roll < 0.8:
            self.change_password(user)
        elif roll < 0.95:
            self.register(user)
        else:
            self.delete(user)

    # ------------------------------------------------------------------ operations

    def register(self, user: UserModel) -> None:
        with self.model.lock:
            user.begin_write()
        try:
            self._register(user)
        finally:
            with self.model.lock:
                user.end_write()

    def _register(self, user: UserModel) -> None:
        password, secret = os.urandom(8).hex().encode(), os.urandom(16)
        limit = self.rng.randint(6, 10)
        try:
            self.client.register(
                user.user_id, password, secret, max_guesses=limit, if_exists="replace"
            )
        except TRANSIENT as error:
            with self.model.lock:
                user.maybe(password, secret, limit)
            self.model.count("register", type(error).__name__)
            return
        except pakr.PakrError as error:
            self.model.violation(f"register {user.user_id}: {type(error).__name__}: {error}")
            return
        with self.model.lock:
            user.settle(password, secret, limit)
        self.model.count("register", "ok")

    def recover(self, user: UserModel) -> None:
        with self.model.lock:
            if not user.candidates:
                password, before = WRONG, user.generation
            else:
                password = self.rng.choice(user.candidates)[0]
                before = user.generation
            definite, spent, limit = user.definite, user.spent, user.max_guesses
            deleted, maybe_deleted = user.deleted, user.maybe_deleted
            writing = user.writing > 0
            seen = list(user.candidates)  # a write overlapping this read may replace them
        try:
            secret = self.client.recover(user.user_id, password)
        except pakr.InvalidPassword as error:
            with self.model.lock:
                raced = writing or user.writing > 0 or user.generation != before
                user.spent += 1
            self.model.count("recover", "InvalidPassword")
            if definite and not raced and spent + 1 < limit:
                self.model.violation(
                    f"recover {user.user_id}: right password refused ({error}) after at"
                    f" most {spent} spent guesses of {limit}"
                )
            return
        except pakr.NotRegistered:
            self.model.count("recover", "NotRegistered")
            with self.model.lock:
                raced = writing or user.writing > 0 or user.generation != before
            if not (deleted or maybe_deleted or raced):
                self.model.violation(f"recover {user.user_id}: NotRegistered for a live user")
            return
        except TRANSIENT as error:
            with self.model.lock:
                user.spent += 1
            self.model.count("recover", type(error).__name__)
            return
        except pakr.ProtocolError as error:
            if "no open Recover2 attempt" in str(error):
                # another login of the same user replaced this attempt at the node (one
                # open attempt per version): not a safety issue, reported as a figure
                self.model.note("recover refused: a concurrent login replaced the attempt")
                with self.model.lock:
                    user.spent += 1
                return
            self.model.violation(f"recover {user.user_id}: ProtocolError: {error}")
            return
        except pakr.PakrError as error:
            self.model.violation(f"recover {user.user_id}: {type(error).__name__}: {error}")
            return
        with self.model.lock:
            allowed = user.accepts(password, secret) or next(
                (c for c in seen if c[:2] == (password, secret)), None
            )
            if allowed is not None and user.definite and user.generation == before:
                user.spent = 0
        self.model.count("recover", "ok")
        if allowed is None:
            self.model.violation(f"recover {user.user_id}: returned a secret the model forbids")

    def recover_wrong(self, user: UserModel) -> None:
        try:
            self.client.recover(user.user_id, WRONG + os.urandom(4).hex().encode())
        except pakr.InvalidPassword:
            outcome = "InvalidPassword"
        except TRANSIENT as error:
            outcome = type(error).__name__
        except pakr.PakrError as error:
            self.model.violation(f"wrong password {user.user_id}: {type(error).__name__}: {error}")
            return
        else:
            self.model.violation(f"wrong password {user.user_id}: recovered a secret")
            return
        with self.model.lock:
            user.spent += 1
        self.model.count("recover_wrong", outcome)

    def change_password(self, user: UserModel) -> None:
        with self.model.lock:
            if not user.definite:
                return
            user.begin_write()
        try:
            self._change_password(user)
        finally:
            with self.model.lock:
                user.end_write()

    def _change_password(self, user: UserModel) -> None:
        with self.model.lock:
            (password, secret, _) = user.candidates[0]
            spent, limit = user.spent, user.max_guesses
        new = os.urandom(8).hex().encode()
        try:
            self.client.change_password(user.user_id, password, new)
        except pakr.InvalidPassword as error:
            with self.model.lock:
                user.spent += 1
            self.model.count("change_password", "InvalidPassword")
            if spent + 1 < limit:
                self.model.violation(
                    f"change_password {user.user_id}: old password refused ({error})"
                )
            return
        except pakr.ProtocolError as error:
            if "no open Recover2 attempt" not in str(error):
                self.model.violation(f"change_password {user.user_id}: ProtocolError: {error}")
                return
            self.model.note("recover refused: a concurrent login replaced the attempt")
            with self.model.lock:
                user.spent += 1
            return
        except TRANSIENT as error:
            with self.model.lock:
                user.maybe(new, secret, limit)
                user.spent += 1
            self.model.count("change_password", type(error).__name__)
            return
        except pakr.PakrError as error:
            self.model.violation(f"change_password {user.user_id}: {type(error).__name__}: {error}")
            return
        with self.model.lock:
            user.settle(new, secret, limit)
        self.model.count("change_password", "ok")

    def delete(self, user: UserModel) -> None:
        with self.model.lock:
            user.begin_write()
        try:
            self._delete(user)
        finally:
            with self.model.lock:
                user.end_write()

    def _delete(self, user: UserModel) -> None:
        try:
            self.client.delete(user.user_id)
        except TRANSIENT as error:
            with self.model.lock:
                user.maybe_deleted = True
                user.generation += 1
            self.model.count("delete", type(error).__name__)
            return
        except pakr.PakrError as error:
            self.model.violation(f"delete {user.user_id}: {type(error).__name__}: {error}")
            return
        with self.model.lock:
            user.candidates = []
            user.deleted, user.maybe_deleted = True, False
            user.generation += 1
        self.model.count("delete", "ok")

    # ------------------------------------------------------------------ final check

    def final(self, user: UserModel, *, strict: bool) -> None:
        """With every node up: the user recovers with a password the model allows, or is
        deleted when the model says so (``strict``: the healing round is over)."""
        if user.deleted and not user.candidates:
            try:
                self.client.recover(user.user_id, WRONG)
            except pakr.NotRegistered:
                return
            except pakr.PakrError as error:
                self.model.violation(f"final {user.user_id}: deleted, but {error!r}")
                return
            self.model.violation(f"final {user.user_id}: a deleted user recovered")
            return
        errors = []
        # newest first: the last write is the likeliest in force, so the fewest guesses are
        # spent on candidates that are not
        for password, _, _ in reversed(user.candidates):
            try:
                got = self.client.recover(user.user_id, password)
            except pakr.PakrError as error:
                errors.append(error)
                if isinstance(error, pakr.InvalidPassword) and not isinstance(
                    error, pakr.LockedOut
                ):
                    user.spent += 1
                continue
            allowed = user.accepts(password, got)
            if allowed is None:
                self.model.violation(f"final {user.user_id}: wrong secret")
                return
            user.proven(allowed)
            return
        if user.maybe_deleted and any(isinstance(e, pakr.NotRegistered) for e in errors):
            user.candidates, user.deleted, user.maybe_deleted = [], True, False
            return
        limit = min((c[2] for c in user.candidates), default=0)
        if (
            errors
            and all(isinstance(e, pakr.InvalidPassword) for e in errors)
            and (user.spent >= limit)
        ):
            # Honest lockout: the guesses that may have been counted since the last login
            # (wrong passwords, and candidates of ambiguous writes that were not in force)
            # reach the limit of the version that may be in force. Only below it is a refusal
            # of the right password a violation.
            self.model.note("final: locked out after the guesses its ambiguity spent (allowed)")
            return
        if strict or not all(isinstance(e, pakr.ClusterUnavailable) for e in errors):
            self.model.violation(f"final {user.user_id}: no allowed password works: {errors!r}")
