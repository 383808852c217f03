"""The library app's flaws scanned directly and through a real ``bastion serve`` in front of it.

The gateway is configured as the findings' advice says: routes from the document, strict request validation,
TLS, and the default ``headers`` stage (which removes ``X-Powered-By``). What it closes disappears; what is the
API's own to fix (whose object a title names) stays.
"""

from __future__ import annotations

from pathlib import Path

from bastion.certs import generate_self_signed
from bastion.tester.scan.engine import run_scan
from bastion.tester.scan.interface import ScanOptions
from bastion.tester.scan.registry import BY_ID
from bastion.testing import GatewayProcess
from tests.tester.libraryapp.server import serve_library
from tests.tester.scan.test_safety import identities

FLAWS = {"bola", "mass_assignment", "register_mass_assignment", "revealing_headers"}
CHECKS = ["API1-BOLA-READ", "API3-MASS-ASSIGNMENT", "API8-REVEALING-HEADERS"]


def test_bastion_closes_mass_assignment_and_revealing_headers_but_not_bola(tmp_path: Path) -> None:
    """Directly, the scan finds BOLA, mass assignment (update and sign-up) and the revealing header; through
    Bastion (strict validation refuses the undeclared properties, the headers stage drops X-Powered-By) only BOLA
    remains, and the form-encoded login works through the gateway."""
    cert, key = tmp_path / "gw.pem", tmp_path / "gw.key"
    generate_self_signed(cert, key, hosts=["127.0.0.1", "localhost"])
    checks = [BY_ID[c] for c in CHECKS]
    with serve_library(FLAWS) as direct, serve_library(FLAWS) as upstream:
        config = {
            "listen": {"tls": {"cert": str(cert), "key": str(key)}},
            "policies": {"auth": {"delegate": "upstream"}, "validation": {"strict": True}},
            "services": [{"name": "library", "openapi": "openapi.yaml",
                          "upstream": {"targets": [upstream.base_url], "tls": {"ca": str(upstream.ca_file)}}}],
        }
        found_direct = run_scan(direct.spec_path, ScanOptions(base_url=direct.base_url, max_rps=500,
                                                              ca_file=str(direct.ca_file)), identities(), checks)
        (tmp_path / "gateway").mkdir()
        with GatewayProcess(config, folder=tmp_path / "gateway",
                            files={"openapi.yaml": upstream.spec_path.read_text(encoding="utf-8")}) as gateway:
            behind = run_scan(upstream.spec_path, ScanOptions(base_url=gateway.url, max_rps=500, ca_file=str(cert)),
                              identities(), checks)
    assert {(f.check.id, f.target) for f in found_direct.findings} == {
        ("API1-BOLA-READ", "GET /books/{book_title}"), ("API3-MASS-ASSIGNMENT", "PUT /me"),
        ("API3-MASS-ASSIGNMENT", "POST /users/register"), ("API8-REVEALING-HEADERS", "response headers")}
    assert behind.identities == ["alice", "bob", "lib"]
    assert {(f.check.id, f.target) for f in behind.findings} == {("API1-BOLA-READ", "GET /books/{book_title}")}
    assert behind.health == []
