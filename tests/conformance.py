"""One suite every connector passes: mix ConnectorConformance into a test class and
implement `publish(files)`, which makes the source (a `responses` fake of the API, or a
real local server) release exactly `files` and returns a connector reading it.

`publish` may be called several times in one test to model an instructor's changes;
each call replaces what the source releases.
"""
from __future__ import annotations

import io
from typing import Mapping

import pytest

from connectors import Connector, Entry, Listing, SourceError
from f2git.paths import safe_path

BINARY = bytes(range(256)) * 512  # 128 KiB, every byte value


def read_all(connector: Connector, entry: Entry) -> bytes:
    with connector.open(entry) as stream:
        out = io.BytesIO()
        while chunk := stream.read(65536):
            out.write(chunk)
        return out.getvalue()


def by_path(listing: Listing) -> dict[str, Entry]:
    return {safe_path(entry.path): entry for entry in listing.entries}


class ConnectorConformance:
    """The promises of the connector protocol (connectors/base.py)."""

    def publish(self, files: Mapping[str, bytes]) -> Connector:
        raise NotImplementedError

    def test_lists_exactly_the_released_files_at_the_root(self):
        files = {"README.md": b"# Course\n", "week1/intro.ipynb": b'{"cells": []}', "week1/data/x.csv": b"a,b\n1,2\n"}
        with self.publish(files) as connector:
            listing = connector.list({})
            assert set(by_path(listing)) == set(files)
            assert not listing.unchanged

    def test_open_streams_the_exact_bytes(self):
        files = {"data.bin": BINARY, "empty.txt": b"", "notes.txt": "Grüße\n".encode()}
        with self.publish(files) as connector:
            entries = by_path(connector.list({}))
            for path, content in files.items():
                assert read_all(connector, entries[path]) == content, path

    def test_sizes_match_when_given(self):
        files = {"a.txt": b"12345", "b/c.txt": b"x" * 1000}
        with self.publish(files) as connector:
            for path, entry in by_path(connector.list({})).items():
                assert entry.size in (None, len(files[path]))

    def test_version_is_stable_when_nothing_changed(self):
        files = {"a.txt": b"one", "b.txt": b"two"}
        with self.publish(files) as connector:
            first = connector.list({})
            second = connector.list(first.state)
            if second.unchanged:
                return  # the source proved nothing changed: equally good
            assert {p: e.version for p, e in by_path(first).items()} == \
                   {p: e.version for p, e in by_path(second).items()}

    def test_version_changes_when_content_changes(self):
        with self.publish({"a.txt": b"one", "b.txt": b"two"}) as connector:
            before = by_path(connector.list({}))
        with self.publish({"a.txt": b"one, edited", "b.txt": b"two"}) as connector:
            after = by_path(connector.list({}))
            assert after["a.txt"].version != before["a.txt"].version
            assert after["b.txt"].version == before["b.txt"].version or self.versions_are_per_release
            assert read_all(connector, after["a.txt"]) == b"one, edited"

    # Sources that version a whole release (one archive) may change every token at once.
    versions_are_per_release = False

    def contents_after(self, before: Mapping[str, bytes], after: Mapping[str, bytes]) -> dict[str, bytes]:
        """Publish `before` and list it, then publish `after`: what the new listing reads."""
        with self.publish(before) as connector:
            connector.list({})
        with self.publish(after) as connector:
            return {path: read_all(connector, entry) for path, entry in by_path(connector.list({})).items()}

    def test_a_renamed_file_is_listed_under_its_new_name_only(self):
        after = {"new name.txt": b"same bytes", "b.txt": b"b"}
        assert self.contents_after({"old name.txt": b"same bytes", "b.txt": b"b"}, after) == after

    def test_a_file_replaced_by_a_folder_of_the_same_name(self):
        after = {"week1/notes.txt": b"now a folder", "b.txt": b"b"}
        assert self.contents_after({"week1": b"a file", "b.txt": b"b"}, after) == after

    def test_unicode_and_space_names(self):
        files = {"Übung 1/Lösung ä.ipynb": b"{}", "notes (draft).md": b"x"}
        with self.publish(files) as connector:
            assert set(by_path(connector.list({}))) == set(files)

    def test_listing_is_json_state_serialisable(self):
        import json
        with self.publish({"a.txt": b"a"}) as connector:
            json.dumps(connector.list({}).state)

    def test_errors_are_source_errors(self):
        """Opening an entry the source no longer has fails with SourceError, not a raw exception."""
        with self.publish({"a.txt": b"a"}) as connector:
            entry = by_path(connector.list({}))["a.txt"]
        with self.publish({}) as connector:
            with pytest.raises(SourceError):
                read_all(connector, entry)
