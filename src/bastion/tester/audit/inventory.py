"""Inventory rules (API9): which servers, environments and versions the document exposes."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from bastion.config.yamlsrc import FieldPath
from bastion.tester.audit.context import Spec
from bastion.tester.audit.interface import Hit, Rule, RuleInfo, Severity
from bastion.tester.audit.transport import is_loopback, server_urls

VERSION_SEGMENT = re.compile(r"^v\d+(\.\d+)*$", re.IGNORECASE)
NON_PROD_LABEL = re.compile(
    r"(^|[.-])(dev|develop|development|staging|stage|test|testing|qa|uat|sandbox|"
    r"internal|local)([.-]|$)",
    re.IGNORECASE,
)


NO_SERVERS = RuleInfo(
    id="BAST-INV-001",
    title="No servers declared",
    category="API9:2023",
    cwe=1059,
    severity=Severity.LOW,
    scope="openapi",
    checks="The document has no `servers`: nobody can tell from it where the API is deployed, so hosts are "
    "forgotten when it changes.",
    fix="List every deployment in `servers` with a `description` naming its environment (production, staging).",
)


def no_servers(spec: Spec) -> Iterator[Hit]:
    servers = spec.data.get("servers")
    if not isinstance(servers, list) or not servers:
        yield Hit("the document declares no servers", spec.source, ())


UNDESCRIBED_SERVER = RuleInfo(
    id="BAST-INV-002",
    title="Server without an environment description",
    category="API9:2023",
    cwe=1059,
    severity=Severity.INFO,
    scope="openapi",
    checks="A server has no `description`: the document does not say which environment it is.",
    fix="Add a `description` to every server (e.g. `Production`, `Staging, test data only`).",
)


def undescribed_server(spec: Spec) -> Iterator[Hit]:
    for url, path, server in server_urls(spec):
        if not str(server.get("description", "")).strip():
            yield Hit(f"server {url} has no description", spec.source, path[:-1])


NON_PROD_SERVER = RuleInfo(
    id="BAST-INV-003",
    title="Non-production server in the document",
    category="API9:2023",
    cwe=1059,
    severity=Severity.LOW,
    scope="openapi",
    checks="A server URL points at a development, test or internal host (localhost, private address, dev./"
    "staging. names): such hosts usually have weaker protection and leak into published documents.",
    fix="Publish only production servers; keep other environments in a separate document that is not public, "
    "and put them behind Bastion too.",
)


def _non_production(host: str) -> bool:
    if is_loopback(host) or host.endswith((".local", ".internal", ".lan")):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_private
    except ValueError:
        return bool(NON_PROD_LABEL.search(host))


def non_prod_server(spec: Spec) -> Iterator[Hit]:
    for url, path, _ in server_urls(spec):
        host = urlsplit(url).hostname if "://" in url else None
        if host and _non_production(host):
            yield Hit(f"server {url} looks like a non-production host", spec.source, path)


SEVERAL_VERSIONS = RuleInfo(
    id="BAST-INV-004",
    title="Several API versions served together",
    category="API9:2023",
    cwe=1059,
    severity=Severity.MEDIUM,
    scope="openapi",
    checks="Paths or servers carry more than one version prefix (/v1 and /v2): old versions tend to keep old "
    "flaws and lose their owners.",
    fix="Retire old versions on a schedule: mark their operations `deprecated: true`, announce a date "
    "(Sunset header), then remove them from the document so Bastion stops routing them.",
)


def several_versions(spec: Spec) -> Iterator[Hit]:
    first: dict[str, FieldPath] = {}
    paths = spec.data.get("paths")
    for template in paths if isinstance(paths, dict) else {}:
        for seg in str(template).split("/"):
            if VERSION_SEGMENT.match(seg):
                first.setdefault(seg.lower(), ("paths", template))
    for url, path, _ in server_urls(spec):
        for seg in urlsplit(url).path.split("/"):
            if VERSION_SEGMENT.match(seg):
                first.setdefault(seg.lower(), path)
    if len(first) > 1:
        versions = sorted(first)
        yield Hit(f"the document serves versions {', '.join(versions)}", spec.source, first[versions[-1]])


DEPRECATED = RuleInfo(
    id="BAST-INV-005",
    title="Deprecated operation still served",
    category="API9:2023",
    cwe=1059,
    severity=Severity.LOW,
    scope="openapi",
    checks="An operation is `deprecated: true` but still in the document, so the gateway still routes it.",
    fix="Set a removal date, send a `Sunset` header meanwhile, then delete the operation from the document.",
)


def deprecated(spec: Spec) -> Iterator[Hit]:
    for op in spec.operations:
        if op.node.get("deprecated") is True:
            yield Hit(f"{op.label} is deprecated but still served", spec.source, (*op.path, "deprecated"))


UNRESOLVED_REF = RuleInfo(
    id="BAST-INV-006",
    title="Reference that cannot be followed",
    category="API9:2023",
    cwe=1059,
    severity=Severity.LOW,
    scope="openapi",
    checks="A `$ref` points outside the document or at nothing: the audit (and Bastion's validation) cannot see "
    "what it describes.",
    fix="Bundle external references into the document (e.g. with a bundler) and fix dangling ones.",
)


def _refs(node: Any, path: FieldPath) -> Iterator[tuple[str, FieldPath]]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"], path
        for k, v in node.items():
            yield from _refs(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _refs(v, (*path, i))


def unresolved_ref(spec: Spec) -> Iterator[Hit]:
    for ref, path in _refs(spec.data, ()):
        _, tpath = spec.resolve({"$ref": ref}, path)
        if tpath == path:
            yield Hit(f"$ref {ref!r} cannot be followed", spec.source, (*path, "$ref"))


RULES: tuple[Rule[Spec], ...] = (
    Rule(NO_SERVERS, no_servers),
    Rule(UNDESCRIBED_SERVER, undescribed_server),
    Rule(NON_PROD_SERVER, non_prod_server),
    Rule(SEVERAL_VERSIONS, several_versions),
    Rule(DEPRECATED, deprecated),
    Rule(UNRESOLVED_REF, unresolved_ref),
)
