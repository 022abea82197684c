"""The TOML configuration: typed sections whose errors name the file, the table and the key.

The rules, in one place:

- `[server]` takes the fields of `ServerConfig`, `[hub]` those of `HubConfig`, `[lti]` those of
  `LtiConfig` and each `[[lti.platforms]]` those of `PlatformConfig`.
- `[courses.<name>]` takes two kinds of keys. The fields of `CourseConfig` belong to every
  course (`source`, `schedule`, `include`, `exclude`, `mirror`, …). Every other key belongs
  to the source that `source` names: the fields of its connector's `Options` dataclass
  (`path` for local, `url`/`course_id`/`token_env` for canvas, …).
- A key ending in `_env` holds the *name* of an environment variable that holds a secret;
  the secret itself never appears in the file. A variable that is not set is an error of
  the table that names it.
- A `Path` field is relative to the config file's folder.
- Loading runs three named steps: `build` (types; unknown keys, with "did you mean"),
  `validate` (checks values, changes nothing, returns every error) and `normalise`
  (derived values: `public_url`, trailing slashes, the default excludes).
- An error in `[server]` or `[hub]` stops f2git; an error in a course makes only that
  course broken: `Config.broken[name]` holds its errors and the other courses work.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import connectors
from connectors.base import DEFAULT_MAX_ANSWER

COURSE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
AUTH_MODES = ("none", "token", "jupyterhub")
MEMBERS_MODES = ("hub", "lms", "any")
PROVISION_MODES = ("ask", "auto", "off")
# The apps a link can open, as nbgitpuller's `urlpath` for a folder or file: name → (label, how).
# RStudio opens itself, not a file; `[hub] apps` says which of these the hub has.
APPS = {
    "lab": ("JupyterLab", "lab/tree/{target}"),
    "notebook": ("Jupyter Notebook", "tree/{target}"),
    "rstudio": ("RStudio", "rstudio/"),
}
# Sources whose own API has the course's roster (the connector's `read_roster`).
ROSTER_SOURCES = ("canvas", "moodle", "studip")
DEFAULT_CONFIG = Path("config/f2git.toml")
COURSE_STORE = "lti-courses"  # beside the config: courses LTI launches created, one TOML file each
EXAMPLE_CONFIG = Path("config/f2git.example.toml")
# What Jupyter, Python and file managers leave behind; excluded unless `exclude_debris = false`.
DEBRIS = ["**/.ipynb_checkpoints/**", "**/__pycache__/**", "**/.DS_Store", "**/Thumbs.db"]


class ConfigError(Exception):
    """Exit status 2. `errors` lists every problem, each one line naming file, table and key."""

    def __init__(self, *errors: str):
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    data_dir: Path = Path("../var")
    public_url: str = ""  # empty: http://<host>:<port>
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
    max_connections_per_identity: int = 1000  # authenticated requests of one hub user or token at once; 0 = no own cap
    max_request_bodies: int = 64 * 1024 * 1024  # bytes of unfinished request bodies held at once; 1/16 per client
    backup_dir: Path | None = None  # a git bundle per course after each snapshot (outside data_dir)

    def validate(self) -> list[str]:
        errors = []
        if self.auth not in AUTH_MODES:
            errors.append(f"key 'auth': must be one of {', '.join(AUTH_MODES)}, not {shown(self.auth)!r}")
        if not 0 < self.port < 65536:
            errors.append(f"key 'port': {self.port} is not a TCP port")
        for key in ("refresh_ttl", "refresh_wait", "click_window", "max_git_processes", "max_connections_per_address",
                    "pack_cache_size", "max_connections_per_identity"):
            if getattr(self, key) < 0:
                errors.append(f"key '{key}': must not be negative")
        for key in ("header_timeout", "max_connections", "max_request_bodies"):
            if not 0 < getattr(self, key) < float("inf"):  # NaN too
                errors.append(f"key '{key}': must be a positive number")
        if self.public_url and not is_http_url(self.public_url):  # links and redirects are built on it
            errors.append(f"key 'public_url': {shown(self.public_url)!r} is not an absolute http(s) URL"
                          " (like https://hub.example.org/services/f2git)")
        if self.backup_dir is not None and (self.backup_dir == self.data_dir or self.data_dir in self.backup_dir.parents):
            errors.append("key 'backup_dir': must be outside data_dir (it is there for when data_dir is lost)")
        return errors

    def normalise(self) -> None:
        self.public_url = (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


@dataclass
class HubConfig:
    url: str = "http://127.0.0.1:8000"
    pullhook: bool = False  # links use f2git:: URLs, fetched through pullhook's git-remote-f2git
    instructors_group: str = ""  # with auth = "jupyterhub": members (and hub admins) may manage
    apps: list[str] = field(default_factory=lambda: ["lab", "notebook"])  # what links may open (APPS)

    def validate(self) -> list[str]:
        errors = [f"key 'apps': {app!r} is not one of {', '.join(APPS)}" for app in self.apps if app not in APPS]
        if not is_http_url(self.url):  # every student link starts with it
            errors.append(f"key 'url': {shown(self.url)!r} is not an absolute http(s) URL (like https://hub.example.org)")
        return errors

    def normalise(self) -> None:
        self.url = self.url.rstrip("/")


@dataclass
class PlatformConfig:
    """One LMS registration of f2git as an LTI 1.3 tool: issuer + client_id."""

    name: str
    issuer: str
    client_id: str
    auth_login_url: str
    key_set_url: str
    auth_token_url: str = ""  # the platform's OAuth 2 token endpoint (NRPS rosters); empty: none
    deployment_ids: list[str] = field(default_factory=list)  # accepted deployment ids; empty: any
    # the source of a course an instructor's launch creates (provision): "canvas", "moodle" or "" (a local
    # upload folder), its site and the variable holding its token: the admin's, never the launch's
    provision_source: str = ""
    provision_url: str = ""
    provision_token_env: str = ""

    def validate(self) -> list[str]:
        errors = []
        if not PLATFORM_NAME.match(self.name):
            errors.append(f"key 'name': {shown(self.name)!r} must match [a-z0-9][a-z0-9._-]*")
        for key in ("issuer", "auth_login_url", "key_set_url", "auth_token_url"):
            value = getattr(self, key)
            if value and not is_http_url(value):
                errors.append(f"key '{key}': {shown(value)!r} is not an absolute http(s) URL")
        if not self.client_id:
            errors.append("key 'client_id': must not be empty")
        if self.provision_source not in ("", "canvas", "moodle"):
            errors.append(f"key 'provision_source': must be \"canvas\", \"moodle\" or \"\" (a local upload folder),"
                          f" not {shown(self.provision_source)!r}")
        elif self.provision_source and not is_http_url(self.provision_url):
            errors.append("key 'provision_url': the site of provision_source, an absolute http(s) URL")
        return errors


@dataclass
class LtiConfig:
    """`[lti]`: f2git as an LTI 1.3 tool. Present only when the file has an `[lti]` table."""

    key_file: Path = Path("lti-key.pem")  # the tool's RSA private key (PEM); created (0600) when missing
    # keys published in the JWKS but not used to sign: the next key before a rotation, the last one after
    extra_key_files: list[Path] = field(default_factory=list)
    username_claim: str = "sub"  # the id_token claim that names the hub user (as ltiauthenticator's username_key)
    provision: str = "ask"  # an instructor's launch from a context no course claims: ask | auto | off
    platforms: list[PlatformConfig] = field(default_factory=list, metadata={"internal": True})

    def validate(self) -> list[str]:
        errors = []
        if self.provision not in PROVISION_MODES:
            errors.append(f"key 'provision': must be one of {', '.join(PROVISION_MODES)}, not {shown(self.provision)!r}")
        if not self.username_claim:
            errors.append("key 'username_claim': must not be empty")
        return errors

    def platform(self, name: str) -> PlatformConfig | None:
        return next((p for p in self.platforms if p.name == name), None)

    def context_key(self, platform: PlatformConfig, context_id: str) -> str:
        """How `lti_contexts` names a context: the id alone with one platform, else "<platform>/<id>"."""
        return context_id if len(self.platforms) == 1 else f"{platform.name}/{context_id}"


def is_http_url(value: str) -> bool:
    """An absolute http(s) URL with a host: what links and redirects can be built on."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


