"""Per-request cost of verifying an API key, in process.

    python bench/auth_keys.py

A worker's :class:`~bastion.stages.auth.apikey.ApiKeyVerifier`, started on a real store
(a SQLite file in a temporary folder) holding 2 000 active keys, verifies one of them:
the checksum, the HMAC-SHA-256 under the pepper, the snapshot lookup, the expiry test and
the last-use note -- what every request with a valid key pays. Then a mistyped key (refused
by the checksum alone) and a well-formed unknown key (checksum, HMAC, lookup), the costs of
the two kinds of refusal. Target (issue 14): at most 10 µs for a valid key.

A CPU calibration figure (``sum(range(1000))``) lets numbers from different machines compare.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import statistics
import tempfile
import timeit
from pathlib import Path

from bastion.config.model import StoreSettings
from bastion.services import Services, WorkerIdentity
from bastion.stages.auth import apikey, keyformat
from bastion.state.memory import MemoryBackend
from bastion.store import consumers, keys, open_store
from bastion.types import Principal

KEYS = 2_000
NUMBER = 20_000
REPEATS = 7


def fill(settings: StoreSettings) -> str:
    """A store with KEYS active keys over 100 consumers; one of the keys."""
    store = open_store(settings)
    with store.write() as session:
        owners = [consumers.create(session, f"c{i}", roles=["user"]).name for i in range(100)]
        made = [keys.create(session, store.pepper, owners[i % 100], ["books:read"]) for i in range(KEYS)]
    store.close()
    return made[KEYS // 2].secret


async def measure(settings: StoreSettings, key: str) -> dict[str, list[float]]:
    services = Services(MemoryBackend(), WorkerIdentity("bench", 0, 1, os.getpid()), None, settings)
    verifier = apikey.ApiKeyVerifier()
    await verifier.start(services)
    assert isinstance(verifier.verify(key), Principal)
    typo = key[:20] + ("a" if key[20] != "a" else "b") + key[21:]
    unknown = keyformat.generate()
    assert verifier.verify(typo) is apikey.MALFORMED and verifier.verify(unknown) is apikey.KEY_UNKNOWN
    verify = verifier.verify
    runs = {
        name: [t / NUMBER * 1e6 for t in timeit.repeat(lambda c=credential: verify(c), number=NUMBER, repeat=REPEATS)]
        for name, credential in (("valid key", key), ("mistyped key", typo), ("unknown key", unknown))
    }
    await verifier.close()
    await services.close()
    return runs


def main() -> None:
    calibration = min(timeit.repeat("sum(range(1000))", number=10_000, repeat=5)) / 10_000 * 1e6
    compiled = inspect.getfile(apikey).endswith(".so")
    with tempfile.TemporaryDirectory() as folder:
        settings = StoreSettings(url=f"sqlite:///{folder}/bastion.db", pepper_file=Path(folder) / "pepper")
        runs = asyncio.run(measure(settings, fill(settings)))
    print(f"{'compiled' if compiled else 'pure Python'}; calibration sum(range(1000)) = {calibration:.1f} µs")
    print(f"{KEYS} active keys in the snapshot")
    for name, values in runs.items():
        print(f"{name + ':':<14} min {min(values):.2f} µs, median {statistics.median(values):.2f} µs per verify()")


if __name__ == "__main__":
    main()
