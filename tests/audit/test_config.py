"""The ``audit:`` settings: the documented example loads, paths resolve beside the config,
and a mistake is named with its file, line and field."""

from __future__ import annotations

import re
from pathlib import Path

from bastion.config import load_config
from tests.config.util import errors_of, write

DOC = Path(__file__).parents[2] / "docs" / "audit.md"


def test_the_documented_example_loads_with_paths_beside_the_config(tmp_path: Path) -> None:
    """docs/audit.md's configuration is valid as written; its output file and the default
    spool folder resolve against the config file's folder, and the retention is parsed."""
    example = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)[0]  # the first: the whole section
    audit = load_config(write(tmp_path, example)).config.audit
    assert audit.enabled and audit.store
    assert audit.output == str(tmp_path / "audit.log")
    assert audit.spool_dir == (tmp_path / "audit-spool").resolve()
    assert (audit.retention.max_age, audit.retention.max_rows) == (30 * 86400, 10_000_000)


def test_off_by_default(tmp_path: Path) -> None:
    """Without ``audit:`` there is no audit log."""
    path = write(tmp_path, "services: [{name: a, upstream: 'http://127.0.0.1:9', routes: [{path: /, public: true}]}]\n")
    assert not load_config(path).config.audit.enabled


def test_an_audit_log_that_writes_nowhere_is_refused(tmp_path: Path) -> None:
    """``enabled`` with ``store: false`` and no ``output`` would keep nothing: a load error
    naming the file, the line and the section."""
    path = write(tmp_path, """\
        services: [{name: a, upstream: 'http://127.0.0.1:9', routes: [{path: /, public: true}]}]
        audit:
          enabled: true
          store: false
        """)
    (error,) = errors_of(path)
    assert error.startswith(f"{path}:2: audit:")
    assert "writes nowhere: set output, syslog or otel, or store: true" in error


def test_a_bad_retention_age_is_named(tmp_path: Path) -> None:
    """A retention age that is not a duration says what to write instead."""
    path = write(tmp_path, """\
        services: [{name: a, upstream: 'http://127.0.0.1:9', routes: [{path: /, public: true}]}]
        audit: {enabled: true, retention: {max_age: a month}}
        """)
    (error,) = errors_of(path)
    assert "audit.retention.max_age" in error and "'a month' is not a duration" in error


def test_audit_and_access_log_cannot_share_standard_output(tmp_path: Path) -> None:
    """The access log writes to standard output by default: an audit output of '-' beside it
    is refused (their lines would interleave), naming the field and the ways out; with the
    access log in a file it loads."""
    text = """\
        services: [{name: a, upstream: 'http://127.0.0.1:9', routes: [{path: /, public: true}]}]
        audit: {enabled: true, output: '-'}
        """
    (error,) = errors_of(write(tmp_path, text))
    assert "audit.output" in error and "their lines would interleave" in error
    loaded = load_config(write(tmp_path, text + "access_log: {path: access.log}\n"))
    assert loaded.config.audit.output == "-"
