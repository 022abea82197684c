"""connectors/_archive.py with honest and hostile archives.

Every hostile archive ends in a SourceError or a Skipped entry with a reason, and
nothing is ever written outside the work dir.
"""
from __future__ import annotations

import io
import os
import stat
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from connectors import SourceError
from connectors._archive import Limits, archive_kind, list_archive, open_member

RANDOM = os.urandom(3 * 1024 * 1024)


def make_zip(path: Path, files: dict[str, bytes], *, date=(2024, 1, 1, 0, 0, 0), **infos) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(zipfile.ZipInfo(name, date), content, zipfile.ZIP_DEFLATED)
        for name, info in infos.items():
            archive.writestr(info, b"")
    return path


def zip_special(name: str, mode: int, target: bytes = b"") -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0))
    info.create_system = 3  # Unix: the high 16 bits of external_attr are st_mode
    info.external_attr = mode << 16
    return info


def tar_member(name: str, kind=tarfile.REGTYPE, content: bytes = b"", **fields) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(content) if kind == tarfile.REGTYPE else 0
    info.mtime = fields.pop("mtime", 1_700_000_000)
    for key, value in fields.items():
        setattr(info, key, value)
    return info, content


def make_tar(path: Path, members, mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as archive:
        for item in members:
            if isinstance(item, tuple):
                info, content = item
            else:
                info, content = tar_member(item[0] if isinstance(item, list) else item)
            archive.addfile(info, io.BytesIO(content) if info.isreg() else None)
    return path


def tar_files(files: dict[str, bytes], **fields):
    return [tar_member(name, content=content, **fields) for name, content in files.items()]


def read(entry) -> bytes:
    with open_member(entry) as stream:
        return stream.read()


def contents(path: Path, **kwargs) -> dict[str, bytes]:
    entries, _ = list_archive(path, **kwargs)
    return {entry.path: read(entry) for entry in entries}


def tree(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


FILES = {"README.md": b"# Course\n", "week1/intro.ipynb": b'{"cells": []}', "data/big.bin": RANDOM}


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz", "tar.bz2", "tar.xz"])
def test_lists_and_streams_every_format(tmp_path, kind):
    path = tmp_path / f"course.{kind}"
    if kind == "zip":
        make_zip(path, FILES)
    else:
        make_tar(path, tar_files(FILES), "w" if kind == "tar" else "w:" + kind.split(".")[1])
    entries, skipped = list_archive(path)
    assert skipped == []
    assert {e.path: e.size for e in entries} == {name: len(data) for name, data in FILES.items()}
    assert contents(path) == FILES


def test_format_is_recognised_by_content_not_name(tmp_path):
    zip_named_tgz = make_zip(tmp_path / "really-a-zip.tar.gz", {"a.txt": b"a"})
    tgz_named_bin = make_tar(tmp_path / "download.bin", tar_files({"a.txt": b"a"}))
    assert archive_kind(zip_named_tgz) == "zip" and contents(zip_named_tgz) == {"a.txt": b"a"}
    assert archive_kind(tgz_named_bin) == "tar" and contents(tgz_named_bin) == {"a.txt": b"a"}
    # A tar whose last member is a zip would also pass zipfile.is_zipfile().
    inner = make_zip(tmp_path / "inner.zip", {"secret.txt": b"inner"}).read_bytes()
    tar_with_zip = make_tar(tmp_path / "outer.tar", [tar_member("data.zip", content=inner)], "w")
    assert archive_kind(tar_with_zip) == "tar"
    assert contents(tar_with_zip) == {"data.zip": inner}
    gzipped_csv = tmp_path / "table.csv.gz"
    import gzip
    gzipped_csv.write_bytes(gzip.compress(b"a,b\n1,2\n"))
    assert archive_kind(gzipped_csv) is None


def test_version_tokens_follow_content_not_timestamps(tmp_path):
    zip_one = make_zip(tmp_path / "1.zip", {"a.txt": b"one", "b.txt": b"two"}, date=(2020, 1, 1, 0, 0, 0))
    zip_two = make_zip(tmp_path / "2.zip", {"a.txt": b"one!", "b.txt": b"two"}, date=(2024, 5, 5, 5, 5, 5))
    tar_one = make_tar(tmp_path / "1.tgz", tar_files({"a.txt": b"one", "b.txt": b"two"}, mtime=1))
    tar_two = make_tar(tmp_path / "2.tgz", tar_files({"a.txt": b"one!", "b.txt": b"two"}, mtime=2))
    for first, second in ((zip_one, zip_two), (tar_one, tar_two)):
        before = {e.path: e.version for e in list_archive(first)[0]}
        after = {e.path: e.version for e in list_archive(second)[0]}
        assert before["b.txt"] == after["b.txt"]
        assert before["a.txt"] != after["a.txt"]
        assert {e.path: e.version for e in list_archive(first)[0]} == before  # stable


@pytest.mark.parametrize("kind", ["zip", "tgz"])
def test_single_top_folder_is_unwrapped(tmp_path, kind):
    files = {"course-2024/README.md": b"r", "course-2024/week1/a.ipynb": b"a"}
    path = tmp_path / f"c.{kind}"
    make_zip(path, files) if kind == "zip" else make_tar(path, tar_files(files))
    assert contents(path) == {"README.md": b"r", "week1/a.ipynb": b"a"}


def test_unwrap_only_when_one_folder_holds_everything(tmp_path):
    two_tops = make_zip(tmp_path / "two.zip", {"a/x.txt": b"x", "b/y.txt": b"y"})
    assert set(contents(two_tops)) == {"a/x.txt", "b/y.txt"}
    file_beside = make_zip(tmp_path / "beside.zip", {"a/x.txt": b"x", "README": b"r"})
    assert set(contents(file_beside)) == {"a/x.txt", "README"}
    one_file = make_zip(tmp_path / "one.zip", {"notes.txt": b"n"})
    assert set(contents(one_file)) == {"notes.txt"}
    # macOS adds __MACOSX/ resource forks to zips; they are not course files.
    mac = make_zip(tmp_path / "mac.zip", {"course/a.txt": b"a", "__MACOSX/course/._a.txt": b"junk"})
    assert contents(mac) == {"a.txt": b"a"}
    # `tar -C course .` stores "./a.txt"
    dotted = make_tar(tmp_path / "dot.tgz", tar_files({"./a.txt": b"a", "./sub/b.txt": b"b"}))
    assert contents(dotted) == {"a.txt": b"a", "sub/b.txt": b"b"}
    # `tar -C parent ./course` with a link inside: still one top folder, the link reported inside it
    linked = make_tar(tmp_path / "linked.tgz", tar_files({"./course/a.txt": b"a"})
                      + [tar_member("./course/link", tarfile.SYMTYPE, linkname="a.txt")])
    assert contents(linked) == {"a.txt": b"a"}
    assert [s.path for s in list_archive(linked)[1]] == ["link"]


def test_duplicate_names_keep_the_last_copy_and_say_so(tmp_path):
    path = make_tar(tmp_path / "dup.tgz", tar_files({"a.txt": b"old"}) + tar_files({"a.txt": b"new"}))
    entries, skipped = list_archive(path)
    assert [read(e) for e in entries] == [b"new"]
    assert [s.path for s in skipped] == ["a.txt"] and "more than once" in skipped[0].reason


# Hostile archives -------------------------------------------------------------------

HOSTILE_TAR = {
    "traversal": (tar_member("../x", content=b"evil"), "'..'"),
    "deep traversal": (tar_member("course/../../x", content=b"evil"), "'..'"),
    "absolute": (tar_member("/etc/x", content=b"evil"), "absolute"),
    "symlink": (tar_member("link", tarfile.SYMTYPE, linkname="/etc/passwd"), "symbolic link"),
    "hard link": (tar_member("hard", tarfile.LNKTYPE, linkname="/etc/passwd"), "hard link"),
    "char device": (tar_member("dev", tarfile.CHRTYPE, devmajor=1, devminor=3), "device"),
    "block device": (tar_member("disk", tarfile.BLKTYPE, devmajor=8, devminor=0), "device"),
    "fifo": (tar_member("pipe", tarfile.FIFOTYPE), "FIFO"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_TAR))
def test_hostile_tar_members_are_skipped_with_a_reason(tmp_path, monkeypatch, case):
    member, reason = HOSTILE_TAR[case]
    work = tmp_path / "scratch"
    work.mkdir()
    path = make_tar(work / "evil.tgz", [member, tar_member("ok.txt", content=b"fine")])
    monkeypatch.chdir(work)
    before = tree(tmp_path)
    entries, skipped = list_archive(path, work_dir=work)
    assert [e.path for e in entries] == ["ok.txt"] and read(entries[0]) == b"fine"
    assert len(skipped) == 1 and reason in skipped[0].reason
    new = tree(tmp_path) - before
    assert all(name.startswith("scratch/") and name.endswith(".tar") for name in new), new
    assert not Path("/etc/x").exists() and not (tmp_path / "x").exists()


HOSTILE_ZIP = {
    "traversal": ("../x", None, "'..'"),
    "absolute": ("/etc/x", None, "absolute"),
    "symlink": ("link", stat.S_IFLNK | 0o777, "symbolic link"),
    "device": ("dev", stat.S_IFCHR | 0o666, "device"),
    "fifo": ("pipe", stat.S_IFIFO | 0o644, "FIFO"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_ZIP))
def test_hostile_zip_members_are_skipped_with_a_reason(tmp_path, monkeypatch, case):
    name, mode, reason = HOSTILE_ZIP[case]
    path = tmp_path / "evil.zip"
    if mode is None:
        make_zip(path, {name: b"evil", "ok.txt": b"fine"})
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(zip_special(name, mode), b"/etc/passwd")
            archive.writestr("ok.txt", b"fine")
    monkeypatch.chdir(tmp_path)
    before = tree(tmp_path)
    entries, skipped = list_archive(path)
    assert [e.path for e in entries] == ["ok.txt"] and read(entries[0]) == b"fine"
    assert len(skipped) == 1 and reason in skipped[0].reason
    assert tree(tmp_path) == before  # a zip is read in place
    assert not Path("/etc/x").exists() and not (tmp_path.parent / "x").exists()


def test_encrypted_zip_member_is_skipped(tmp_path):
    path = make_zip(tmp_path / "enc.zip", {"locked.txt": b"ciphertext"})
    data = bytearray(path.read_bytes())
    # Set the "encrypted" bit of the flags in the local header (offset 6) and central directory (8).
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        data[data.index(signature) + offset] |= 0x1
    path.write_bytes(bytes(data))
    entries, skipped = list_archive(path)
    assert entries == [] and skipped[0].path == "locked.txt" and "encrypted" in skipped[0].reason


def test_zip_bomb_by_ratio(tmp_path):
    bomb = make_zip(tmp_path / "bomb.zip", {"zeros.bin": bytes(8 * 1024 * 1024)})
    with pytest.raises(SourceError, match=r"bomb.zip.*zeros.bin.*expands \d+:1"):
        list_archive(bomb)
    # Below the ratio floor, compressible files are fine.
    small = make_zip(tmp_path / "small.zip", {"zeros.bin": bytes(512 * 1024)})
    assert contents(small) == {"zeros.bin": bytes(512 * 1024)}


def test_gzip_bomb_stops_while_decompressing(tmp_path):
    work = tmp_path / "scratch"
    work.mkdir()
    bomb = make_tar(work / "bomb.tgz", tar_files({"zeros.bin": bytes(16 * 1024 * 1024)}))
    with pytest.raises(SourceError, match=r"bomb.tgz expands more than 200:1"):
        list_archive(bomb)
    assert tree(work) == {"bomb.tgz"}  # the partial copy is removed


@pytest.mark.parametrize("kind", ["zip", "tgz"])
def test_entry_count_cap(tmp_path, kind):
    files = {f"f{i}.txt": b"" for i in range(6)}
    path = tmp_path / f"many.{kind}"
    make_zip(path, files) if kind == "zip" else make_tar(path, tar_files(files))
    assert len(list_archive(path, limits=Limits(max_entries=6))[0]) == 6
    with pytest.raises(SourceError, match=f"many.{kind} has more than 5 entries"):
        list_archive(path, limits=Limits(max_entries=5))


def test_default_entry_count_cap_is_ten_thousand(tmp_path):
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for i in range(10_001):
            archive.writestr(f"f{i}", b"")
    with pytest.raises(SourceError, match="more than 10000 entries"):
        list_archive(path)


@pytest.mark.parametrize("kind", ["zip", "tar", "tgz"])
def test_total_size_cap(tmp_path, kind):
    files = {"a.bin": RANDOM[:600], "b.bin": RANDOM[:600]}
    path = tmp_path / f"big.{kind}"
    if kind == "zip":
        make_zip(path, files)
    else:
        make_tar(path, tar_files(files), "w" if kind == "tar" else "w:gz")
    assert len(list_archive(path, limits=Limits(max_total_size=1200))[0]) == 2
    with pytest.raises(SourceError, match="unpacks to more than 1000 bytes"):
        list_archive(path, limits=Limits(max_total_size=1000))


def test_zip_header_understating_the_size_is_not_trusted(tmp_path):
    """A member whose headers claim 10 bytes but whose data inflates to megabytes."""
    path = make_zip(tmp_path / "liar.zip", {"small.txt": RANDOM[:1024 * 1024]})
    data = bytearray(path.read_bytes())
    real = struct.pack("<I", 1024 * 1024)
    assert data.count(real) == 2  # local header and central directory
    path.write_bytes(bytes(data).replace(real, struct.pack("<I", 10)))
    entries, _ = list_archive(path)
    assert entries[0].size == 10
    with pytest.raises(SourceError, match="liar.zip: 'small.txt'"):
        with open_member(entries[0]) as stream:
            assert len(stream.read()) <= 11


def test_tar_header_overstating_the_size_is_a_source_error(tmp_path):
    path = make_tar(tmp_path / "liar.tar", tar_files({"a.txt": b"x" * 100}), "w")
    data = bytearray(path.read_bytes())
    header = tarfile.TarInfo.frombuf(bytes(data[:512]), "utf-8", "strict")
    header.size = 10 * 1024 * 1024
    data[:512] = header.tobuf(tarfile.GNU_FORMAT)
    path.write_bytes(bytes(data))
    with pytest.raises(SourceError, match="liar.tar"):
        list_archive(path)


def test_not_an_archive(tmp_path):
    path = tmp_path / "course.zip"
    path.write_bytes(b"<html>Sign in</html>")
    with pytest.raises(SourceError, match="course.zip is not a zip or tar archive"):
        list_archive(path)


@pytest.mark.parametrize("kind", ["zip", "tgz", "tar"])
def test_truncated_archive_names_the_archive(tmp_path, kind):
    path = tmp_path / f"cut.{kind}"
    if kind == "zip":
        make_zip(path, FILES)
    else:
        make_tar(path, tar_files(FILES), "w" if kind == "tar" else "w:gz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(SourceError, match=f"cut.{kind}"):
        contents(path)


def test_corrupt_zip_member_is_a_source_error_when_read(tmp_path):
    path = make_zip(tmp_path / "rot.zip", {"data.bin": RANDOM[:200_000]})
    data = bytearray(path.read_bytes())
    for offset in range(1000, 1100):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    entries, _ = list_archive(path)
    with pytest.raises(SourceError, match="rot.zip: 'data.bin'"):
        read(entries[0])


def test_open_member_after_the_archive_is_gone(tmp_path):
    path = make_zip(tmp_path / "gone.zip", {"a.txt": b"a"})
    entries, _ = list_archive(path)
    path.unlink()
    with pytest.raises(SourceError, match="gone.zip: 'a.txt' cannot be read"):
        read(entries[0])


# --- capped before parsed: a huge directory never reaches zipfile or tarfile ------------------

def many_member_zip(path: Path, members: int, declared: int | None = None) -> Path:
    """A zip whose central directory lists `members` empty files (local headers omitted: the
    caps must fire before any member is read). `declared` lies about the count, as an attacker may."""
    records = b"".join(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0x21, 0, 0, 0, 8, 0, 0, 0, 0,
                                   0, 0) + b"f%07d" % i for i in range(members))
    count = members if declared is None else declared
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, min(count, 0xFFFF), min(count, 0xFFFF),
                      len(records), 0, 0)
    path.write_bytes(records + end)
    return path


def refusal_and_peak_memory(path: Path, label: str) -> tuple[str, int]:
    """list_archive's SourceError text, and the most memory Python held while it ran."""
    import tracemalloc
    tracemalloc.start()
    try:
        with pytest.raises(SourceError) as raised:
            list_archive(path, label=label)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return str(raised.value), peak


@pytest.mark.parametrize("declared", [None, 3], ids=["honest count", "lying count"])
def test_a_zip_with_a_huge_directory_is_refused_before_zipfile_reads_it(tmp_path, declared):
    path = many_member_zip(tmp_path / "many.zip", 200_000, declared)
    failure, peak = refusal_and_peak_memory(path, "many.zip")
    assert "many.zip has more than 10000 entries" in failure
    # zipfile would have built 200k ZipInfo objects (~100 MB) before any count could be checked.
    assert peak < 8 * 1024**2, peak


def test_a_zip64_directory_is_counted_too(tmp_path):
    path = tmp_path / "z64.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(70_000):  # more than 0xFFFF: the count lives in the zip64 end record only
            archive.writestr(zipfile.ZipInfo(f"f{i}"), b"")
    with pytest.raises(SourceError, match=r"more than 10000 entries \(its directory lists 70000\)"):
        list_archive(path, label="z64.zip")
    entries, _ = list_archive(path, label="z64.zip", limits=Limits(max_entries=100_000))
    assert len(entries) == 70_000


def test_a_tar_with_a_huge_pax_header_is_refused_before_tarfile_reads_it(tmp_path):
    info = tarfile.TarInfo("notes.txt")
    info.pax_headers = {"comment": "x" * 8 * 1024**2}  # tarfile reads a pax header whole
    path = make_tar(tmp_path / "pax.tar", [(info, b"")], "w")
    failure, peak = refusal_and_peak_memory(path, "pax.tar")
    assert "pax.tar has a" in failure and "extended header" in failure
    assert peak < 4 * 1024**2, peak


def test_a_tar_with_too_many_members_is_refused_before_tarfile_builds_them(tmp_path):
    path = make_tar(tmp_path / "many.tar", [tar_member(f"f{i}") for i in range(10_050)], "w")
    with pytest.raises(SourceError, match="more than 10000 entries"):
        list_archive(path, label="many.tar")

