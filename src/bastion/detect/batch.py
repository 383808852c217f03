"""One tick's records, sorted in one pass by what each detector counts.

The detectors count in the state backend, and a state call (a coroutine on the memory
backend, a round trip on Redis) costs far more than looking at a record. So a tick's
records are first grouped by each detector's key -- the client IP for the per-IP
counters, the credential, the consumer and route, the route and interval -- and each
detector then makes its calls once per key, whatever the number of records under it.
What a detector needs per key is kept in the records' order (their times, or the records
themselves where it replays them: see :mod:`bastion.detect.sink`), so it fires on the same
record as when it counted one record at a time.

Which detectors look at a record is decided once at load (:class:`Plan`): a record that no
enabled detector can count (an anonymous 200 without a route, with every baseline off)
costs a few comparisons. The module is compiled (mypyc, see setup.py): it looks at every
record a worker answers.
"""

from __future__ import annotations

from bastion.config.detectors import DetectorsSettings
from bastion.types import ExchangeRecord


def login_failure(record: ExchangeRecord) -> str | None:
    """The account (its hash, as the ``login`` stage records it) of a failed or locked-out
    login, else ``None``."""
    fact = record.facts.get("login")
    if not isinstance(fact, dict):
        return None
    account = fact.get("account")
    if not isinstance(account, str):
        return None
    # A try refused because the account is locked is one more try of the attack.
    return account if fact.get("failed") is True or record.blocked_by == "login" else None


class Plan:
    """What the enabled detectors look at, read once from the settings."""

    def __init__(self, settings: DetectorsSettings) -> None:
        # Typed here: the mypyc build sees pydantic as Any, and these are read per record.
        self.brute_force: bool = settings.brute_force.enabled
        self.scanner: bool = settings.scanner.enabled
        self.injection: bool = settings.injection.enabled
        self.token_sharing: bool = settings.token_sharing.enabled
        self.enumeration: bool = settings.enumeration.enabled
        self.accounts: bool = settings.account_brute_force.enabled
        self.traffic: bool = settings.traffic_spike.enabled
        self.errors: bool = settings.error_spike.enabled
        #: Whether a record's login fact is read at all (it is a lookup in its facts).
        self.logins: bool = self.brute_force or self.accounts
        self.probe_paths: tuple[str, ...] = settings.scanner.probe_paths
        self.agents: tuple[str, ...] = settings.scanner.user_agents
        self.traffic_interval: float = settings.traffic_spike.interval
        self.error_interval: float = settings.error_spike.interval

    def is_probe(self, record: ExchangeRecord) -> bool:
        """Whether ``record`` is a scanner's probe: a probe path, or a scanner's user agent."""
        path = record.path
        if path is not None and path.startswith(self.probe_paths):
            return True
        agent = record.user_agent
        if agent:
            lower = agent.lower()
            for name in self.agents:
                if name in lower:
                    return True
        return False


def _times(groups: dict[str, list[float]], key: str, ts: float) -> None:
    times = groups.get(key)
    if times is None:
        groups[key] = [ts]
    else:
        times.append(ts)


class Batch:
    """A tick's records by detector and key, each key's entries in the records' order."""

    def __init__(self) -> None:
        #: client IP -> the times of its failed logins (``brute_force``)
        self.failures: dict[str, list[float]] = {}
        #: client IP -> the times of its probes (``scanner``)
        self.probes: dict[str, list[float]] = {}
        #: client IP -> the times of its 404/405 answers (``scanner``)
        self.not_found: dict[str, list[float]] = {}
        #: client IP -> the times of its requests the detection stage blocked (``injection``)
        self.attacks: dict[str, list[float]] = {}
        #: credential -> its records (``token_sharing``)
        self.credentials: dict[str, list[ExchangeRecord]] = {}
        #: (consumer, route) -> their records (``enumeration``)
        self.objects: dict[tuple[str, str], list[ExchangeRecord]] = {}
        #: account -> its failed logins' records (``account_brute_force``)
        self.accounts: dict[str, list[ExchangeRecord]] = {}
        #: (consumer, route, interval number) -> their records (``traffic_spike``)
        self.traffic: dict[tuple[str, str, int], list[ExchangeRecord]] = {}
        #: (route, interval number) -> its records (``error_spike``)
        self.answers: dict[tuple[str, int], list[ExchangeRecord]] = {}

    def add(self, plan: Plan, record: ExchangeRecord) -> None:
        """Note ``record`` under the key of every enabled detector that counts it."""
        ip = record.client
        status = record.status
        blocked_by = record.blocked_by
        login = login_failure(record) if plan.logins else None
        if plan.brute_force and (status == 401 or blocked_by == "auth" or login is not None):
            _times(self.failures, ip, record.ts)
        if plan.scanner:
            if plan.is_probe(record):
                _times(self.probes, ip, record.ts)
            if status == 404 or status == 405:
                _times(self.not_found, ip, record.ts)
        if plan.injection and blocked_by == "detection":
            _times(self.attacks, ip, record.ts)
        credential = record.credential
        if plan.token_sharing and credential is not None:
            self.credentials.setdefault(credential, []).append(record)
        if plan.accounts and login is not None:
            self.accounts.setdefault(login, []).append(record)
        route = record.route
        if route is None:
            return  # the rest count per route
        consumer = record.consumer
        if consumer is not None:
            if plan.enumeration:
                self.objects.setdefault((consumer, route), []).append(record)
            if plan.traffic:
                bucket = int(record.ts // plan.traffic_interval)
                self.traffic.setdefault((consumer, route, bucket), []).append(record)
        if plan.errors:
            self.answers.setdefault((route, int(record.ts // plan.error_interval)), []).append(record)
