"""API2:2023 Broken Authentication: what the API accepts instead of a valid credential.

Most checks start from *probe operations*: secured GET operations (no request body) that the
first user may call (2xx) and an anonymous client may not (401/403). A forged or misplaced
credential that turns the anonymous refusal into a 2xx on such an operation is a finding — the
refusal proves the operation needs authentication, the 2xx proves the forgery passed.

The login checks work on the *login operation*: the one an identity logged in with, else a
public POST whose JSON body has a user-name-like property (username, email, login...) and a
password-like one (password, passwd, pass...).

The password checks work on *password operations*: secured PUT/POST/PATCH operations whose path
or operationId mentions ``password`` and whose JSON body has a new-password property. One that
also takes a *user reference* — a path parameter or body property named ``id``, ``userId``,
``user``, ``username``, ``login``, ``accountId``, ``email``... (body: not ``id``) — acts on the
account it names. A user's own reference is read from the first secured GET without path
parameters whose last segment is ``me``/``self``/``current``/``profile``/``account``/``whoami``...
(or whose operationId says ``current``/``whoami``): the property named like the parameter, else
``id`` (``email`` for e-mail references); else the token's ``sub`` claim; user-name references
use the identity's login user name.

The checks live in three modules: ``tokens`` (forged, misplaced and expired credentials),
``logins`` (the login operation) and ``passwords`` (password changes).
"""

from __future__ import annotations

from bastion.tester.scan.checks.authn import logins, passwords, tokens
from bastion.tester.scan.checks.authn.logins import find_login
from bastion.tester.scan.interface import Check

__all__ = ["CHECKS", "find_login"]

#: Every API2 check, in the order they run.
CHECKS: list[Check] = [*tokens.CHECKS, *logins.CHECKS, *passwords.CHECKS]
