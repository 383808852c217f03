"""bench/embedded.py measures what it says: the request it loads is answered by the
application, alone and behind protect(), rather than refused."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import embedded  # noqa: E402


def _example(folder: Path) -> ModuleType:
    """The example's app.py imported from a copy (its store is made beside the copy)."""
    for name in ("app.py", "bastion.yaml", "openapi.json"):
        shutil.copy(embedded.EXAMPLE / name, folder / name)
    spec = importlib.util.spec_from_file_location("bench_example_app", folder / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_loaded_request_passes_every_stage(tmp_path: Path) -> None:
    """``GET /books?q=dune&limit=5`` gets the same 200 from FastAPI alone and behind
    protect() (validation and detection let it through), so the ratio compares answers."""
    example = _example(tmp_path)
    assert [target for _, target in embedded.TARGETS] == ["app:api", "app:app"]

    async def get(app: object) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await client.get(embedded.PATH)

    async def both() -> tuple[httpx.Response, httpx.Response]:
        try:
            return await get(example.api), await get(example.app)
        finally:
            await example.app.shutdown()  # started lazily, on the first request

    alone, protected = asyncio.run(both())
    assert alone.status_code == protected.status_code == 200
    assert protected.json() == alone.json() == [{"title": "Dune", "author": "Frank Herbert", "year": 1965, "id": 1}]
    assert "x-request-id" in protected.headers and "x-request-id" not in alone.headers
