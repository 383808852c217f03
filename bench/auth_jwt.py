"""Per-token cost of JWT verification, in process.

    python bench/auth_jwt.py

For each algorithm Bastion accepts (RS256, PS256, ES256, EdDSA, HS256): ``JwtVerifier.verify``
of a token it has verified before (the cached path: a BLAKE2s of the token, a dictionary
hit, an expiry test, a revocation lookup by jti), and of a token it has not (the verifier
built with ``cache_size: 0``: parsing, key lookup, signature, claims). Beside the uncached
figure, PyJWT's ``jwt.decode`` of the same token with the same pre-loaded key object (its
fastest use: no PEM parsing per call), to show what checking signatures with
``cryptography`` directly saves. Keys are generated at start (RSA 2048, P-256, Ed25519,
a 32-byte HMAC secret) and given to the verifier as static keys, so nothing touches the
network; the verifier runs started, with a memory state backend for revocations.

Each figure is the minimum over REPEATS runs (the median is printed beside it). A CPU
calibration figure (``sum(range(1000))``) lets numbers from different machines compare.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import timeit
import uuid
from collections.abc import Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from bastion.services import Services, WorkerIdentity
from bastion.stages.auth.jwt.config import JwtSettings
from bastion.stages.auth.jwt.verify import JwtVerifier
from bastion.state.memory import MemoryBackend
from bastion.types import Principal

ISSUER = "https://idp.bench"
AUDIENCE = "bench-api"
SECRET = os.urandom(32)
ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA", "HS256")
REPEATS = 7


def private_key(alg: str) -> Any:
    if alg in ("RS256", "PS256"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    return SECRET


def jwk(alg: str, key: Any) -> dict[str, Any]:
    from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

    public = key.public_key()
    algo: Any = {"RS256": RSAAlgorithm, "PS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}[alg]
    return {**algo.to_jwk(public, as_dict=True), "kid": alg, "alg": alg}


def token(alg: str, key: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 3600,
              "jti": uuid.uuid4().hex, "scope": "books:read books:write", "roles": ["user"]}
    headers = {} if alg == "HS256" else {"kid": alg}
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def per_call(fn: Callable[[], object], number: int) -> tuple[float, float]:
    """(minimum, median) microseconds per call over REPEATS runs of ``number`` calls."""
    runs = [t / number * 1e6 for t in timeit.repeat(fn, number=number, repeat=REPEATS)]
    return min(runs), statistics.median(runs)


async def measure() -> list[tuple[str, tuple[float, float], tuple[float, float], tuple[float, float]]]:
    keys = {alg: private_key(alg) for alg in ALGORITHMS}
    secret_env = "BENCH_JWT_HS256_SECRET"
    os.environ[secret_env] = SECRET.hex()[:48]  # 48 ASCII bytes
    hmac_secret = os.environ[secret_env].encode()
    keys["HS256"] = hmac_secret
    issuer = {
        "issuer": ISSUER, "audiences": [AUDIENCE], "algorithms": list(ALGORITHMS), "secret_env": secret_env,
        "keys": [jwk(alg, keys[alg]) for alg in ALGORITHMS if alg != "HS256"],
    }
    cached = JwtVerifier.from_settings(JwtSettings.model_validate({"issuers": [issuer]}))
    uncached = JwtVerifier.from_settings(JwtSettings.model_validate({"issuers": [issuer], "cache_size": 0}))
    services = Services(MemoryBackend(), WorkerIdentity("bench", 0, 1, os.getpid()))
    await cached.start(services)
    await uncached.start(services)
    public = {alg: (k if alg == "HS256" else k.public_key()) for alg, k in keys.items()}
    rows = []
    for alg in ALGORITHMS:
        t = token(alg, keys[alg])
        assert isinstance(cached.verify(t), Principal) and isinstance(uncached.verify(t), Principal), alg
        hit = per_call(lambda t=t: cached.verify(t), 200_000)
        number = 20_000 if alg == "HS256" else 2_000
        miss = per_call(lambda t=t: uncached.verify(t), number)
        key = public[alg]
        pyjwt = per_call(lambda t=t, key=key, alg=alg: jwt.decode(t, key, algorithms=[alg], audience=AUDIENCE,
                                                                  issuer=ISSUER), number)
        rows.append((alg, hit, miss, pyjwt))
    await cached.close()
    await uncached.close()
    await services.close()
    return rows


def main() -> None:
    calibration = min(timeit.repeat("sum(range(1000))", number=20_000, repeat=5)) / 20_000 * 1e6
    rows = asyncio.run(measure())
    print(f"calibration sum(range(1000)) = {calibration:.1f} µs")
    print("| algorithm | cached verify() | uncached verify() | PyJWT decode, pre-loaded key |")
    print("|:---|---:|---:|---:|")
    for alg, hit, miss, pyjwt in rows:
        print(f"| {alg} | {hit[0]:.2f} µs (median {hit[1]:.2f}) | {miss[0]:.1f} µs (median {miss[1]:.1f}) "
              f"| {pyjwt[0]:.1f} µs (median {pyjwt[1]:.1f}) |")


if __name__ == "__main__":
    main()
