"""ILIAS's WebDAV for tests: Debian's sabre/dav (what ILIAS's WebDAV is built on) under
`php -S`, serving a course tree whose nodes follow ILIAS's rules (tests/servers/ilias_router.php):
ETag = sha1(size + name + creation date), last-modified = the object's last update.

    with IliasDav(tmp_path, username="stu", password="pässwörd€") as ilias:
        ilias.publish({"Skript.pdf": b"..."})   # an upload or a new version moves last-modified
        ilias.recreate("Skript.pdf")            # a new creation date, same content and last update
        ilias.url                               # http://127.0.0.1:PORT/webdav.php/myclient/ref_4711/

The account is checked by sabre's HTTP Basic backend on the raw bytes: UTF-8, like ILIAS.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Mapping

from tests.realserver import ServerProcess, free_port, program_dir


class IliasDav:
    def __init__(self, root: str | os.PathLike, *, prefix: str = "/webdav.php/myclient/ref_4711",
                 username: str = "test.student", password: str = "s3cret"):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.prefix = "/" + prefix.strip("/")
        self.username, self.password = username, password
        self.files: dict[str, dict] = {}  # path -> {"blob", "size", "created", "updated"}
        self.folders: set[str] = set()
        self.clock = datetime(2025, 10, 6, 9, 0, 0, tzinfo=timezone.utc)
        self.blobs = 0
        self.port = free_port()
        self.process = ServerProcess(
            ["php", "-S", f"127.0.0.1:{self.port}", str(program_dir("ilias_router.php"))],
            self.port, env={"ILIAS_DAV_MANIFEST": str(self.root / "manifest.json")}, cwd=self.root)
        self._write()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}/"

    def tick(self) -> str:
        """ILIAS keeps dates to the second; every change here happens a second later."""
        self.clock += timedelta(seconds=1)
        return self.clock.strftime("%Y-%m-%d %H:%M:%S")

    def publish(self, files: Mapping[str, bytes], folders: tuple[str, ...] = ()) -> None:
        """Make the course hold exactly `files`: new ones are uploaded, changed ones get a new
        version (new last update, same creation date), unchanged ones stay as they are."""
        kept = {}
        for path, content in files.items():
            node = self.files.get(path)
            if node is not None and (self.root / node["blob"]).read_bytes() == content:
                kept[path] = node
                continue
            stamp = self.tick()
            kept[path] = {"blob": self._blob(content), "size": len(content),
                          "created": node["created"] if node else stamp, "updated": stamp}
        self.files = kept
        self.folders = set(folders)
        self._write()

    def recreate(self, path: str) -> None:
        """A new creation date with the same content and last update (e.g. a restored object)."""
        self.files[path] = {**self.files[path], "created": self.tick()}
        self._write()

    def set_account(self, username: str, password: str) -> None:
        self.username, self.password = username, password
        self._write()

    def _blob(self, content: bytes) -> str:
        self.blobs += 1
        name = f"blob-{self.blobs}"
        (self.root / name).write_bytes(content)
        return name

    def _write(self) -> None:
        manifest = {"base": self.prefix + "/", "user": self.username, "password": self.password,
                    "files": self.files, "folders": sorted(self.folders)}
        temporary = self.root / "manifest.json.tmp"
        temporary.write_text(json.dumps(manifest), encoding="utf-8")
        os.replace(temporary, self.root / "manifest.json")

    def __enter__(self) -> "IliasDav":
        self.process.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.process.__exit__(*exc_info)
