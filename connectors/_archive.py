"""Archives from a source, read in place and safely: .zip, .tar and compressed tars
(.tar.gz/.tgz, .tar.bz2, .tar.xz), recognised by their content, not their name.

    kind = archive_kind(path)                       # "zip", "tar" or None
    entries, skipped = list_archive(path, label="course.zip")
    with open_member(entry) as stream:              # an entry from that listing
        stream.read()

- `list_archive` returns `connectors.base.Entry` objects (path as stored, minus a single
  top folder that holds everything; size; version: zip CRC32+size, tar the SHA-256 of the
  content, read while listing) and `Skipped` ones with a reason (links, devices, fifos,
  absolute paths, `..`, encrypted members). Members are never written to disk: a
  compressed tar is decompressed once into `work_dir` (default: the archive's folder, which
  must be the connector's scratch dir) so members can be read by offset later.
- `Limits` caps the entry count, the total unpacked size and the per-member compression
  ratio (zip bombs). Sizes in headers are never trusted: bytes are counted while reading.
- Every failure (corrupt, truncated, over a cap) is a `SourceError` naming the archive.
"""
from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import re
import stat
import struct
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable

from .base import Entry, Skipped, SourceError

# Names that say "archive", for connectors deciding whether to unpack a download.
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
CHUNK = 1024 * 1024
_DECOMPRESSORS: dict[bytes, Callable[[Any], BinaryIO]] = {
    b"\x1f\x8b": lambda file: gzip.GzipFile(fileobj=file, mode="rb"),
    b"BZh": bz2.BZ2File,
    b"\xfd7zXZ\x00": lzma.LZMAFile,
}
_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
# Tar headers and padding are not content but do take space once decompressed.
_TAR_OVERHEAD_PER_ENTRY = 4096


@dataclass(frozen=True)
class Limits:
    max_entries: int = 10_000
    max_total_size: int = 2 * 1024**3  # bytes, all members unpacked
    max_ratio: float = 200.0  # unpacked : packed, for members (or a whole compressed tar) ...
    ratio_floor: int = 1024**2  # ... larger than this many bytes unpacked


@dataclass(frozen=True)
class Member:
    """Entry.ref of an archive member: where to read it from."""

    archive: str  # the file to read: the archive, or the decompressed copy of a compressed tar
    kind: str  # "zip" | "tar"
    info: Any  # zipfile.ZipInfo | tarfile.TarInfo
    size: int
    label: str  # the archive's name, for messages


def _compression(head: bytes) -> Callable[[Any], BinaryIO] | None:
    for magic, opener in _DECOMPRESSORS.items():
        if head.startswith(magic):
            return opener
    return None


