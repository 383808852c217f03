"""Sensitive data detection: card numbers, SSNs, IBANs, e-mail addresses, phone numbers,
JWTs, private keys, password hashes and cloud/SaaS secrets, found in bytes.

Sans-IO and stage-free: :class:`Scanner` is built once from a list of types (kinds and
groups, see :data:`GROUPS`) and finds values in a buffer; :class:`StreamScanner` does the
same over a body in chunks with bounded memory; :func:`mask` and :func:`remove` say what a
value becomes. The ``redact`` stage and the access log use it.
"""

from bastion.sensitive.detectors import DEFAULT_TYPES, DETECTORS, GROUPS, expand
from bastion.sensitive.replace import MASK_KEEP, mask, removal_mark
from bastion.sensitive.scanner import Finding, Scanner, StreamScanner

__all__ = [
    "DEFAULT_TYPES",
    "DETECTORS",
    "GROUPS",
    "MASK_KEEP",
    "Finding",
    "Scanner",
    "StreamScanner",
    "expand",
    "mask",
    "removal_mark",
]
