"""The admin listener's start-up rule: off loopback, it needs TLS (a configuration check)
and at least one admin user in the store (checked here, at start), so that an exposed
control plane is never open, nor reachable with credentials sent in clear."""

from __future__ import annotations

from bastion.config import LoadedConfig
from bastion.config.loader import is_loopback_host


class ExposureRefused(RuntimeError):
    pass


def check_exposure(loaded: LoadedConfig) -> None:
    """:class:`ExposureRefused` when the admin listener may not start as configured."""
    admin = loaded.config.admin
    if is_loopback_host(admin.host):
        return
    from bastion.store import StoreError, admins, open_store

    try:
        store = open_store(loaded.config.store, loaded.config.consumers)
    except StoreError as exc:
        raise ExposureRefused(f"the admin listener on {admin.host} needs the store to check its admin users: {exc}") \
            from None
    try:
        with store.read() as session:
            count = admins.count_active(session)
    finally:
        store.close()
    if count == 0:
        raise ExposureRefused(
            f"the admin listener on {admin.host} (not loopback) has no admin user: create one first with "
            f"`bastion admin create NAME -c CONFIG`, or keep admin.host on 127.0.0.1")
