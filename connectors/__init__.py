"""Sources of course files. `source = "name"` in the config picks one from SOURCES.

Modules are imported only when a course uses them, so a missing optional dependency
only matters for the courses that need it.
"""
from __future__ import annotations

import importlib

from .base import AuthError, Connector, EntryGone, Entry, Listing, Skipped, SourceError

SOURCES: dict[str, str] = {
    "local": "connectors.local:LocalConnector",
    "http": "connectors.http:HttpConnector",
    "canvas": "connectors.canvas:CanvasConnector",
    "studip": "connectors.studip:StudipConnector",
    "ilias": "connectors.ilias:IliasConnector",
    "zenodo": "connectors.zenodo:ZenodoConnector",
    "rclone": "connectors.rclone:RcloneConnector",
    "moodle": "connectors.moodle:MoodleConnector",
}

# The pip extra that brings a source's optional dependencies.
EXTRAS: dict[str, str] = {"rclone": "rclone"}


class UnknownSource(LookupError):
    pass


class MissingDependency(ImportError):
    pass


def connector_class(source: str) -> type[Connector]:
    try:
        dotted = SOURCES[source]
    except KeyError:
        known = ", ".join(sorted(SOURCES))
        raise UnknownSource(f"unknown source {source!r} (known: {known})") from None
    module_name, _, class_name = dotted.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        if error.name and error.name.split(".")[0] in ("connectors",):
            raise
        extra = EXTRAS.get(source)
        hint = f"pip install 'f2git[{extra}]'" if extra else f"pip install {error.name}"
        raise MissingDependency(f"source {source!r} needs the Python package {error.name!r}: {hint}") from error
    return getattr(module, class_name)


__all__ = [
    "AuthError", "Connector", "Entry", "EntryGone", "Listing", "Skipped", "SourceError",
    "SOURCES", "connector_class", "UnknownSource", "MissingDependency",
]