def _is_tar_header(block: bytes) -> bool:
    if len(block) < tarfile.BLOCKSIZE:
        return False
    try:
        tarfile.TarInfo.frombuf(block[: tarfile.BLOCKSIZE], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def archive_kind(path: str | os.PathLike) -> str | None:
    """"zip" or "tar" (also compressed) by content, or None for any other file."""
    with open(path, "rb") as file:
        head = file.read(tarfile.BLOCKSIZE)
        opener = _compression(head)
        if opener:
            file.seek(0)
            try:
                with opener(file) as inner:
                    return "tar" if _is_tar_header(inner.read(tarfile.BLOCKSIZE)) else None
            except (OSError, EOFError, lzma.LZMAError):
                return None
    # Tar first: a tar whose last member is a zip would also pass is_zipfile().
    if _is_tar_header(head):
        return "tar"
    return "zip" if zipfile.is_zipfile(path) else None


class _CheckedStream(io.RawIOBase):
    """A member's bytes: exactly `size` of them, any failure a SourceError naming the member."""

    def __init__(self, inner: BinaryIO, size: int, what: str, closers: tuple[Any, ...] = ()):
        self.inner = inner
        self.size = size
        self.what = what
        self.closers = closers
        self.received = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            # Never ask for more than one byte past the declared size: enough to notice a liar.
            chunk = self.inner.read(min(len(buffer), self.size - self.received + 1))
        except SourceError:
            raise
        except Exception as error:  # BadZipFile (bad CRC), zlib.error, EOFError, tarfile.ReadError…
            raise SourceError(f"{self.what} cannot be read: {_reason(error)}") from None
        self.received += len(chunk)
        if self.received > self.size:
            raise SourceError(f"{self.what} holds more than the {self.size} bytes its header declares")
        if not chunk and self.received != self.size:
            raise SourceError(f"{self.what} ends after {self.received} of {self.size} bytes")
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        if not self.closed:
            for closer in (self.inner, *self.closers):
                closer.close()
        super().close()


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror  # without the scratch path
    return str(error) or type(error).__name__


def _folded(name: str) -> str:
    """`name` without "./" and doubled slashes; absolute names stay as they are, to be reported."""
    return name if name.startswith("/") else "/".join(p for p in name.split("/") if p not in ("", "."))


def _member_path(name: str) -> tuple[str, str]:
    """(folded path, reason to skip it or "")."""
    path = _folded(name)
    if path.startswith("/"):
        return path, "absolute path"
    if ".." in path.split("/"):
        return path, "'..' in path: it would leave the archive"
    return path, ""


def _readable_name(name: str) -> str:
    return name.encode("utf-8", "replace").decode("utf-8")


class _Collector:
    """Gathers members in archive order, then unwraps a single top folder."""

    def __init__(self, label: str, limits: Limits):
        self.label = label
        self.limits = limits
        self.count = 0
        self.total = 0
        self.files: dict[str, tuple[int, str, Member]] = {}
        self.skipped: list[Skipped] = []

    def counted(self) -> None:
        self.count += 1
        if self.count > self.limits.max_entries:
            raise SourceError(f"{self.label} has more than {self.limits.max_entries} entries")

    def sized(self, name: str, size: int) -> None:
        self.total += size
        if self.total > self.limits.max_total_size:
            raise SourceError(f"{self.label} unpacks to more than {self.limits.max_total_size} bytes"
                              f" (at {_readable_name(name)!r})")

    def skip(self, name: str, reason: str) -> None:
        self.skipped.append(Skipped(_readable_name(_folded(name)), reason))

    def add(self, path: str, size: int, version: str, member: Member) -> None:
        if path in self.files:
            self.skip(path, "appears more than once in the archive; the last copy is used")
        self.files[path] = (size, version, member)

    def result(self) -> tuple[list[Entry], list[Skipped]]:
        prefix = self._single_top_folder()
        entries = [Entry(path[len(prefix):], size, version, ref=member)
                   for path, (size, version, member) in self.files.items()]
        skipped = [Skipped(s.path[len(prefix):] if s.path.startswith(prefix) else s.path, s.reason)
                   for s in self.skipped]
        return entries, skipped

    def _single_top_folder(self) -> str:
        paths = [*self.files, *(s.path for s in self.skipped)]
        tops = {path.split("/", 1)[0] for path in paths}
        if len(tops) != 1 or any("/" not in path for path in paths):
            return ""
        return tops.pop() + "/"


def list_archive(path: str | os.PathLike, *, label: str = "", limits: Limits = Limits(),
                 work_dir: str | os.PathLike | None = None) -> tuple[list[Entry], list[Skipped]]:
    """The archive's files as entries and what was left out, or SourceError."""
    path = os.path.abspath(path)
    label = label or os.path.basename(path)
    try:
        kind = archive_kind(path)
    except OSError as error:
        raise SourceError(f"{label} cannot be read: {error.strerror}") from None
    if kind is None:
        raise SourceError(f"{label} is not a zip or tar archive, or it is damaged or truncated")
    collector = _Collector(label, limits)
    try:
        if kind == "zip":
            _list_zip(path, collector)
        else:
            plain = _decompressed(path, label, limits, work_dir or os.path.dirname(path))
            _list_tar(plain, collector)
    except SourceError:
        raise
    except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError, lzma.LZMAError, ValueError) as error:
        raise SourceError(f"{label} is corrupt or truncated: {_reason(error)}") from None
    return collector.result()


_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_CENTRAL_HEADER = struct.Struct("<4s6H3L5H2L")  # one member's record in the central directory
_MAX_CENTRAL_RECORD = _CENTRAL_HEADER.size + 3 * 0xFFFF


