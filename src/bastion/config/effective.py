"""What the gateway really does on a route, in words: who may call it, then the stages that
run. One description for `bastion check`, the admin API's `/routes` and the dashboard's
routes page, so the three never disagree."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bastion.config.loader import ResolvedRoute
    from bastion.pipeline.stage import Stage


def who_may_call(route: ResolvedRoute) -> str:
    """``public``, the authentication methods with their scopes and roles, or why requests
    are never forwarded."""
    from bastion.stages.auth import auth_stage

    auth = auth_stage(route.built)
    if auth is None:
        return "public"
    if auth.refusal is not None:
        return f"{auth.summary}; never forwarded"
    return auth.summary


def enforced(route: ResolvedRoute) -> str:
    """Its authentication, then the stages that run (``401 …; never forwarded`` when nothing
    could verify what it requires: no other stage ever runs then)."""
    from bastion.stages.auth import AuthStage, auth_stage

    auth = auth_stage(route.built)
    if auth is not None and auth.refusal is not None:
        return f"{auth.summary}; never forwarded"
    stages = ",".join(stage_label(s) for s in route.built if not isinstance(s, AuthStage)) or "-"
    who = "public" if auth is None else auth.summary
    return f"{who}; stages: {stages}"


def stage_label(stage: Stage) -> str:
    """A stage's name, with what the access stage checks on the route beyond its override guard."""
    from bastion.stages.access import AccessStage

    if isinstance(stage, AccessStage) and stage.summary != "override guard":
        return f"access({stage.summary})"
    return stage.name
