"""Settings of the audit log (``audit:``): where every exchange's record is kept, and for how long.

A module of its own beside :mod:`bastion.config.model`, which holds the one field that
refers to it: the audit log is a record sink of the worker, not a stage of a route.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def _seconds(value: object) -> object:
    """``30d``, ``12h``, ``90m``, ``45s``, or a number of seconds."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(
                f"{value!r} is not a duration: write a number of seconds, or one such as 45s, 90m, 12h, 30d"
            )
        return float(match.group(1)) * _UNITS[match.group(2)]
    return value


#: A retention age: at least a minute, at most ten years, in seconds once parsed.
Age = Annotated[float, BeforeValidator(_seconds), Field(ge=60, le=3650 * 86400.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuditRetention(_Strict):
    """How long the store keeps audit records; enforced off the request path, once a minute."""

    max_age: Age = Field(30 * 86400.0, description="Records older than this are deleted, such as `30d` or `12h`.")
    max_rows: int = Field(
        10_000_000, ge=1000, le=10_000_000_000, description="At most this many records are kept; the oldest go first."
    )


#: RFC 5424 facility codes by name.
FACILITIES: dict[str, int] = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7, "uucp": 8,
    "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13, "console": 14, "solaris-cron": 15,
    "local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}
_ADDRESS = re.compile(r"^(udp|tcp|tls)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")


class SyslogSettings(_Strict):
    """A syslog receiver every audit record is also sent to, as an RFC 5424 message whose
    text is the record's JSON line."""

    address: str = Field(
        description=(
            "The receiver: `udp://host:port` (RFC 5426, a datagram a record) or `tcp://host:port` "
            "(RFC 6587, octet-counted frames) or `tls://host:port` (RFC 5425: octet-counted frames over TLS, "
            "the receiver's certificate verified against `ca_file` and its host name), such as "
            "`udp://127.0.0.1:514` or `tls://logs.example.com:6514`; an IPv6 host in brackets."
        )
    )
    ca_file: Path | None = Field(
        None,
        description=(
            "With `tls://`: the PEM file of the CA(s) the receiver's certificate must chain to "
            "(relative to the config file's folder; default: the system's trusted CAs)."
        ),
    )
    facility: str = Field("local0", description="The RFC 5424 facility, by name: `local0` to `local7`, `auth`...")
    app_name: str = Field("bastion", min_length=1, max_length=48, description="The messages' APP-NAME.")
    hostname: str | None = Field(
        None, max_length=255, description="The messages' HOSTNAME (default: this machine's host name)."
    )

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        match = _ADDRESS.match(value)
        if match is None or not 0 < int(match.group(3)) < 65536:
            raise ValueError(
                f"a syslog address is udp://host:port, tcp://host:port or tls://host:port, got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _ca_file_with_tls(self) -> SyslogSettings:
        if self.ca_file is not None and not self.address.startswith("tls://"):
            raise ValueError(f"ca_file is for a tls:// receiver, and the address is {self.address!r}")
        return self

    @field_validator("facility")
    @classmethod
    def _facility(cls, value: str) -> str:
        if value not in FACILITIES:
            raise ValueError(f"{value!r} is not a syslog facility; use one of {', '.join(FACILITIES)}")
        return value

    def parts(self) -> tuple[str, str, int]:
        """The transport (``udp``, ``tcp`` or ``tls``), the host (without brackets) and the port."""
        match = _ADDRESS.match(self.address)
        if match is None:  # the validator refused it already
            raise ValueError(f"not a syslog address: {self.address!r}")
        return match.group(1), match.group(2).strip("[]"), int(match.group(3))


class OtelSettings(_Strict):
    """OpenTelemetry: a span per request (trace ID, span and parent, HTTP semantic conventions
    and Bastion's decision), exported over OTLP/HTTP with its JSON encoding."""

    endpoint: str = Field(
        description=(
            "The collector's OTLP/HTTP traces URL, such as `http://127.0.0.1:4318/v1/traces` "
            "(an OpenTelemetry Collector, Jaeger, Tempo...)."
        )
    )
    service_name: str = Field(
        "bastion", min_length=1, max_length=255, description="The spans' `service.name` resource attribute."
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Headers of each export request, such as a collector's credentials: "
            "`{authorization: '${OTEL_TOKEN}'}`."
        ),
    )
    queue_size: int = Field(
        10_000,
        ge=100,
        le=1_000_000,
        description=(
            "Spans waiting for export, per worker. A request never waits: beyond this, spans are "
            "dropped and counted in `bastion_otel_dropped_total`."
        ),
    )
    batch_size: int = Field(512, ge=1, le=10_000, description="Most spans one export request carries.")
    flush_interval: float = Field(
        1.0, gt=0, le=30, description="Seconds between exports (sooner when a batch is full)."
    )

    @field_validator("endpoint")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"an OTLP/HTTP endpoint starts with http:// or https://, got {value!r}")
        return value

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name) or "\r" in text or "\n" in text:
                raise ValueError(f"{name!r} is not a valid header (name: a token; value: one line)")
        return value