def _zip_directory_within_limits(path: str, collector: _Collector) -> None:
    """Count the members and their sizes from the zip's own central directory, record by
    record, before zipfile loads it: zipfile builds an object per member first (a million
    members cost ~500 MB), and trusts neither the declared count nor anything else."""
    limits, label = collector.limits, collector.label
    size = os.path.getsize(path)
    with open(path, "rb") as file:
        tail_start = max(0, size - _EOCD.size - 0xFFFF)
        file.seek(tail_start)
        tail = file.read()
        found = tail.rfind(b"PK\x05\x06")
        if found < 0 or found + _EOCD.size > len(tail):
            return  # zipfile names the damage
        _, _, _, _, declared, directory_size, _, _ = _EOCD.unpack_from(tail, found)
        directory_end = tail_start + found
        if declared == 0xFFFF or directory_size == 0xFFFFFFFF:
            file.seek(max(0, directory_end - _ZIP64_LOCATOR.size - _ZIP64_EOCD.size))
            record = file.read(_ZIP64_EOCD.size)
            if len(record) == _ZIP64_EOCD.size and record[:4] == b"PK\x06\x06":
                declared, directory_size = _ZIP64_EOCD.unpack(record)[7:9]
                directory_end -= _ZIP64_LOCATOR.size + _ZIP64_EOCD.size
        if declared > limits.max_entries:
            raise SourceError(f"{label} has more than {limits.max_entries} entries (its directory lists {declared})")
        if directory_size > (limits.max_entries + 1) * _MAX_CENTRAL_RECORD:
            raise SourceError(f"{label} has a central directory of {directory_size} bytes,"
                              f" more than {limits.max_entries} entries can fill")
        file.seek(max(0, directory_end - directory_size))
        reader = io.BufferedReader(file, CHUNK)  # the declared count may lie: walk the records
        count = total = 0
        while (header := reader.read(_CENTRAL_HEADER.size)) and header[:4] == b"PK\x01\x02":
            if len(header) < _CENTRAL_HEADER.size:
                return
            fields = _CENTRAL_HEADER.unpack(header)
            unpacked, name_len, extra_len, comment_len = fields[9], fields[10], fields[11], fields[12]
            reader.read(name_len)
            extra = reader.read(extra_len)
            reader.read(comment_len)
            if unpacked == 0xFFFFFFFF:
                unpacked = _zip64_size(extra, unpacked)
            count += 1
            total += unpacked
            if count > limits.max_entries:
                raise SourceError(f"{label} has more than {limits.max_entries} entries")
            if total > limits.max_total_size:
                raise SourceError(f"{label} unpacks to more than {limits.max_total_size} bytes")


def _zip64_size(extra: bytes, fallback: int) -> int:
    """The uncompressed size from a zip64 extra field (id 1), which comes first in it."""
    at = 0
    while at + 4 <= len(extra):
        kind, length = struct.unpack_from("<2H", extra, at)
        if kind == 1 and length >= 8:
            return struct.unpack_from("<Q", extra, at + 4)[0]
        at += 4 + length
    return fallback


def _list_zip(path: str, collector: _Collector) -> None:
    limits = collector.limits
    _zip_directory_within_limits(path, collector)
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            collector.counted()
            name = info.filename
            if info.is_dir() or name.split("/", 1)[0] == "__MACOSX":  # macOS resource-fork litter
                continue
            # Unix zips keep st_mode in the high bits; many writers set permissions but no file type.
            mode = info.external_attr >> 16 if info.create_system == 3 else 0
            if stat.S_ISDIR(mode):
                continue
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
                collector.skip(name, _special_reason(mode))
                continue
            member_path, unsafe = _member_path(name)
            if unsafe:
                collector.skip(name, unsafe)
                continue
            if info.flag_bits & 0x1:
                collector.skip(member_path, "encrypted")
                continue
            if info.compress_type not in _ZIP_METHODS:
                collector.skip(member_path, f"compressed with an unsupported method ({info.compress_type})")
                continue
            size = info.file_size
            if size > limits.ratio_floor and size > limits.max_ratio * max(info.compress_size, 1):
                ratio = size / max(info.compress_size, 1)
                raise SourceError(f"{collector.label}: {_readable_name(name)!r} expands {ratio:.0f}:1"
                                  f" (more than {limits.max_ratio:.0f}:1), refusing a possible zip bomb")
            collector.sized(name, size)
            member = Member(path, "zip", info, size, collector.label)
            collector.add(member_path, size, f"crc32:{info.CRC:08x}:{size}", member)


