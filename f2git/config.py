"""The TOML configuration: typed sections whose errors name the file, the table and the key."""
from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import connectors

COURSE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
AUTH_MODES = ("none", "token", "jupyterhub")
DEFAULT_CONFIG = Path("config/f2git.toml")


class ConfigError(Exception):
    """Exit status 2: one line naming the file, the course and the key."""


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    data_dir: Path = Path("../var")  # Path fields resolve against the config file's folder
    public_url: str = ""
    refresh_ttl: float = 30.0
    refresh_wait: float = 10.0
    click_window: float = 10.0  # s: one client's git requests this soon after its click's refresh share it
    auth: str = "none"
    max_git_processes: int = 0  # git backends serving clones at once (0 = 4 per CPU core); more clicks queue
    pack_cache_size: int = 1024 * 1024 * 1024  # bytes of stored git answers (<data_dir>/packcache); 0 = none kept
    tokens_env: str = ""  # with auth = "token": names a variable holding comma-separated bearer tokens
    service_name: str = "f2git"  # with auth = "jupyterhub": the service's name on the hub
    manage_tokens_env: str = ""  # with auth = "token": tokens that may also manage (dashboard, refresh, metrics)
    header_timeout: float = 10.0  # s a connection may take to send a request's headers (also idle keep-alive)
    max_connections: int = 4000  # open client connections; lowered to what the open-files limit allows
    max_connections_per_address: int = 1000  # from one client address (a hub proxy is one); 0 = no own cap

    def validate(self, where: str) -> None:
        if self.auth not in AUTH_MODES:
            raise ConfigError(f"{where} key 'auth': must be one of {', '.join(AUTH_MODES)}, not {self.auth!r}")
        if not 0 < self.port < 65536:
            raise ConfigError(f"{where} key 'port': {self.port} is not a TCP port")
        for key in ("refresh_ttl", "refresh_wait", "click_window", "max_git_processes", "max_connections_per_address",
                    "pack_cache_size"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{where} key '{key}': must not be negative")
        for key in ("header_timeout", "max_connections"):
            if not 0 < getattr(self, key) < float("inf"):  # NaN too
                raise ConfigError(f"{where} key '{key}': must be a positive number")
        if not self.public_url:
            self.public_url = f"http://{self.host}:{self.port}"
        self.public_url = self.public_url.rstrip("/")


@dataclass
class HubConfig:
    url: str = "http://127.0.0.1:8000"
    pullhook: bool = False  # links use f2git:: URLs, fetched through pullhook's git-remote-f2git
    instructors_group: str = ""  # with auth = "jupyterhub": members (and hub admins) may manage
    apps: list[str] = field(default_factory=lambda: ["lab", "notebook"])  # what links may open (links.APPS)

    def validate(self, where: str) -> None:
        from .links import APPS

        self.url = self.url.rstrip("/")
        for app in self.apps:
            if app not in APPS:
                raise ConfigError(f"{where} key 'apps': {app!r} is not one of {', '.join(APPS)}")


@dataclass
class CourseConfig:
    """The keys every course takes; the source's own keys live in `options`."""

    source: str
    schedule: float = 600.0
    include: list[str] = field(default_factory=lambda: ["**"])
    exclude: list[str] = field(default_factory=list)
    max_file_size: int = 100 * 1024 * 1024
    allow_mass_delete: bool = False
    groups: list[str] = field(default_factory=list)
    mirror: str = ""
    mirror_token_env: str = ""
    sync_timeout: float = 3600.0  # s one sync may spend reading its source; 0 = no limit
    min_read_speed: int = 1024  # bytes/s every download must average (over 30 s); 0 = no floor
    name: str = field(default="", metadata={"internal": True})
    options: Any = field(default=None, metadata={"internal": True})

    def connector(self, env: Mapping[str, str] | None = None) -> connectors.Connector:
        return connectors.connector_class(self.source)(self.options, course=self.name, env=env)


@dataclass
class Config:
    path: Path
    server: ServerConfig
    hub: HubConfig
    courses: dict[str, CourseConfig]

    @property
    def repos_dir(self) -> Path:
        return self.server.data_dir / "repos"

    def course(self, name: str) -> CourseConfig:
        try:
            return self.courses[name]
        except KeyError:
            raise ConfigError(f"{self.path}: no course named {name!r}"
                              f" (configured: {', '.join(self.courses) or 'none'})") from None


def shown(text: str) -> str:
    """`text` as is, or quoted when it could break the one-line error (newlines, controls)."""
    return text if text.isprintable() else repr(text)


def _type_name(annotation: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            Path: "a path string"}.get(annotation, str(annotation).replace("typing.", ""))


def _coerce(value: Any, annotation: Any, where: str, key: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        # `bool | None`: None is only ever the default (TOML has no null), never a value to check.
        annotation = typing.Union[tuple(a for a in typing.get_args(annotation) if a is not type(None))]
        if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
            return _coerce(value, annotation, where, key)
        for option in typing.get_args(annotation):
            try:
                return _coerce(value, option, where, key)
            except ConfigError:
                continue
        names = " or ".join(_type_name(a) for a in typing.get_args(annotation))
        raise ConfigError(f"{where} key '{key}': expected {names}, got {value!r}")
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise ConfigError(f"{where} key '{key}': expected a list, got {value!r}")
        return [_coerce(item, item_type, where, key) for item in value]
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
        Path: isinstance(value, str) and value != "",
    }.get(annotation)
    if ok is None:
        raise TypeError(f"config field type {annotation!r} is not supported")
    if not ok:
        raise ConfigError(f"{where} key '{key}': expected {_type_name(annotation)}, got {value!r}")
    return float(value) if annotation is float else value


def build(cls: type, table: Mapping[str, Any], where: str, base_dir: Path,
          env: Mapping[str, str], extra_keys: tuple[str, ...] = ()) -> Any:
    """An instance of dataclass `cls` from a TOML table; unknown keys and wrong types are errors."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key in extra_keys:
            continue
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{where} unknown key '{shown(key)}' (known keys: {known})")
        value = _coerce(value, hints[key], where, key)
        if hints[key] is Path:
            value = (base_dir / value).resolve()
        if key.endswith("_env") and value and value not in env:
            raise ConfigError(f"{where} key '{key}': environment variable {shown(value)} is not set")
        values[key] = value
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in values:
            raise ConfigError(f"{where} missing key '{name}'")
        if name not in values and hints[name] is Path and isinstance(f.default, Path):
            values[name] = (base_dir / f.default).resolve()
    return cls(**values)


def load(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read the config from `path`, else $F2GIT_CONFIG, else config/f2git.toml."""
    env = os.environ if env is None else env
    path = Path(path or env.get("F2GIT_CONFIG") or DEFAULT_CONFIG)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    return parse(data, path, env)


def parse(data: Mapping[str, Any], path: Path, env: Mapping[str, str]) -> Config:
    base_dir = path.resolve().parent
    unknown = set(data) - {"server", "hub", "courses"}
    if unknown:
        raise ConfigError(f"{path}: unknown table [{shown(sorted(unknown)[0])}] (known: server, hub, courses)")
    tables = {}
    for name in ("server", "hub", "courses"):
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: '{name}' must be a table")
        tables[name] = table
    server = build(ServerConfig, tables["server"], f"{path}: [server]", base_dir, env)
    server.validate(f"{path}: [server]")
    hub = build(HubConfig, tables["hub"], f"{path}: [hub]", base_dir, env)
    hub.validate(f"{path}: [hub]")
    courses = {}
    for name, table in tables["courses"].items():
        courses[name] = parse_course(name, table, path, base_dir, env)
    return Config(path=path, server=server, hub=hub, courses=courses)


def parse_course(name: str, table: Any, path: Path, base_dir: Path, env: Mapping[str, str]) -> CourseConfig:
    where = f"{path}: [courses.{shown(name)}]"
    if not COURSE_NAME.match(name):
        raise ConfigError(f"{where} course name must match [a-z0-9][a-z0-9._-]*")
    if name.endswith(".git"):  # /git/<name>.git is course <name>: one URL, one course
        raise ConfigError(f"{where} course name must not end in .git (the git URL of course "
                          f"{name[:-4]!r} is /git/{name[:-4]}.git)")
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    source = table.get("source")
    if not isinstance(source, str):
        raise ConfigError(f"{where} missing key 'source' (one of {', '.join(connectors.SOURCES)})")
    try:
        connector = connectors.connector_class(source)
    except connectors.UnknownSource as error:
        raise ConfigError(f"{where} key 'source': {error}") from None
    except connectors.MissingDependency as error:
        raise ConfigError(f"{where} key 'source': {error}") from None
    common = {f.name for f in dataclasses.fields(CourseConfig)}
    source_keys = {f.name for f in dataclasses.fields(connector.Options)}
    course_table = {k: v for k, v in table.items() if k in common}
    course = build(CourseConfig, course_table, where, base_dir, env)
    unknown = [k for k in table if k not in common and k not in source_keys]
    if unknown:
        known = ", ".join(sorted((common | source_keys) - {"name", "options"}))
        raise ConfigError(f"{where} unknown key '{shown(unknown[0])}' for source {source!r} (known keys: {known})")
    options_table = {k: v for k, v in table.items() if k in source_keys}
    course.options = build(connector.Options, options_table, where, base_dir, env)
    validate = getattr(course.options, "validate", None)
    if validate:
        try:
            validate()
        except ValueError as error:  # connectors name the key: "key 'course_id': …"
            raise ConfigError(f"{where} {error}") from None
    if course.schedule < 0:
        raise ConfigError(f"{where} key 'schedule': must not be negative")
    for key in ("sync_timeout", "min_read_speed"):
        if getattr(course, key) < 0:
            raise ConfigError(f"{where} key '{key}': must not be negative")
    if course.max_file_size <= 0:
        raise ConfigError(f"{where} key 'max_file_size': must be positive")
    course.name = name
    return course
