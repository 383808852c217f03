"""Instructions of the auth stage's head hook per request, in process, counted by callgrind.

    python bench/auth_instructions.py [--python .venv/bin/python] [--what apikey|jwt|both]
                                      [--calls 3000]

The whole hook a request with a valid credential pays (``AuthStage.head_hook()``, what the
chain calls: the bearer token read and checked, its kind told by its shape, the verifier's
cached answer, the principal set, Bastion's API keys stripped), without the worker around it: a faster and
steadier figure than ``bench/instructions.py --scenario apikey|jwt`` on a loaded machine
(no worker to start under valgrind, no key poller falling behind). ``apikey``: the route's
implicit bearer scheme and one key of a real SQLite store; ``jwt``: one HS256 issuer, a token
with a ``jti`` (its revocation looked up on every hit). Each is run twice under ``valgrind
--tool=callgrind``: ``--calls`` requests built and given to the hook, and ``--calls`` requests
built alone; the hook's figure is the difference, per call. Use a compiled
install (``python3 -m venv V && V/bin/pip install -c constraints.txt .``) for the figures
that matter: the per-request modules are compiled with mypyc in production.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Run by the Python measured: builds the stage, then calls its hook CALLS times.
CHILD = r'''
import asyncio, base64, hashlib, hmac, json, os, sys, tempfile, time
from pathlib import Path

from bastion.config.model import StoreSettings
from bastion.pipeline.stage import RouteInfo
from bastion.services import Services, WorkerIdentity
from bastion.stages.auth import AuthConfig, AuthStage
from bastion.state.memory import MemoryBackend
from bastion.store import consumers, keys, open_store
from bastion.types import Exchange, Request

what, calls, hook_too = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def main(folder: Path) -> None:
    settings = StoreSettings(url=f"sqlite:///{folder}/bench.db", pepper_file=folder / "pepper")
    route = RouteInfo("op", "bench", "/", frozenset({"GET"}), False, None, None)
    if what == "apikey":
        store = open_store(settings)
        with store.write() as session:
            consumers.create(session, "bench", roles=["user"])
            credential = keys.create(session, store.pepper, "bench", []).secret
        store.close()
        config = AuthConfig()
    else:
        secret = os.urandom(32)
        (folder / "secret").write_bytes(secret)
        config = AuthConfig.model_validate({"api_keys": {"enabled": False}, "jwt": {"issuers": [
            {"issuer": "https://idp.bench", "secret_file": str(folder / "secret"), "algorithms": ["HS256"],
             "audiences": ["bench-api"]}]}})
        claims = {"iss": "https://idp.bench", "aud": "bench-api", "sub": "bench", "scope": "bench:read",
                  "exp": int(time.time()) + 86_400, "jti": os.urandom(8).hex()}
        signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(claims).encode())
        credential = signing_input + "." + b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())
    services = Services(MemoryBackend(), WorkerIdentity("bench", 0, 1, os.getpid()), None, settings)
    stage = AuthStage(config, route)
    await stage.start(services)
    value = "Bearer " + credential
    hook = stage.head_hook()  # what the chain calls
    exchange = Exchange(Request("GET", "/", "/", "", [("host", "bench"), ("authorization", value)]), "r")
    if hook(exchange) is not None or exchange.principal is None:
        raise SystemExit(f"the credential was refused: {hook(exchange)!r}")
    for _ in range(calls):
        exchange = Exchange(Request("GET", "/", "/", "", [("host", "bench"), ("authorization", value)]), "r")
        if hook_too:
            hook(exchange)
    await stage.close()
    await services.close()


with tempfile.TemporaryDirectory() as tmp:
    asyncio.run(main(Path(tmp)))
'''


def instructions(python: Path, what: str, calls: int, hook: bool, folder: Path) -> int:
    """The instructions of one run of CHILD under callgrind (all of it: start, calls, exit)."""
    out = folder / f"callgrind.{what}.{calls}.{int(hook)}"
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", str(python), "-c", CHILD,
                    what, str(calls), "1" if hook else "0"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=3600)
    match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M)
    if match is None:
        raise RuntimeError(f"no totals in {out}")
    return int(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/auth_instructions.py")
    parser.add_argument("--python", type=Path, default=ROOT / ".venv" / "bin" / "python")
    parser.add_argument("--what", choices=("apikey", "jwt", "both"), default="both")
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bastion-auth-callgrind-") as tmp:
        for what in ("apikey", "jwt") if args.what == "both" else (args.what,):
            with_hook = instructions(args.python, what, args.calls, True, Path(tmp))
            without = instructions(args.python, what, args.calls, False, Path(tmp))
            print(f"{what}: {(with_hook - without) / args.calls:,.0f} instructions per call of the auth "
                  f"stage's head hook ({args.calls} calls)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
