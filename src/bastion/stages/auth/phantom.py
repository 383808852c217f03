"""Phantom tokens on the way in: a ``bpt_...`` bearer token stands for the upstream's token.

The ``phantom`` stage issued it on a login operation and stored, under its hash, what it
stands for (:mod:`bastion.stages.phantom.tokens`). Here the record is read back from the
state backend: an unknown or expired phantom proves nothing (401, like any bad token), a
backend that cannot answer refuses it (503, fail closed). What a known one proves is the
caller the upstream's token names; the auth stage then forwards the upstream's token in its
place, so the upstream never sees a phantom and the client never held the real token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

from bastion.errors import DependencyUnavailable
from bastion.stages.auth.methods import AuthFailure, Verdict
from bastion.stages.phantom.tokens import Record, state_key

if TYPE_CHECKING:
    from bastion.services import Services
    from bastion.state.interface import StateBackend

UNKNOWN: Final = AuthFailure("auth.phantom_unknown")
EXPIRED: Final = AuthFailure("auth.token_expired")
UNAVAILABLE: Final = AuthFailure("auth.state_unavailable", status=503)


class PhantomVerifier:
    """Reads phantom tokens' records from the worker's state backend."""

    def __init__(self) -> None:
        self._state: StateBackend | None = None
        self._wall: Callable[[], float] | None = None

    async def start(self, services: Services) -> None:
        self._state = services.state
        self._wall = services.clock.wall

    async def close(self) -> None:
        return None

    def verify(self, credential: str) -> Awaitable[Verdict]:
        """The caller ``credential`` proves (without the upstream token: see :meth:`resolve`)."""
        return self._principal(credential)

    async def _principal(self, credential: str) -> Verdict:
        verdict, _ = await self.resolve(credential)
        return verdict

    async def resolve(self, credential: str, end: bool = False) -> tuple[Verdict, str | None]:
        """What ``credential`` proves, and the upstream token to forward when it proves a
        caller. ``end`` (a logout): a phantom that proves one is deleted first, so it stops
        working at once wherever the state backend is shared."""
        state, wall = self._state, self._wall
        if state is None or wall is None:
            raise RuntimeError("the phantom token verifier was not started")
        key = state_key(credential)
        try:
            raw = await state.get(key)
            record = Record.decode(raw) if raw is not None else None
            if record is None:
                return UNKNOWN, None
            if record.expires <= wall():
                return EXPIRED, None
            if end:
                await state.delete(key)
        except DependencyUnavailable:
            return UNAVAILABLE, None
        return record.principal(credential), record.upstream_token
