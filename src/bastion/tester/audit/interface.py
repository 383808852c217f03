"""The audit's types: severities, rules, what a rule check returns, and findings."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Generic, Literal, TypeVar

from bastion.config.yamlsrc import FieldPath, Source, format_path


class Severity(IntEnum):
    """How bad a finding is; ordered, so ``severity >= Severity.HIGH`` works."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        """``"high"`` -> :attr:`HIGH`; raise ValueError naming the choices otherwise."""
        try:
            return cls[text.upper()]
        except KeyError:
            choices = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r}; expected one of: {choices}") from None


#: What a rule looks at: the OpenAPI document, or the gateway configuration (``-c``).
Scope = Literal["openapi", "config"]

#: The OWASP API Security Top 10 2023 categories, for titles in reports.
OWASP_API_2023: dict[str, str] = {
    "API1:2023": "Broken Object Level Authorization",
    "API2:2023": "Broken Authentication",
    "API3:2023": "Broken Object Property Level Authorization",
    "API4:2023": "Unrestricted Resource Consumption",
    "API5:2023": "Broken Function Level Authorization",
    "API6:2023": "Unrestricted Access to Sensitive Business Flows",
    "API7:2023": "Server Side Request Forgery",
    "API8:2023": "Security Misconfiguration",
    "API9:2023": "Improper Inventory Management",
    "API10:2023": "Unsafe Consumption of APIs",
}


@dataclass(frozen=True, slots=True)
class Hit:
    """What a rule check reports: a message and where, in which parsed file."""

    message: str
    source: Source
    path: FieldPath


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """A rule's identity and advice, the same for every finding it makes."""

    id: str
    title: str
    category: str
    cwe: int
    severity: Severity
    scope: Scope
    #: What the rule looks for, in one or two sentences.
    checks: str
    #: How to fix it: the Bastion setting or OpenAPI change.
    fix: str

    def __post_init__(self) -> None:
        if self.category not in OWASP_API_2023:
            raise ValueError(f"rule {self.id}: unknown OWASP API 2023 category {self.category!r}")

    @property
    def cwe_id(self) -> str:
        return f"CWE-{self.cwe}"


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Rule(Generic[T]):
    """A rule: its description and the function that checks a subject (spec or gateway)."""

    info: RuleInfo
    check: Callable[[T], Iterable[Hit]]


@dataclass(frozen=True, slots=True)
class Location:
    """Where a finding is: file and line, and the field as a JSON pointer and as a dotted path."""

    file: str
    line: int | None
    pointer: str
    field: str

    @classmethod
    def of(cls, source: Source, path: FieldPath) -> Location:
        return cls(source.file, source.line_of(path), json_pointer(path), format_path(path))

    def __str__(self) -> str:
        return self.file if self.line is None else f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem found by one rule at one place."""

    rule: RuleInfo
    message: str
    location: Location

    @property
    def severity(self) -> Severity:
        return self.rule.severity


@dataclass(frozen=True, slots=True)
class Skipped:
    """A rule that did not run, and why (nothing is skipped silently)."""

    rule: RuleInfo
    reason: str


def json_pointer(path: FieldPath) -> str:
    """RFC 6901: ``('paths', '/books', 'get')`` -> ``/paths/~1books/get``."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)
