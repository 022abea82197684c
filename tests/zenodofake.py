"""Zenodo's record answers for `responses` fakes, built by Zenodo's and InvenioRDM's own
serializers, ported in tests/fixtures/zenodo/serializers.py: zenodo.org's default
`application/json` record (zenodo-rdm's ZenodoSchema, whose file links carry the key
unencoded) and InvenioRDM's record (FilesSchema: entries without links, left out without the
read_files permission)."""
from __future__ import annotations

from tests.fixtures.zenodo.serializers import rdm_record, zenodojson_record

API = "https://zenodo.org/api"


def record_json(record_id: int, files: dict[str, bytes], *, rdm: bool = False, access_right: str = "open",
                embargo_date: str | None = None, concept: int = 10650000) -> dict:
    """A record as GET /api/records/<id> answers it: zenodo.org's default serializer, or with
    rdm=True InvenioRDM's; files are listed only to who may read them."""
    readable = access_right == "open"
    if rdm:
        return rdm_record(API, record_id, files, access=access_right, embargo_until=embargo_date,
                          may_read_files=readable, concept=concept)
    return zenodojson_record(API, record_id, files, access_right=access_right, embargo_date=embargo_date,
                             may_read_files=readable, concept=concept)
