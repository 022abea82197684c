"""What an attacker of the pack cache sends, and how the tests and `make bench` measure it."""
from __future__ import annotations

import gzip
import http.client
from pathlib import Path
from urllib.parse import urlsplit


def pkt(line: bytes) -> bytes:
    return b"%04x" % (len(line) + 4) + line


def flood_body(number: int, size: int = 2 * 1024 * 1024 - 4096) -> bytes:
    """A distinct protocol v2 ls-refs request of about `size` bytes, naming ref prefixes no
    repo has: git's answer is tiny, the body is not (and gzips to a few KiB)."""
    head = pkt(b"command=ls-refs\n") + pkt(b"object-format=sha1\n") + b"0001"
    line = pkt(b"ref-prefix refs/junk/%08d/" % number + b"x" * 60 + b"\n")
    return head + line * max(1, (size - len(head)) // len(line)) + b"0000"


def junk_clone_body(number: int, head: str) -> bytes:
    """A depth-1 clone of `head` as git sends it, but each with its own agent: the shape of a
    real clone, sent by nobody's git."""
    return (pkt(b"command=fetch\n") + pkt(b"agent=git/junk-%d\n" % number) + pkt(b"object-format=sha1\n")
            + b"0001" + pkt(b"thin-pack\n") + pkt(b"ofs-delta\n") + pkt(b"deepen 1\n")
            + pkt(b"want %s\n" % head.encode()) + pkt(b"done\n") + b"0000")


def junk_fetch_body(number: int, head: str) -> bytes:
    """A fetch of `head` no real clone sends (a depth nobody asks for)."""
    return (pkt(b"command=fetch\n") + pkt(b"object-format=sha1\n") + b"0001" + pkt(b"deepen %d\n" % (number + 2))
            + pkt(b"want %s\n" % head.encode()) + pkt(b"done\n") + b"0000")


def post_git(git_url: str, body: bytes, *, source: str = "127.0.0.1", gzipped: bool = False,
             timeout: float = 120) -> int:
    """POST a protocol v2 request to `<git_url>/git-upload-pack` from address `source`; the status."""
    url = urlsplit(git_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout, source_address=(source, 0))
    headers = {"Content-Type": "application/x-git-upload-pack-request", "Git-Protocol": "version=2"}
    if gzipped:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    try:
        connection.request("POST", url.path + "/git-upload-pack", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def disk_usage(folder: Path) -> int:
    """Bytes the files and folders under `folder` take on disk (blocks, as du counts)."""
    total = 0
    for path in folder.rglob("*") if folder.exists() else []:
        try:
            total += path.lstat().st_blocks * 512
        except FileNotFoundError:
            pass  # removed while we walked
    return total


def largest_templates_file(cache: Path) -> int:
    """The largest file of learnt templates under the pack cache folder `cache`."""
    files = [path for path in cache.rglob("*") if path.is_file() and "templates" in str(path.relative_to(cache))] \
        if cache.exists() else []
    return max((path.stat().st_size for path in files), default=0)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used (from /proc)."""
    import os

    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
