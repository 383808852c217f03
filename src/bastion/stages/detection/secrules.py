"""Loading SecRules files into libmodsecurity, and nothing else.

Used by the settings (``config.py`` parses the files at load, so a syntax error is a
configuration error) and by the engine (``modsec.py`` loads them for real); a module of its
own so that neither imports the other. ``libmodsecurity`` is an optional dependency: it is
imported only when rules are loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from libmodsecurity import RulesSet


def load_rules(rules: RulesSet, files: Sequence[Path], directives: str) -> str | None:
    """Load the files then the directives into ``rules``; ModSecurity's error, if any."""
    for path in files:
        if rules.load_from_uri(str(path)) < 0:
            return rules.get_parser_error().strip() or f"{path} could not be loaded"
    if directives.strip() and rules.load(directives) < 0:
        return "in 'directives': " + (rules.get_parser_error().strip() or "could not be loaded")
    return None


def rules_error(files: Sequence[Path], directives: str) -> str | None:
    """Why ModSecurity cannot load these files and directives, or ``None`` if it can."""
    from libmodsecurity import RulesSet

    return load_rules(RulesSet(), files, directives)