def _special_reason(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symbolic link (links are not followed)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device file"
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    return "not a regular file"


_TAR_TYPE_MODES = {tarfile.SYMTYPE: stat.S_IFLNK, tarfile.CHRTYPE: stat.S_IFCHR,
                   tarfile.BLKTYPE: stat.S_IFBLK, tarfile.FIFOTYPE: stat.S_IFIFO}


def _tar_skip_reason(member: tarfile.TarInfo) -> str:
    if member.islnk():
        return "hard link (links are not followed)"
    return _special_reason(_TAR_TYPE_MODES.get(member.type, 0))


def _decompressed(path: str, label: str, limits: Limits, work_dir: str | os.PathLike) -> str:
    """A plain tar to read members from by offset: the archive itself, or a capped decompressed copy."""
    with open(path, "rb") as file:
        opener = _compression(file.read(8))
    if opener is None:
        return path
    packed = os.path.getsize(path)
    cap = limits.max_total_size + limits.max_entries * _TAR_OVERHEAD_PER_ENTRY
    fd, plain = tempfile.mkstemp(suffix=".tar", dir=work_dir)
    try:
        with open(path, "rb") as source, opener(source) as inner, os.fdopen(fd, "wb") as target:
            written = 0
            while chunk := inner.read(CHUNK):
                written += len(chunk)
                if written > cap:
                    raise SourceError(f"{label} unpacks to more than {limits.max_total_size} bytes")
                if written > limits.ratio_floor and written > limits.max_ratio * packed:
                    raise SourceError(f"{label} expands more than {limits.max_ratio:.0f}:1,"
                                      " refusing a possible compression bomb")
                target.write(chunk)
    except BaseException:
        os.unlink(plain)
        raise
    return plain


_TAR_META_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK,
                   tarfile.SOLARIS_XHDTYPE)
MAX_TAR_META = 1024**2  # bytes of a pax or GNU long-name header: tarfile reads one whole into memory
_PAX_SIZE = re.compile(rb"(?:^|\n)\d+ size=(\d+)\n")


def _tar_headers_within_limits(plain: str, collector: _Collector) -> None:
    """Walk the tar's headers, skipping the data, before tarfile parses any: count the members
    and refuse a pax or long-name header larger than MAX_TAR_META, which tarfile would read whole."""
    limits, label = collector.limits, collector.label
    count = 0
    size_override = None
    with open(plain, "rb") as file:
        while len(header := file.read(tarfile.BLOCKSIZE)) == tarfile.BLOCKSIZE and header.strip(b"\0"):
            try:
                size = tarfile.nti(header[124:136])
            except (tarfile.InvalidHeaderError, ValueError):
                return  # tarfile names the damage
            kind = header[156:157]
            padded = -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
            if kind in _TAR_META_TYPES:
                if size > MAX_TAR_META:
                    raise SourceError(f"{label} has a {size}-byte extended header (more than {MAX_TAR_META})")
                meta = file.read(padded)
                found = _PAX_SIZE.search(meta[:size]) if kind == tarfile.XHDTYPE else None
                size_override = int(found[1]) if found else None
                continue
            if size_override is not None:
                size, size_override = size_override, None
                padded = -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
            count += 1
            if count > limits.max_entries:
                raise SourceError(f"{label} has more than {limits.max_entries} entries")
            file.seek(padded, os.SEEK_CUR)


def _list_tar(plain: str, collector: _Collector) -> None:
    _tar_headers_within_limits(plain, collector)
    with tarfile.open(plain, mode="r:", encoding="utf-8", errors="surrogateescape") as archive:
        for member in archive:
            collector.counted()
            name = member.name
            if member.isdir() or name.split("/", 1)[0] == "__MACOSX":
                continue
            # Membership as tarfile's "data" filter decides it: regular files only.
            if not member.isreg():
                collector.skip(name, _tar_skip_reason(member))
                continue
            member_path, unsafe = _member_path(name)
            if unsafe:
                collector.skip(name, unsafe)
                continue
            try:
                member_path.encode("utf-8")
            except UnicodeEncodeError:
                collector.skip(name, "name is not valid UTF-8")
                continue
            collector.sized(name, member.size)
            ref = Member(plain, "tar", member, member.size, collector.label)
            digest = hashlib.sha256()
            with _CheckedStream(archive.extractfile(member), member.size,
                                f"{collector.label}: {_readable_name(name)!r}") as stream:
                while chunk := stream.read(CHUNK):
                    digest.update(chunk)
            collector.add(member_path, member.size, f"sha256:{digest.hexdigest()}", ref)


def is_member(entry: Entry) -> bool:
    """Whether the entry came from list_archive()."""
    return isinstance(entry.ref, Member)


def open_member(entry: Entry) -> BinaryIO:
    """A stream of one member's bytes (a context manager), checked against its declared size."""
    member: Member = entry.ref
    what = f"{member.label}: {entry.path!r}"
    try:
        if member.kind == "zip":
            archive = zipfile.ZipFile(member.archive)
            try:
                inner = archive.open(member.info)
            except BaseException:
                archive.close()
                raise
        else:
            archive = tarfile.open(member.archive, mode="r:")
            inner = archive.extractfile(member.info)
    except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError, lzma.LZMAError, ValueError,
            NotImplementedError) as error:
        raise SourceError(f"{what} cannot be read: {_reason(error)}") from None
    return io.BufferedReader(_CheckedStream(inner, member.size, what, (archive,)), CHUNK)
