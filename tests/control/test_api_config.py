"""``/api/v1/config``: the configuration exported with its secrets masked, and an import that
only a deployment opting in with admin.config_writable allows, checked like `bastion check`
before the file is replaced and reloaded; otherwise the file stays the source of truth."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import yaml

from bastion.demo.server import DemoServer
from bastion.testing import GatewayProcess

SECRET = "s3cret-upstream-pass"


def _config(demo_api: DemoServer, writable: bool) -> dict[str, Any]:
    return {
        "admin": {"config_writable": writable},
        "services": [{"name": "books", "upstream": {"targets": [demo_api.url], "credentials": {
            "basic": {"username": "gw", "password": "${UP_PASS}"}}},
            "routes": [{"path": "/books", "methods": ["GET"], "public": True}]}],
    }


def test_export_masks_secrets_and_import_is_refused_by_default(demo_api: DemoServer,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator exports the configuration: what the file declares, with the upstream's
    password masked (in JSON and YAML); a viewer may not; an import is 409 naming the file,
    which is left as it was."""
    monkeypatch.setenv("UP_PASS", SECRET)  # this process reads the file too (to make admin tokens)
    with GatewayProcess(_config(demo_api, False), env={"UP_PASS": SECRET}) as gw:
        before = gw.config_path.read_bytes()
        status, body = gw.admin("GET", "/api/v1/config", token=gw.admin_token("operator"))
        assert status == 200 and body["path"] == str(gw.config_path)
        service = body["config"]["services"][0]
        assert service["name"] == "books" and service["upstream"]["credentials"]["basic"]["password"] == "********"
        assert SECRET not in str(body) and yaml.safe_load(body["yaml"]) == body["config"]
        assert gw.admin("GET", "/api/v1/config", token=gw.admin_token("viewer"))[0] == 403
        status, refused = gw.admin("POST", "/api/v1/config", token=gw.admin_token("admin"),
                                   json_body={"yaml": body["yaml"]})
        assert status == 409 and str(gw.config_path) in refused["detail"] and "config_writable" in refused["detail"]
        assert gw.config_path.read_bytes() == before


def test_import_when_the_deployment_opts_in(demo_api: DemoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """With admin.config_writable: an export (masked) cannot be imported back as it is (422);
    an invalid file is refused with the loader's errors and the file unchanged; a valid one
    replaces the file, is reloaded (its new route is served) and leaves an audit entry with
    both digests; an operator may not import."""
    monkeypatch.setenv("UP_PASS", SECRET)
    with GatewayProcess(_config(demo_api, True), env={"UP_PASS": SECRET}) as gw:
        admin = gw.admin_token("admin")
        exported = gw.admin("GET", "/api/v1/config", token=admin)[1]
        status, masked = gw.admin("POST", "/api/v1/config", token=admin, json_body={"yaml": exported["yaml"]})
        assert status == 422 and "masked" in masked["detail"]
        original = gw.config_path.read_bytes()
        broken = original.decode() + "\nbogus_field: 1\n"
        status, invalid = gw.admin("POST", "/api/v1/config", token=admin, json_body={"yaml": broken})
        assert status == 422 and any("bogus_field" in e for e in invalid["errors"]), invalid
        assert all(".bastion-import-" not in e for e in invalid["errors"])
        assert gw.config_path.read_bytes() == original
        assert gw.admin("POST", "/api/v1/config", token=gw.admin_token("operator"),
                        json_body={"yaml": original.decode()})[0] == 403
        new = yaml.safe_load(original)
        new["services"][0]["routes"].append({"path": "/authors", "methods": ["GET"], "public": True})
        text = yaml.safe_dump(new, sort_keys=False)
        status, done = gw.admin("POST", "/api/v1/config", token=admin, json_body={"yaml": text})
        assert status == 200 and done["reloaded"] is True, done
        assert gw.config_path.read_text() == text
        paths = [r["path"] for r in gw.admin("GET", "/api/v1/routes", token=admin)[1]["items"]]
        assert "/authors" in paths
        trail = gw.admin("GET", "/api/v1/admin-audit?action=config.import", token=admin)[1]["items"]
        assert len(trail) == 1 and trail[0]["after"]["sha256"] == hashlib.sha256(text.encode()).hexdigest()
        assert trail[0]["before"]["sha256"] == hashlib.sha256(original).hexdigest()
        assert not list(gw.config_path.parent.glob(".bastion-import-*"))
