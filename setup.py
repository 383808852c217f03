"""Build script: compiles the data plane's hot modules to C with mypyc.

The request path (parsing, routing, forwarding) is fully typed Python; mypyc turns those
modules into C extensions, which measured 2.5x faster per request on the same machine
(docs/benchmarks.md). Set BASTION_PURE_PYTHON=1 to install without compiling, e.g. for
an editable development install where compiled modules would shadow edited sources.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from setuptools import setup

#: Modules on the per-request path. They must stay mypy --strict clean and free of the
#: few dynamic patterns mypyc refuses (e.g. generic dataclasses).
COMPILED = [
    "src/bastion/types.py",
    "src/bastion/errors.py",
    "src/bastion/routing/target.py",
    "src/bastion/routing/router.py",
    "src/bastion/pipeline/chain.py",
    "src/bastion/proxy/http.py",
    "src/bastion/proxy/http1.py",
    "src/bastion/proxy/bounds.py",
    "src/bastion/proxy/jsonscan.py",
    "src/bastion/proxy/prelude.py",
    # What the prelude and the exchanges read per request (the routes, limits, trusted
    # proxies, the in-flight count): compiled, a read is a field of a native object, not a
    # Python attribute lookup (the prelude made 13 per request).
    "src/bastion/proxy/runtime.py",
    "src/bastion/proxy/record.py",
    "src/bastion/proxy/flight.py",
    "src/bastion/proxy/respond.py",
    "src/bastion/proxy/exchange.py",
    "src/bastion/proxy/stream.py",
    "src/bastion/proxy/metrics.py",
    "src/bastion/proxy/accesslog.py",
    "src/bastion/proxy/upstream_errors.py",
    "src/bastion/proxy/upstream_connection.py",
    "src/bastion/proxy/upstream.py",
    "src/bastion/proxy/server.py",
    # The headers stage is on by default: its per-response rewrite.
    "src/bastion/stages/headers/rewrite.py",
    # Detection runs over every input of every request when it is on.
    "src/bastion/stages/detection/normalize.py",
    "src/bastion/stages/detection/ssrf.py",
    "src/bastion/stages/detection/inspect.py",
    "src/bastion/stages/detection/matcher.py",
    "src/bastion/stages/detection/engine.py",
    "src/bastion/stages/detection/protocol.py",
    # Authentication and authorization run on every route that is not public. (Their stage
    # classes stay interpreted, like every stage class: compiled, their abstract bases were
    # not what isinstance and the chain expect.)
    "src/bastion/stages/auth/credentials.py",
    "src/bastion/stages/auth/dispatch.py",
    "src/bastion/stages/auth/decide.py",
    "src/bastion/stages/auth/keyformat.py",
    "src/bastion/stages/auth/apikey.py",
    "src/bastion/stages/auth/jwt/cache.py",
    "src/bastion/stages/auth/jwt/keys.py",
    "src/bastion/stages/auth/jwt/verify.py",
    # A cached JWT with a jti is checked against the revoked set on every request.
    "src/bastion/stages/auth/revocations.py",
    "src/bastion/stages/access/ip.py",
    "src/bastion/stages/access/owner.py",
    "src/bastion/stages/access/override.py",
    # So does validation, on every route with an OpenAPI operation.
    "src/bastion/stages/validation/params.py",
    "src/bastion/stages/validation/body.py",
    "src/bastion/stages/validation/check.py",
    # The response stage walks every member of every JSON response it filters; CORS matches
    # the Origin of every cross-origin request.
    "src/bastion/stages/response/prune.py",
    "src/bastion/stages/cors/origins.py",
    # Redaction scans every byte of every response body on the routes that have it: the
    # candidates' checks, the scan's bookkeeping and the masking run per value found.
    "src/bastion/sensitive/checks.py",
    "src/bastion/sensitive/detectors.py",
    "src/bastion/sensitive/replace.py",
    "src/bastion/sensitive/scanner.py",
    "src/bastion/stages/redact/apply.py",
    # The embedded mode runs the same steps per request in the application's process: its
    # exchange (the ASGI messages through the prelude, the chain and the sinks) and the
    # middleware's entry point.
    "src/bastion/asgi/exchange.py",
    "src/bastion/asgi/middleware.py",
    # A rate limit names its keys, runs GCRA (on the memory backend) and formats the
    # RateLimit field on every request of a limited route.
    "src/bastion/stages/ratelimit/gcra.py",
    "src/bastion/stages/ratelimit/limiter.py",
    "src/bastion/state/memory.py",
    # The threat detectors sort every record of a batch by what each detector counts.
    "src/bastion/detect/batch.py",
]

ext_modules = []
if os.environ.get("BASTION_PURE_PYTHON", "") not in ("1", "true", "yes"):
    from mypyc.build import mypycify

    # pip builds a local checkout in place, and setuptools copies everything under build/lib*
    # into the wheel: a module compiled by an earlier build (and no longer listed) would be
    # installed beside the new ones and fail at import with "Request object expected; got
    # Request". Start from a clean build folder.
    shutil.rmtree(Path(__file__).resolve().parent / "build", ignore_errors=True)

    ext_modules = mypycify(["--config-file=mypyc.ini", *COMPILED], opt_level="3", debug_level="0")

# mypyc writes the modules into one C file (one compile, so the C compiler can inline across
# them) plus a small shim per module; a parallel build_ext compiles the shims on the other
# cores while the big file compiles: the same objects, sooner.
setup(ext_modules=ext_modules, options={"build_ext": {"parallel": os.cpu_count() or 1}})