PLATFORM_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass
class CourseConfig:
    """The keys every course takes; the source's own keys live in `options`."""

    source: str
    schedule: float = 600.0
    include: list[str] = field(default_factory=lambda: ["**"])
    exclude: list[str] = field(default_factory=list)
    exclude_debris: bool = True  # also exclude DEBRIS (.ipynb_checkpoints/, __pycache__/, …)
    max_file_size: int = 100 * 1024 * 1024
    allow_mass_delete: bool = False
    groups: list[str] = field(default_factory=list)
    mirror: str = ""
    mirror_token_env: str = ""
    members: str = "hub"  # who may fetch: hub (`groups`), lms (the LMS's roster), any (every hub user)
    hub_username: str = ""  # the LMS user field that is the hub name; empty: the source's default
    lti_contexts: list[str] = field(default_factory=list)  # LMS contexts this course serves (LTI)
    roster_ttl: float = 900.0  # s: the roster is read at most this often (and with each sync)
    hub_group: str = ""  # keep this hub group equal to the roster ("{course}" is the course name)
    sync_timeout: float = 3600.0  # s one sync may spend reading its source; 0 = no limit
    min_read_speed: int = 1024  # bytes/s every download must average (over 30 s); 0 = no floor
    max_answer_size: int = DEFAULT_MAX_ANSWER  # bytes: the largest LMS API answer read; 0 = no cap
    name: str = field(default="", metadata={"internal": True})
    options: Any = field(default=None, metadata={"internal": True})

    def validate(self) -> list[str]:
        errors = []
        if self.schedule < 0:
            errors.append("key 'schedule': must not be negative")
        if self.max_file_size <= 0:
            errors.append("key 'max_file_size': must be positive")
        for key in ("sync_timeout", "min_read_speed", "roster_ttl", "max_answer_size"):
            if getattr(self, key) < 0:
                errors.append(f"key '{key}': must not be negative")
        if self.members not in MEMBERS_MODES:
            errors.append(f"key 'members': must be one of {', '.join(MEMBERS_MODES)}, not {shown(self.members)!r}")
        elif self.members == "lms" and self.source and self.source not in ROSTER_SOURCES and not self.lti_contexts:
            errors.append(f"key 'members': \"lms\" needs a roster, and source {self.source!r} has none;"
                          " use groups (hub groups), or LTI NRPS by naming the course's LMS context in lti_contexts")
        elif self.hub_username:
            errors += self._check_hub_username()
        check = getattr(self.options, "validate", None)
        if check:
            try:
                check()
            except ValueError as error:  # connectors name the key: "key 'course_id': …"
                errors.append(str(error))
        return errors

    @property
    def roster_source(self) -> str:
        """Where the roster comes from: the source's own API, or LTI NRPS for a course `lti_contexts` claims."""
        return self.source if self.source in ROSTER_SOURCES and not self.lti_contexts else "lti"

    def _check_hub_username(self) -> list[str]:
        if self.roster_source == "lti":  # NRPS: user_id, email or any claim name
            return [] if self.hub_username.strip() else ["key 'hub_username': must not be blank"]
        connector = connectors.connector_class(self.source)
        if self.hub_username not in connector.roster_fields:
            return [f"key 'hub_username': {self.hub_username!r} is not a {connector.label} user field;"
                    f" use one of {', '.join(connector.roster_fields)}"]
        return []

    def normalise(self) -> None:
        if self.exclude_debris:
            self.exclude = self.exclude + [p for p in DEBRIS if p not in self.exclude]

    def connector(self, env: Mapping[str, str] | None = None) -> connectors.Connector:
        return connectors.connector_class(self.source)(self.options, course=self.name, env=env)


