"""A developer's own API keys: list (ids, prefixes, scopes, expiry, last use; never a
secret), create with scopes within the plan's ``scopes``, rotate with an overlap window,
revoke. A key of another consumer is answered 404 whatever is done to it (no hint that it
exists). Each change is recorded in the admin audit trail, as ``portal:<login>``, in the same
transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from bastion.control.context import AdminContext
from bastion.control.portal.web import Developer, field, form_of, message, page
from bastion.stages.ratelimit.config import PlanLimits
from bastion.store import adminaudit
from bastion.store import keys as store_keys
from bastion.store.errors import StoreError
from bastion.store.models import ApiKey, utcnow

#: Lifetimes a developer may give a new key, in days (0: no expiry).
LIFETIMES = (30, 90, 365, 0)
DEFAULT_LIFETIME = 90
#: The overlap a rotation offers by default, and the longest allowed.
DEFAULT_OVERLAP = 86400
MAX_OVERLAP = 30 * 86400


@dataclass(frozen=True)
class KeyView:
    """A key as the portal shows it."""

    id: str
    prefix: str
    scopes: list[str]
    created: str
    expires: str
    last_used: str
    status: str
    usable: bool


def allowed_scopes(ctx: AdminContext, plan: str | None) -> list[str]:
    """The scopes the developer's plan lets its keys carry (none without a plan, or when the
    plan lists none): fail closed."""
    if plan is None:
        return []
    settings = ctx.config.config.plans.get(plan)
    if settings is None:
        return []
    return list(PlanLimits.model_validate(settings).scopes)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "-"


def _view(key: ApiKey, now: datetime) -> KeyView:
    if key.revoked_at is not None:
        status, usable = "revoked", False
    elif key.expires_at is not None and key.expires_at <= now:
        status, usable = "expired", False
    elif key.replaced_by is not None:
        status, usable = f"rotated (replaced by {key.replaced_by}); works until {_when(key.expires_at)}", True
    else:
        status, usable = "active", True
    return KeyView(key.id, key.prefix, list(key.scopes), _when(key.created_at), _when(key.expires_at),
                   _when(key.last_used_at), status, usable)


def _own_keys(ctx: AdminContext, developer: Developer) -> list[KeyView]:
    store = ctx.store()
    now = utcnow()
    with store.read() as session:
        return [_view(key, now) for key, _ in store_keys.list_keys(session, developer.consumer)]


def _own(session: Any, developer: Developer, key_id: str) -> ApiKey | None:
    """``key_id`` if it is one of the developer's keys (locked for the change), else ``None``."""
    if not key_id or len(key_id) > 16:
        return None
    key = session.get(ApiKey, key_id, with_for_update=True)
    return key if key is not None and key.consumer_id == developer.consumer_id else None


def _as_audit(key: ApiKey) -> dict[str, Any]:
    return {"id": key.id, "prefix": key.prefix, "scopes": list(key.scopes),
            "expires_at": key.expires_at.isoformat() if key.expires_at else None,
            "revoked": key.revoked_at is not None, "replaced_by": key.replaced_by}


async def list_page(ctx: AdminContext, request: Request, developer: Developer) -> Response:
    return await _listing(ctx, request, developer)


async def _listing(ctx: AdminContext, request: Request, developer: Developer, status: int = 200,
                   error: str | None = None, new_key: str | None = None, new_id: str | None = None) -> Response:
    keys = await ctx.call(_own_keys, ctx, developer)
    return page(request, "keys.html", status, keys=keys, scopes=allowed_scopes(ctx, developer.plan),
                lifetimes=LIFETIMES, default_lifetime=DEFAULT_LIFETIME, default_overlap=DEFAULT_OVERLAP,
                max_overlap=MAX_OVERLAP, error=error, new_key=new_key, new_id=new_id)


