"""`python -m benchmarks [core|load|syncscale|courses|lecture|attack|rosters|lti|answers|retract]`: print the figures (all when none named)."""
from __future__ import annotations

import importlib
import sys

PARTS = ("core", "load", "syncscale", "courses", "lecture", "attack", "rosters", "lti", "answers", "retract")


def main() -> None:
    chosen = sys.argv[1:] or list(PARTS)
    for name in chosen:
        if name not in PARTS:
            sys.exit(f"unknown benchmark {name!r} (choose from {', '.join(PARTS)})")
        importlib.import_module(f"benchmarks.{name}").main([])


if __name__ == "__main__":
    main()