@dataclass
class Config:
    path: Path
    server: ServerConfig
    hub: HubConfig
    courses: dict[str, CourseConfig]  # the courses that work
    lti: LtiConfig | None = None  # None: no [lti] table, f2git is no LTI tool
    broken: dict[str, str] = field(default_factory=dict)  # course name -> its errors, one line
    env_names: list[str] = field(default_factory=list)  # every variable an `_env` key names

    @property
    def repos_dir(self) -> Path:
        return self.server.data_dir / "repos"

    @property
    def course_names(self) -> list[str]:
        """Every configured course, working or broken."""
        return list(self.courses) + [name for name in self.broken if name not in self.courses]

    def course(self, name: str) -> CourseConfig:
        if name in self.broken:
            raise ConfigError(self.broken[name])
        try:
            return self.courses[name]
        except KeyError:
            raise ConfigError(f"{self.path}: no course named {shown(name)!r}"
                              f" (configured: {', '.join(self.course_names) or 'none'})") from None


def shown(text: str) -> str:
    """`text` as is, or quoted when it could break the one-line error (newlines, controls)."""
    return text if text.isprintable() else repr(text)


def _type_name(annotation: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            Path: "a path string"}.get(annotation, str(annotation).replace("typing.", ""))


class _Invalid(Exception):
    pass


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        # `bool | None`: None is only ever the default (TOML has no null), never a value to check.
        annotation = typing.Union[tuple(a for a in typing.get_args(annotation) if a is not type(None))]
        if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
            return _coerce(value, annotation, key)
        for option in typing.get_args(annotation):
            try:
                return _coerce(value, option, key)
            except _Invalid:
                continue
        names = " or ".join(_type_name(a) for a in typing.get_args(annotation))
        raise _Invalid(f"key '{key}': expected {names}, got {value!r}")
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise _Invalid(f"key '{key}': expected a list, got {value!r}")
        return [_coerce(item, item_type, key) for item in value]
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
        raise _Invalid(f"key '{key}': expected {_type_name(annotation)}, got {value!r}")
    return float(value) if annotation is float else value


