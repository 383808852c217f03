"""The audit log (issue 17): a record sink that keeps one row per request, off the request path.

:class:`AuditSink` takes each exchange record into a bounded queue; its writer thread
batches them to the worker's spool, JSON lines and the store (``audit_records``), which
``bastion logs`` reads. See ``docs/audit.md``.
"""

from __future__ import annotations

from bastion.audit.sink import AuditSink

__all__ = ["AuditSink"]
