"""The JSON lines output: appended whole, rotated by size, and two workers sharing one file
never lose a line across a rotation."""

from __future__ import annotations

from pathlib import Path

from bastion.audit.output import JsonLinesOutput


def _lines(folder: Path) -> list[bytes]:
    return [line for f in sorted(folder.glob("audit.log*")) if not f.name.endswith(".lock")
            for line in f.read_bytes().splitlines()]


def test_rotation_keeps_the_newest_files(tmp_path: Path) -> None:
    """Past ``rotate_bytes`` the file becomes ``audit.log.1`` (the older ones move up), and
    only ``keep_files`` rotated files are kept."""
    target = str(tmp_path / "audit.log")
    out = JsonLinesOutput(target, rotate_bytes=4096, keep_files=2)
    for i in range(10):
        out.write(b'{"n":%d,"pad":"%s"}\n' % (i, b"x" * 3000))
    out.close()
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))
    assert names == ["audit.log", "audit.log.1", "audit.log.2"]
    assert b'"n":9' in (tmp_path / "audit.log.1").read_bytes() or b'"n":9' in (tmp_path / "audit.log").read_bytes()


def test_two_writers_on_one_file_lose_nothing_across_rotations(tmp_path: Path) -> None:
    """Two outputs (two workers) on the same path, writing in turns past several rotations:
    every line is in exactly one file, whole, and the file was rotated several times."""
    target = str(tmp_path / "audit.log")
    a = JsonLinesOutput(target, rotate_bytes=8192, keep_files=100)
    b = JsonLinesOutput(target, rotate_bytes=8192, keep_files=100)
    sent = []
    for i in range(200):
        line = b'{"writer":"%s","n":%d,"pad":"%s"}\n' % (b"ab"[i % 2 : i % 2 + 1], i, b"y" * 200)
        sent.append(line.rstrip(b"\n"))
        (a if i % 2 == 0 else b).write(line)
    a.close()
    b.close()
    assert sorted(_lines(tmp_path)) == sorted(sent)
    assert len(list(tmp_path.glob("audit.log.*"))) > 3
