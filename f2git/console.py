"""What every command prints with: exit statuses and lines safe for a terminal (names and error
texts come from sources and may hold escape sequences)."""
from __future__ import annotations

import sys

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def safe(text: object) -> str:
    """Text for a terminal: control characters (escape sequences, newlines, bells) shown escaped."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in str(text))


def say(*lines: object, file=None) -> None:
    """Each argument as one line, control characters escaped (a newline inside one too)."""
    print(*(safe(line) for line in lines), sep="\n", file=file or sys.stdout, flush=True)
