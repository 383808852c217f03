"""What can go wrong with the store, in words a user can act on."""

from __future__ import annotations


class StoreError(Exception):
    """The store cannot do what was asked; the message names the store and what is wrong."""


class StoreUnavailable(StoreError):
    """The store cannot be opened or reached (a missing folder, a refused connection)."""


class UnknownConsumer(StoreError):
    """No consumer has that name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no consumer is named {name!r} (`bastion consumers list` shows them)")
        self.name = name


class ConsumerExists(StoreError):
    """A consumer with that name exists already."""

    def __init__(self, name: str) -> None:
        super().__init__(f"a consumer named {name!r} exists already")
        self.name = name


class DeclaredConsumer(StoreError):
    """The consumer is declared in the configuration, so the store only mirrors it."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"the consumer {name!r} is declared in the configuration (consumers:); change it there, not here"
        )
        self.name = name


class CertificateTaken(StoreError):
    """Another consumer is already identified by that certificate matcher."""

    def __init__(self, matcher: str, owner: str) -> None:
        super().__init__(
            f"{matcher} already identifies the consumer {owner!r}: a certificate two consumers claim "
            "identifies nobody; remove it there first"
        )
        self.owner = owner


class UnknownCertificate(StoreError):
    """The consumer has no such certificate matcher."""

    def __init__(self, name: str, matcher: str) -> None:
        super().__init__(
            f"the consumer {name!r} has no certificate {matcher} (`bastion consumers certs list {name}` shows them)"
        )


class UnknownKey(StoreError):
    """No API key has that id."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no API key has the id {key_id!r} (`bastion keys list` shows them)")
        self.key_id = key_id