def _unknown(key: str, known: typing.Iterable[str], suffix: str = "") -> str:
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown key '{shown(key)}'{suffix} ({hint}known keys: {', '.join(known)})"


def _is_path(annotation: Any) -> bool:
    return annotation is Path or (typing.get_origin(annotation) in (typing.Union, types.UnionType)
                                  and Path in typing.get_args(annotation))


def build(cls: type, table: Mapping[str, Any], base_dir: Path, env: Mapping[str, str],
          errors: list[str], unknown_suffix: str = "") -> Any:
    """An instance of dataclass `cls` from a TOML table; every problem goes to `errors`.

    Checks types and names only. Unknown keys are errors (with the closest known key);
    `Path` fields resolve against `base_dir`; an `_env` key must name a set variable.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    values: dict[str, Any] = {}
    missing = False
    for key, value in table.items():
        if key not in fields:
            errors.append(_unknown(key, fields, unknown_suffix))
            continue
        try:
            value = _coerce(value, hints[key], key)
        except _Invalid as error:
            errors.append(str(error))
            continue
        if _is_path(hints[key]):
            if "\0" in value:  # no file system takes it; Path.resolve() would raise
                errors.append(f"key '{key}': a path cannot contain a NUL character")
                continue
            value = (base_dir / value).resolve()
        if key.endswith("_env") and value and value not in env:
            errors.append(f"key '{key}': environment variable {shown(value)} is not set")
        values[key] = value
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in values:
            if name not in table:  # else its wrong value is reported already
                errors.append(f"missing key '{name}'")
            missing = True
        if name not in values and _is_path(hints[name]) and isinstance(f.default, Path):
            values[name] = (base_dir / f.default).resolve()
    # the keys that passed, so `validate` can still report its own errors; None without a required key
    return None if missing else cls(**values)


def load(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None, *,
         strict: bool = True) -> Config:
    """Read the config from `path`, else $F2GIT_CONFIG, else config/f2git.toml.

    `strict`: any error raises ConfigError; else a broken course lands in `Config.broken`.
    """
    env = os.environ if env is None else env
    path = Path(path or env.get("F2GIT_CONFIG") or DEFAULT_CONFIG)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        example = (f"copy {EXAMPLE_CONFIG} there and edit it" if EXAMPLE_CONFIG.is_file()
                   else "write one (see the README's Configuration section)")
        raise ConfigError(f"{path}: config file not found; {example},"
                          " or name another with --config PATH or $F2GIT_CONFIG") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    return parse(data, path, env, strict=strict)


def parse(data: Mapping[str, Any], path: Path, env: Mapping[str, str], *, strict: bool = True) -> Config:
    base_dir = path.resolve().parent
    errors: list[str] = []
    known = ["server", "hub", "lti", "courses"]
    unknown = set(data) - set(known)
    for name in sorted(unknown):
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean [{close[0]}]? " if close else ""
        errors.append(f"{path}: unknown table [{shown(name)}] ({hint}known: {', '.join(known)})")
    tables = {}
    for name in known:
        table = data.get(name, {})
        if not isinstance(table, dict):
            errors.append(f"{path}: '{name}' must be a table")
            table = {}
        tables[name] = table
    sections = {}
    for name, cls in (("server", ServerConfig), ("hub", HubConfig)):
        found: list[str] = []
        section = build(cls, tables[name], base_dir, env, found)
        if section is not None:
            found += section.validate()
        errors += [f"{path}: [{name}] {error}" for error in found]
        sections[name] = section
    lti = parse_lti(tables["lti"], base_dir, env, errors, path) if "lti" in data else None
    if lti is not None:  # courses that LTI launches created, one file each beside the config
        tables["courses"] = {**stored_courses(base_dir), **tables["courses"]}
    courses, broken = {}, {}
    for name, table in tables["courses"].items():
        course, found = parse_course(name, table, base_dir, env)
        if course is not None:
            found += check_lti_contexts(course, lti)
        where = f"{path}: [courses.{shown(name)}]"
        if found:
            broken[name] = "; ".join(f"{where} {error}" for error in found)
        else:
            courses[name] = course
    if errors or (strict and broken):
        raise ConfigError(*errors, *broken.values())
    config = Config(path=path, server=sections["server"], hub=sections["hub"], courses=courses,
                    broken=broken, env_names=_env_names(tables), lti=lti)
    normalise(config)
    return config


def normalise(config: Config) -> None:
    """The values other modules read: derived defaults filled in, nothing checked."""
    config.server.normalise()
    config.hub.normalise()
    for course in config.courses.values():
        course.normalise()


def parse_lti(table: Mapping[str, Any], base_dir: Path, env: Mapping[str, str], errors: list[str],
              path: Path) -> LtiConfig | None:
    """`[lti]` and its `[[lti.platforms]]`; problems go to `errors`, each naming table and key."""
    table = dict(table)
    platforms = table.pop("platforms", [])
    found: list[str] = []
    lti = build(LtiConfig, table, base_dir, env, found)
    if lti is not None:
        lti.extra_key_files = [(base_dir / extra).resolve() for extra in lti.extra_key_files]
        found += lti.validate()
    errors += [f"{path}: [lti] {error}" for error in found]
    if not isinstance(platforms, list) or not all(isinstance(p, dict) for p in platforms):
        errors.append(f"{path}: [lti] 'platforms' must be an array of tables ([[lti.platforms]])")
        platforms = []
    seen: set[tuple[str, str]] = set()
    names: set[str] = set()
    for index, item in enumerate(platforms):
        found = []
        platform = build(PlatformConfig, item, base_dir, env, found)
        if platform is not None:
            found += platform.validate()
            if (platform.issuer, platform.client_id) in seen:
                found.append(f"issuer {platform.issuer!r} with client_id {platform.client_id!r} is registered twice")
            if platform.name in names:
                found.append(f"key 'name': {platform.name!r} names another platform too")
            seen.add((platform.issuer, platform.client_id))
            names.add(platform.name)
            if lti is not None and not found:
                lti.platforms.append(platform)
        label = f"[[lti.platforms]] #{index + 1}" + (f" ({shown(item['name'])})" if isinstance(item.get("name"), str) else "")
        errors += [f"{path}: {label} {error}" for error in found]
    return lti


def stored_courses(base_dir: Path) -> dict[str, Any]:
    """name -> [courses.<name>] table of every file in the course store beside the config
    (`COURSE_STORE`: the courses LTI launches created, one TOML file each, written by f2git.lti.provision)."""
    tables: dict[str, Any] = {}
    folder = Path(base_dir) / COURSE_STORE
    for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, ValueError):
            continue  # the config check names broken files of the admin's own; a store file is ours
        tables.update(data.get("courses", {}) if isinstance(data.get("courses"), dict) else {})
    return tables


def check_lti_contexts(course: CourseConfig, lti: LtiConfig | None) -> list[str]:
    """`lti_contexts` name contexts of configured platforms ("<platform>/<id>" with several)."""
    if not course.lti_contexts:
        return []
    if lti is None:
        return ["key 'lti_contexts': needs an [lti] table with the platform(s) (see the LTI section of the docs)"]
    errors = []
    for context in course.lti_contexts:
        if not context or not context.isprintable():
            errors.append(f"key 'lti_contexts': {shown(context)!r} is not a context id")
        elif len(lti.platforms) > 1:
            platform, _, context_id = context.partition("/")
            if not context_id or lti.platform(platform) is None:
                errors.append(f"key 'lti_contexts': {shown(context)!r} must be \"<platform name>/<context id>\""
                              f" with several platforms ({', '.join(p.name for p in lti.platforms)})")
    return errors


def parse_course(name: str, table: Any, base_dir: Path, env: Mapping[str, str]) -> tuple[CourseConfig | None, list[str]]:
    """The course, or None and its errors (all of them: one never hides another)."""
    errors: list[str] = []
    if not COURSE_NAME.match(name):
        errors.append("course name must match [a-z0-9][a-z0-9._-]*")
    elif name.endswith(".git"):  # /git/<name>.git is course <name>: one URL, one course
        errors.append(f"course name must not end in .git (the git URL of course {name[:-4]!r}"
                      f" is /git/{name[:-4]}.git)")
    if not isinstance(table, dict):
        return None, errors + ["must be a table"]
    common = {f.name for f in dataclasses.fields(CourseConfig) if not f.metadata.get("internal")}
    source = table.get("source")
    try:
        if not isinstance(source, str):
            raise connectors.UnknownSource(f"missing key 'source' (one of {', '.join(connectors.SOURCES)})")
        connector = connectors.connector_class(source)
    except (connectors.UnknownSource, connectors.MissingDependency) as error:
        errors.append(str(error) if not isinstance(source, str) else f"key 'source': {error}")
        # The source's own keys are unknown, the common ones can still be checked.
        course = build(CourseConfig, {k: v for k, v in table.items() if k in common} | {"source": ""},
                       base_dir, env, errors)
        return None, errors + (course.validate() if course is not None else [])
    source_keys = {f.name for f in dataclasses.fields(connector.Options)}
    course = build(CourseConfig, {k: v for k, v in table.items() if k in common}, base_dir, env, errors)
    for key in table:
        if key not in common and key not in source_keys:
            errors.append(_unknown(key, common | source_keys, f" for source {source!r}"))
    options = build(connector.Options, {k: v for k, v in table.items() if k in source_keys},
                    base_dir, env, errors)
    if course is not None:
        course.name, course.options = name, options
        errors += course.validate()  # values that failed their type are not in it: no double errors
    return (None, errors) if errors or course is None or options is None else (course, [])


def _env_names(tables: Mapping[str, Any]) -> list[str]:
    """Every variable the file names in an `_env` key, working courses or not (for hub-config)."""
    found = [tables["server"]] + [t for t in tables["courses"].values() if isinstance(t, dict)]
    names = []
    for table in found:
        for key, value in table.items():
            if isinstance(key, str) and key.endswith("_env") and isinstance(value, str) and value \
                    and value not in names:
                names.append(value)
    return names