class AuditSettings(_Strict):
    """The audit log: one record per request (who, what, the decision and why), written off
    the request path through a bounded queue, in batches, to JSON lines and the store."""

    enabled: bool = Field(False, description="Keep an audit record of every request.")
    store: bool = Field(
        True,
        description=(
            "Write the records into the store's `audit_records` table (what `bastion logs` reads), "
            "through a local spool file that survives a crash."
        ),
    )
    output: str | None = Field(
        None,
        description=(
            "Also write each record as a JSON line: '-' for standard output, or a file (relative to the "
            "config file's folder) rotated by size, for Fluent Bit, Loki or ELK."
        ),
    )
    rotate_bytes: int = Field(
        100 * 1024 * 1024, ge=4096, description="The output file is rotated once it is larger than this many bytes."
    )
    keep_files: int = Field(5, ge=1, le=1000, description="Rotated output files kept (`audit.log.1` is the newest).")
    queue_size: int = Field(
        100_000,
        ge=100,
        le=10_000_000,
        description=(
            "Records waiting to be written, per worker. A request never waits for the log: beyond this, "
            "records are dropped, counted in `bastion_audit_dropped_total` and logged."
        ),
    )
    flush_interval: float = Field(
        0.2,
        gt=0,
        le=1.0,
        description=(
            "Seconds between batches: records reach the spool, the output and the store this often. "
            "A worker killed with SIGKILL loses at most its last interval (the spool is fsynced each second)."
        ),
    )
    spool_dir: Path = Field(
        Path("audit-spool"),
        description=(
            "Folder of the workers' spool files (relative to the config file's folder): records on their "
            "way to the store, replayed into it at start after a crash or while the store was down."
        ),
    )
    retention: AuditRetention = Field(default_factory=AuditRetention, description="Limits of the store's records.")
    syslog: SyslogSettings | None = Field(
        None,
        description=(
            "Also send each record to a syslog receiver (best effort: a record the receiver does not take "
            "is counted in `bastion_audit_syslog_errors_total`, never waited for)."
        ),
    )

    otel: OtelSettings | None = Field(
        None,
        description=(
            "Also export a span per request to an OpenTelemetry collector (OTLP/HTTP, JSON), continuing the "
            "client's W3C `traceparent` and sending the gateway's span upstream (the `tracing` stage)."
        ),
    )

    @model_validator(mode="after")
    def _writes_somewhere(self) -> AuditSettings:
        if self.enabled and not self.store and self.output is None and self.syslog is None and self.otel is None:
            raise ValueError(
                "the audit log is enabled but writes nowhere: set output, syslog or otel, or store: true"
            )
        if self.otel is not None and not self.enabled:
            raise ValueError("otel exports the audit log's requests as spans: it needs enabled: true")
        return self


__all__ = ["FACILITIES", "AuditRetention", "AuditSettings", "OtelSettings", "SyslogSettings"]