async def create(ctx: AdminContext, request: Request, developer: Developer) -> Response:
    """A new key with the scopes asked for, each of them within the plan's."""
    form = await form_of(request)
    if form is None:
        return message(request, 400, "Form refused", "This is not a form.")
    wanted = sorted({value for value in form.getlist("scope") if isinstance(value, str)})
    allowed = set(allowed_scopes(ctx, developer.plan))
    outside = [s for s in wanted if s not in allowed]
    if outside:
        return await _listing(ctx, request, developer, 403,
                              error=f"Your plan does not allow the scope(s) {', '.join(outside)}.")
    lifetime = field(form, "lifetime", 8)
    days = int(lifetime) if lifetime.isdigit() else -1
    if days not in LIFETIMES:
        return await _listing(ctx, request, developer, 422, error="Choose one of the lifetimes offered.")
    expires = utcnow() + timedelta(days=days) if days else None
    secret, key_id = await ctx.call(_create, ctx, developer, wanted, expires)
    return await _listing(ctx, request, developer, new_key=secret, new_id=key_id)


def _create(ctx: AdminContext, developer: Developer, scopes: list[str], expires: datetime | None) -> tuple[str, str]:
    store = ctx.store()
    with store.write() as session:
        new = store_keys.create(session, store.pepper, developer.consumer, scopes, expires)
        adminaudit.record(session, action="key.create", target=f"key:{new.record.id}",
                          after=_as_audit(new.record) | {"consumer": developer.consumer},
                          actor=developer.actor, via="session", source=developer.source)
        return new.secret, new.record.id


async def rotate(ctx: AdminContext, request: Request, developer: Developer) -> Response:
    """A new key replacing one of the developer's; the old one keeps working for the overlap."""
    form = await form_of(request)
    if form is None:
        return message(request, 400, "Form refused", "This is not a form.")
    overlap_text = field(form, "overlap", 12)
    if not overlap_text.isdigit() or int(overlap_text) > MAX_OVERLAP:
        return await _listing(ctx, request, developer, 422,
                              error=f"The overlap is a number of seconds from 0 to {MAX_OVERLAP}.")
    allowed = allowed_scopes(ctx, developer.plan)
    try:
        done = await ctx.call(_rotate, ctx, developer, str(request.path_params["key_id"]),
                              timedelta(seconds=int(overlap_text)), allowed)
    except StoreError as exc:
        return await _listing(ctx, request, developer, 409, error=str(exc))
    if done is None:
        return message(request, 404, "Key not found", "You have no key with that id.")
    secret, key_id = done
    return await _listing(ctx, request, developer, new_key=secret, new_id=key_id)


def _rotate(ctx: AdminContext, developer: Developer, key_id: str, overlap: timedelta,
            allowed: list[str]) -> tuple[str, str] | None:
    store = ctx.store()
    with store.write() as session:
        old = _own(session, developer, key_id)
        if old is None:
            return None
        before = _as_audit(old)
        new = store_keys.rotate(session, store.pepper, key_id, overlap, old.expires_at)
        # The plan may have lost scopes since the old key was made: the new key keeps only
        # those it still allows.
        new.record.scopes = [s for s in new.record.scopes if s in allowed]
        adminaudit.record(session, action="key.rotate", target=f"key:{key_id}", before=before,
                          after=_as_audit(old) | {"new_key": _as_audit(new.record)},
                          actor=developer.actor, via="session", source=developer.source)
        return new.secret, new.record.id


async def revoke(ctx: AdminContext, request: Request, developer: Developer) -> Response:
    key_id = str(request.path_params["key_id"])
    found = await ctx.call(_revoke, ctx, developer, key_id)
    if not found:
        return message(request, 404, "Key not found", "You have no key with that id.")
    return await _listing(ctx, request, developer)


def _revoke(ctx: AdminContext, developer: Developer, key_id: str) -> bool:
    store = ctx.store()
    with store.write() as session:
        key = _own(session, developer, key_id)
        if key is None:
            return False
        before = _as_audit(key)
        if not store_keys.revoke(session, key_id):
            return True  # revoked already: nothing changed, nothing to record
        adminaudit.record(session, action="key.revoke", target=f"key:{key_id}", before=before, after=_as_audit(key),
                          actor=developer.actor, via="session", source=developer.source)
    return True
