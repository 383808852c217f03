"""A worker's store: built from the loaded configuration, kept across reloads, its declared
consumers synced when a reload changes them, a new one when ``store`` changes."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import uvloop

from bastion.proxy.worker import Worker
from bastion.services import WorkerIdentity
from bastion.store import consumers
from bastion.testing import free_port


def write(path: Path, store: str, roles: list[str]) -> None:
    config: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": free_port()},
        "access_log": {"enabled": False},
        "store": {"url": store, "pepper_file": "pepper"},
        "consumers": [{"name": "alice", "roles": roles}],
        "services": [{"name": "api", "upstream": "http://127.0.0.1:9",
                      "routes": [{"path": "/", "prefix": True, "public": True}]}],
    }
    path.write_text(json.dumps(config))  # JSON is YAML


def test_reload_syncs_consumers_and_a_new_store_gets_new_services(tmp_path: Path) -> None:
    """The worker's services hold the configured store; a reload that changes alice's roles
    updates them in the open store (same services); one that names another store builds new
    services on it, where alice is synced when it opens."""
    path = tmp_path / "bastion.yaml"
    write(path, "sqlite:///one.db", ["user"])
    worker = Worker(str(path), identity=WorkerIdentity("t", 0, 1, os.getpid()))
    first = f"sqlite:///{tmp_path.resolve()}/one.db"

    def roles() -> list[str]:
        assert worker.services is not None
        with worker.services.store.read() as session:
            return consumers.get(session, "alice").roles

    async def scenario() -> None:
        await worker.start()
        try:
            services = worker.services
            assert services is not None and services.store.url == first
            assert await asyncio.to_thread(roles) == ["user"]
            write(path, "sqlite:///one.db", ["admin"])
            assert await worker.apply_reload() is True
            assert worker.services is services
            assert await asyncio.to_thread(roles) == ["admin"]
            write(path, "sqlite:///two.db", ["auditor"])
            assert await worker.apply_reload() is True
            assert worker.services is not services
            assert await asyncio.to_thread(roles) == ["auditor"]
        finally:
            await worker.stop()

    uvloop.run(scenario())
    assert (tmp_path / "two.db").is_file()
