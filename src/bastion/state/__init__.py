"""Shared state backends (``backends.state`` in bastion.yaml): memory and redis.

Stages reach the backend through ``services.state`` (see :mod:`bastion.services`) and
program against :class:`StateBackend` only.
"""

from bastion.state.interface import (
    PreparedScript,
    Script,
    ScriptArg,
    ScriptResult,
    ScriptStore,
    StateBackend,
    Subscription,
    Value,
)
from bastion.state.memory import MemoryBackend

__all__ = [
    "MemoryBackend",
    "PreparedScript",
    "Script",
    "ScriptArg",
    "ScriptResult",
    "ScriptStore",
    "StateBackend",
    "Subscription",
    "Value",
]
