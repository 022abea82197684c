"""Archives built in memory for tests of the sources that unpack them."""
from __future__ import annotations

import io
import zipfile


def zip_bytes(files: dict[str, bytes], top: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            # A fixed date: the same files make the same bytes, as a build server's zip would.
            archive.writestr(zipfile.ZipInfo(top + name, (2024, 1, 1, 0, 0, 0)), content)
    return buffer.getvalue()
