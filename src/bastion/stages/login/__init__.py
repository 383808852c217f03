"""Account lockout on login operations: failed logins counted per target account."""

from bastion.pipeline.stage import StageSpec
from bastion.stages.login.config import LoginConfig
from bastion.stages.login.stage import LoginStage

SPEC = StageSpec(
    name="login",
    config_model=LoginConfig,
    build=LoginStage.from_config,
    description=(
        "Runs where `account` is set (a login operation), once the body is read: counts each try per target "
        "account in the state backend, and answers 429 with `Retry-After` while the account is locked out after "
        "`max_failures` failed logins (the upstream answered one of `failure_statuses`), from whatever address; "
        "a successful login resets the count. 503 when the state backend cannot answer."
    ),
)

__all__ = ["SPEC", "LoginConfig", "LoginStage"]
