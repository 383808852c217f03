"""Request-target normalisation and route matching (sans-IO, no regular expressions)."""

from bastion.routing.router import Match, Router
from bastion.routing.target import BadTarget, normalize_target, split_absolute, split_target

__all__ = ["BadTarget", "Match", "Router", "normalize_target", "split_absolute", "split_target"]
