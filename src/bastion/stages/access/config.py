"""Settings of the ``access`` stage: who, once authenticated, may do what on a route."""

from __future__ import annotations

import re
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from bastion.pipeline.stage import StageConfig

#: Body properties a client without a privilege role may never send (mass assignment). Names
#: are compared folded (lower case, ``_`` and ``-`` dropped), so ``isAdmin``, ``is_admin`` and
#: ``IS-ADMIN`` are one name, as the many backends that bind properties loosely see them.
DEFAULT_PRIVILEGED: list[str] = [
    "role",
    "roles",
    "admin",
    "is_admin",
    "is_superuser",
    "is_staff",
    "superuser",
    "permissions",
    "privileges",
    "scopes",
    "scope",
    "groups",
    "group_ids",
    "acl",
    "owner",
    "owner_id",
    "verified",
    "email_verified",
    "is_verified",
    "approved",
    "balance",
    "credit",
    "plan",
    "tier",
]

#: What an ownership rule compares the request's value with.
_PRINCIPAL_VALUE = re.compile(r"^(principal\.(sub|consumer|consumer_id)|claim:[A-Za-z0-9_.:/-]{1,100})$")
#: A JSON field path in a body: ``owner`` or ``$.owner.id`` (dots between plain names).
_FIELD_PATH = re.compile(r"^(\$\.)?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
#: An object kind: a short name shared by the operation that creates objects and those that use them.
_KIND = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _network(value: object) -> object:
    """One message for a network that is not one (pydantic's union would give one per family)."""
    if isinstance(value, str):
        try:
            return ip_network(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a network in CIDR notation with its host bits zero "
                "(such as 10.0.0.0/8 or 2001:db8::/32)"
            ) from None
    return value


#: A client network, IPv4 or IPv6 (a bare address is a /32 or /128).
Network = Annotated[IPv4Network | IPv6Network, BeforeValidator(_network)]


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _check_field_path(value: str) -> str:
    if not _FIELD_PATH.match(value):
        raise ValueError("expected a JSON field name or path such as `owner` or `$.owner.id`")
    return value.removeprefix("$.")


class OwnerRule(_Part):
    """``owner``: the object a request names must belong to the caller (object-level authorization)."""

    param: str = Field(
        description=(
            "The parameter naming the object's owner: a path parameter of the route's template, a query "
            "parameter, or a JSON body field (`owner`, `$.owner.id`)."
        ),
    )
    in_: Literal["path", "query", "body"] = Field(
        "path",
        alias="in",
        description=(
            "Where `param` is. A request without it is refused; so is a query parameter given twice with "
            "different values. `body` needs the whole (JSON) body."
        ),
    )
    equals: str = Field(
        "principal.consumer",
        description=(
            "What the value must equal: `principal.consumer` (the consumer's name), `principal.consumer_id`, "
            "`principal.sub` (the token's `sub` claim) or `claim:NAME` (any claim of the token). A principal "
            "without it owns nothing. Compared exactly (case-sensitive)."
        ),
    )
    bypass_roles: list[str] = Field(
        default_factory=lambda: ["admin"],
        description="Roles that may reach any consumer's objects (support staff, administrators).",
    )

    @field_validator("equals")
    @classmethod
    def _equals(cls, value: str) -> str:
        if not _PRINCIPAL_VALUE.match(value):
            raise ValueError("expected principal.consumer, principal.consumer_id, principal.sub or claim:NAME")
        return value

    @field_validator("param")
    @classmethod
    def _param(cls, value: str) -> str:
        return _check_field_path(value)


class LearnOwnership(_Part):
    """``learn_ownership``: the operation creates objects whose creator the gateway remembers."""

    kind: str = Field(
        description=(
            "The objects' kind (`books`), which the operations that use them name in `learned_owner`; ids "
            "are remembered per service and kind."
        ),
    )
    id_from: str = Field(
        description=(
            "Where the new object's id is: `body:$.id` (a field of the upstream's JSON response), "
            "`header:Location` (the last segment of the path in that response header) or `path:NAME` "
            "(a path parameter of the request, for a create by PUT). Only 2xx responses to an "
            "authenticated consumer are learned."
        ),
    )

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if not _KIND.match(value):
            raise ValueError("expected a short name of letters, digits, '_', '-' or '.'")
        return value

    @field_validator("id_from")
    @classmethod
    def _id_from(cls, value: str) -> str:
        source, _, rest = value.partition(":")
        if source == "body":
            _check_field_path(rest)
        elif source == "header":
            if not rest or not all(c.isalnum() or c == "-" for c in rest):
                raise ValueError("expected header:NAME, such as header:Location")
        elif source == "path":
            if not rest.isidentifier():
                raise ValueError("expected path:NAME, the name of a path parameter")
        else:
            raise ValueError("expected body:$.FIELD, header:NAME or path:NAME")
        return value


class LearnedOwner(_Part):
    """``learned_owner``: the object a request names must have been created by the caller."""

    kind: str = Field(description="The kind named by the creating operation's `learn_ownership`.")
    param: str = Field(description="The path or query parameter holding the object's id.")
    in_: Literal["path", "query"] = Field("path", alias="in", description="Where `param` is.")
    unknown: Literal["deny", "allow"] = Field(
        "deny",
        description=(
            "What an object the gateway never saw created gets (made before it learned, or by another "
            "way in): `deny` (403, the default) or `allow`."
        ),
    )
    bypass_roles: list[str] = Field(
        default_factory=lambda: ["admin"], description="Roles that may reach any consumer's objects."
    )

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        return LearnOwnership._kind(value)


class AccessConfig(StageConfig):
    """``policies.access`` / ``x-bastion-access``: least-privilege authorization, after authentication.

    Every rule refuses with 403 (``access.<rule>``) what it does not allow; a rule that needs a
    consumer refuses an anonymous request with 401.
    """

    roles: list[str] = Field(
        default_factory=list, description="The consumer must have one of these roles (none listed: no role needed)."
    )
    scopes: list[str] = Field(
        default_factory=list,
        description="Scopes the credential must carry, all of them, beside those the OpenAPI `security` requires.",
    )
    admin: bool = Field(
        False,
        description=(
            "An administrative operation (function-level authorization): only consumers with one of "
            "`admin_roles` may call it. Also true for an OpenAPI operation tagged with one of `admin_tags`; "
            "false does not undo a tag."
        ),
    )
    admin_tags: list[str] = Field(
        default_factory=lambda: ["admin"],
        description="OpenAPI tags (compared case-insensitively) that make an operation administrative.",
    )
    admin_roles: list[str] = Field(
        default_factory=lambda: ["admin"], description="Roles that may call administrative operations."
    )
    owner: OwnerRule | None = Field(None, description="Object ownership declared on a parameter (see below).")
    learn_ownership: LearnOwnership | None = Field(
        None, description="This operation creates objects: remember who created each (see below)."
    )
    learned_owner: LearnedOwner | None = Field(
        None, description="Only the consumer who created the object may use it (see below)."
    )
    property_check: bool | None = Field(
        None,
        description=(
            "Refuse request bodies that set privileged properties (`privileged_properties`, anywhere in the "
            "body, and those the operation's schema marks readOnly) unless the consumer has one of "
            "`privilege_roles`; anonymous callers (a public registration) never do. Unset: on where "
            "`privileged_properties` is set. The check needs the whole body (JSON or a form)."
        ),
    )
    privileged_properties: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PRIVILEGED),
        description="Body property names only privileged consumers may send; `isAdmin` and `is_admin` are one name.",
    )
    privilege_roles: list[str] = Field(
        default_factory=lambda: ["admin"], description="Roles that may set privileged properties."
    )
    ip_allow: list[Network] = Field(
        default_factory=list,
        description=(
            "Client networks (CIDR, IPv4 or IPv6) the route may be called from; empty: any. The client is "
            "the peer, or the first hop before trusted proxies."
        ),
    )
    ip_deny: list[Network] = Field(
        default_factory=list, description="Client networks refused on the route, whatever `ip_allow` says."
    )
    method_override: Literal["refuse", "allow"] = Field(
        "refuse",
        description=(
            "`refuse`: a request whose X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override header or "
            "`_method` query parameter names another method, or that carries X-Original-URL or X-Rewrite-URL, "
            "is refused with 403: a backend honouring them would run an operation the gateway did not authorize."
        ),
    )
