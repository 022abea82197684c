"""JSON from a source, read so that no answer can crash the reader or the code after it.

Python's parser raises RecursionError on JSON nested a few thousand levels deep, and code
that walks a parsed tree recursively (Moodle's availability conditions) breaks at far less.
No LMS nests its answers more than a few levels: deeper than MAX_DEPTH is malformed.
"""
from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 100


class TooDeep(ValueError):
    pass


def loads(text: str | bytes) -> Any:
    """Parsed JSON; ValueError (TooDeep for nesting deeper than MAX_DEPTH) if it is not JSON f2git reads."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise TooDeep(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    check_depth(data)
    return data


def check_depth(data: Any) -> None:
    """TooDeep if `data` (parsed JSON) nests lists and objects deeper than MAX_DEPTH; iterative, so
    a tree of any depth is measured without recursion."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > MAX_DEPTH:
            raise TooDeep(f"JSON nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
