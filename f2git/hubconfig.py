"""`f2git hub-config`: what a hub admin pastes into jupyterhub_config.py, and the image's pip line.

Three things make a student's nbgitpuller click reach f2git as that student:
the service entry (the hub gives f2git its API token and an OAuth client), a role granting
every user `access:services!service=<name>` (and f2git the right to read users' groups),
and `c.Spawner.server_token_scopes` so the single-user server's $JUPYTERHUB_API_TOKEN —
which pullhook sends — carries that access.
"""
from __future__ import annotations

import dataclasses
from pprint import pformat

from . import __version__
from .config import Config

# The scopes of JupyterHub's built-in `server` role: what $JUPYTERHUB_API_TOKEN has by default.
SERVER_TOKEN_DEFAULT_SCOPES = ["users:activity!user", "access:servers!server"]
# f2git reads a user's groups (per-course `groups`) and admin flag (who may manage).
SERVICE_SCOPES = ["read:users:name", "read:users:groups"]


def secret_variables(config: Config) -> list[str]:
    """Every environment variable the config names (`*_env` keys): the service must get them."""
    names = []
    tables = [config.server] + [t for c in config.courses.values() for t in (c, c.options)]
    for table in tables:
        if table is None or not dataclasses.is_dataclass(table):
            continue
        for f in dataclasses.fields(table):
            value = getattr(table, f.name)
            if f.name.endswith("_env") and isinstance(value, str) and value and value not in names:
                names.append(value)
    return names


def access_scope(config: Config) -> str:
    return f"access:services!service={config.server.service_name}"


def service_entry(config: Config, *, external: bool = False) -> dict:
    server = config.server
    wildcard = server.host in ("0.0.0.0", "::", "")
    # where the hub's proxy reaches f2git: a managed service runs next to the hub; an
    # external one (e.g. its own pod) by a name the admin knows, "f2git" when it listens everywhere
    host = ("127.0.0.1" if not external else "f2git") if wildcard else server.host
    entry: dict = {
        "name": server.service_name,
        "url": f"http://{host}:{server.port}",
        "oauth_no_confirm": True,  # instructors reach the dashboard without a consent page
        "display": False,
    }
    if external:
        entry["api_token"] = "<F2GIT_HUB_TOKEN>"
    else:
        entry["command"] = ["f2git", "--config", str(config.path.resolve()), "serve"]
    return entry


def render(config: Config, *, external: bool = False) -> str:
    """The jupyterhub_config.py lines (Python), the image's pip line and notes, as one text."""
    name = config.server.service_name
    entry = pformat(service_entry(config, external=external), sort_dicts=False, width=96)
    secrets = secret_variables(config)
    lines = [
        f"# --- f2git {__version__}: paste into jupyterhub_config.py (merges with what you have) ---",
        "import os",
        "",
        f"# f2git as a hub service{' the hub starts' if not external else ' you run yourself'}"
        " (its config: [server] auth = \"jupyterhub\")",
    ]
    if external:
        lines += [
            "# Give f2git the same token in its environment as JUPYTERHUB_API_TOKEN, and set",
            "# JUPYTERHUB_API_URL (e.g. http://hub:8081/hub/api) and JUPYTERHUB_SERVICE_NAME too.",
            f"f2git_service = {entry.replace(repr('<F2GIT_HUB_TOKEN>'), 'os.environ[' + repr('F2GIT_HUB_TOKEN') + ']')}",
        ]
    else:
        lines.append(f"f2git_service = {entry}")
        if secrets:
            lines += ["# the hub passes services no secrets of its own: hand over the ones the config names",
                      "f2git_service[\"environment\"] = {name: os.environ[name] for name in "
                      f"{secrets!r}}}"]
    lines += [
        "c.JupyterHub.services.append(f2git_service)",
        "",
        "# every user may use the service; f2git may read users' groups and admin flag",
        "c.JupyterHub.load_roles.extend([",
        f"    {{\"name\": \"user\", \"scopes\": [\"self\", \"{access_scope(config)}\"]}},",
        f"    {{\"name\": \"{name}-service\", \"scopes\": {SERVICE_SCOPES!r}, \"services\": [\"{name}\"]}},",
        "])",
        "",
        "# the single-user server's token (what pullhook sends) needs the access too",
        f"c.Spawner.server_token_scopes = {SERVER_TOKEN_DEFAULT_SCOPES + [access_scope(config)]!r}",
        "",
        "# --- in the single-user image (Dockerfile or environment) ---",
        f"# pip install 'f2git[hub]=={__version__}'    # nbgitpuller 1.3.0 + pullhook's git-remote-f2git",
        "",
        "# --- in f2git's config ---",
        "# [server] auth = \"jupyterhub\"" + ("" if config.server.auth == "jupyterhub" else
                                              f"   (now: {config.server.auth!r})"),
        "# [hub] pullhook = true" + ("" if config.hub.pullhook else "   (now: false)")
        + "; links then use f2git:: URLs",
    ]
    return "\n".join(lines) + "\n"
