"""The control plane's roles, least to most privileged: ``viewer`` reads, ``operator`` also
runs the gateway (consumers, keys, blocks, alerts, reload), ``admin`` also manages admin
users and tokens and imports configuration."""

from __future__ import annotations

from enum import IntEnum


class Role(IntEnum):
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        """``viewer``, ``operator`` or ``admin``; :class:`ValueError` naming the choices otherwise."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"{text!r} is not a role; choose viewer, operator or admin") from None

    def allows(self, needed: Role) -> bool:
        return self >= needed


ROLE_NAMES = tuple(r.label for r in Role)
