"""Instructions per record of the audit log's writer and store threads, counted by callgrind.

    python bench/audit_instructions.py [--python .venv/bin/python] [--records 2000] [--keep FILE]

Runs itself under ``valgrind --tool=callgrind`` with ``--records`` allowed requests' records
queued in an ``AuditSink`` (spool, JSON lines to /dev/null, a SQLite store in a temporary
folder): the records are built first, then the counters are zeroed, the sink started (its
writer and store threads) and closed (every queued record written and stored), and the
counters dumped. The instructions of every thread meanwhile, per record, are the CPU the audit
log spends off the request path: work that competes with the event loop for the interpreter
and the machine, so it bounds the gateway's throughput. The store's migration runs before the
zeroing. Needs valgrind (Debian package). A minute or two a run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: The measured process: queue the records, say so, wait; write and store them, say so, wait.
CHILD = """
import os, sys, time
from pathlib import Path
from bastion.audit import AuditSink
from bastion.audit.storage import count
from bastion.config.audit import AuditSettings
from bastion.config.model import StoreSettings
from bastion.proxy import record
from bastion.proxy.http1 import Incoming
from bastion.services import WorkerIdentity
from bastion.types import Exchange, Request

folder, n = Path(sys.argv[1]), int(sys.argv[2])
settings = AuditSettings(enabled=True, output=os.devnull, spool_dir=folder / "spool", queue_size=n + 1)
store = StoreSettings(url=f"sqlite:///{folder / 'bastion.db'}", pepper_file=folder / "pepper")
audit = AuditSink(settings, store, WorkerIdentity("bench", 0, 1, os.getpid()))
audit._open_store()  # the migration, before the counters are zeroed
sinks = record.RecordSinks([audit])
req = Incoming()
req.host = "gw.test"
req.headers = [("host", "gw.test"), ("user-agent", "bench/1.0"), ("accept", "*/*")]
request = Request("GET", "/v1/items/42", "/v1/items/42", "", req.headers)
for i in range(n):  # an allowed request's record, as bench/audit.py makes it
    req.started = time.perf_counter()
    request_id = os.urandom(16).hex()
    ex = Exchange(request, request_id, "api", "api:/v1/items/{id}", req.started)
    draft = record.new_record(req, request_id, "127.0.0.1")
    draft.path, draft.route, draft.service = "/v1/items/42", "api:/v1/items/{id}", "api"
    draft.bytes_in, draft.upstream, draft.status, draft.bytes_out = 0, "http://127.0.0.1:9000", 200, 512
    record.finish_record(sinks, ex, draft, req)
print("queued", flush=True)
sys.stdin.readline()
audit.start()
audit.close()
print("stored", count(audit._store.engine), flush=True)
sys.stdin.readline()
"""


def control(command: str, pid: int) -> None:
    """``callgrind_control <command> <pid>``, quietly."""
    subprocess.run(["callgrind_control", command, str(pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/audit_instructions.py")
    parser.add_argument("--python", type=Path, default=ROOT / ".venv" / "bin" / "python")
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--keep", type=Path, help="copy the callgrind dump here (for callgrind_annotate)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bastion-audit-callgrind-") as tmp:
        folder = Path(tmp)
        out = folder / "callgrind.out"
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--collect-atstart=yes",
             str(args.python), "-c", CHILD, str(folder), str(args.records)],
            env={**os.environ, "PYTHONHASHSEED": "0"}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            if proc.stdout.readline().strip() != "queued":
                return 1
            control("--zero", proc.pid)
            proc.stdin.write("\n")
            proc.stdin.flush()
            stored = proc.stdout.readline().split()
            control("--dump", proc.pid)
            proc.stdin.write("\n")
            proc.stdin.flush()
            proc.wait(600)
        finally:
            if proc.poll() is None:
                proc.kill()
        dumped = folder / "callgrind.out.1"
        match = re.search(r"^(?:summary|totals): (\d+)", dumped.read_text(), re.M)
        if match is None or stored[:1] != ["stored"]:
            print(f"no count: {stored}", file=sys.stderr)
            return 1
        if args.keep is not None:
            shutil.copyfile(dumped, args.keep)
        print(f"{int(match.group(1)) / args.records:,.0f} instructions per record (all threads: writer and store, "
              f"{args.records} records, {stored[1]} stored)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
