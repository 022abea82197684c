"""`f2git hub-config`: what a hub admin pastes into jupyterhub_config.py, and the image's pip line.

Three things make a student's nbgitpuller click reach f2git as that student:
the service entry (the hub gives f2git its API token and an OAuth client), the scope
`access:services!service=<name>` for every user (and f2git the right to read users' groups),
and that scope in the single-user server's $JUPYTERHUB_API_TOKEN (which pullhook sends).

The pasted text adds to what the hub's config already has, decided when the hub starts:
a `user` role that `load_roles` defines gets the scope appended (JupyterHub ignores
`extra_user_scopes` then), else `extra_user_scopes` carries it; scope lists and services
are appended to, never replaced. A secret missing from the hub's environment stops the hub
with a message naming it (an ordinary exception would only be logged by traitlets, and the
hub would start without f2git). Secrets reach the managed service through a 0600 file whose
path is all its `environment` holds: the hub stores that `environment` in its database.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path
from pprint import pformat

from . import __version__
from .config import Config
from .hubgroups import group_name, group_scopes

# The scopes of JupyterHub's built-in `server` role: what $JUPYTERHUB_API_TOKEN has by default.
SERVER_TOKEN_DEFAULT_SCOPES = ["users:activity!user", "access:servers!server"]
# f2git reads a user's groups (per-course `groups`) and admin flag (who may manage).
SERVICE_SCOPES = ["read:users:name", "read:users:groups"]


def secret_variables(config: Config) -> list[str]:
    """Every environment variable the config names (`*_env` keys, broken courses too)."""
    return list(config.env_names)


def access_scope(config: Config) -> str:
    return f"access:services!service={config.server.service_name}"


def f2git_command() -> list[str]:
    """An absolute command: the hub's PATH need not contain f2git's environment."""
    script = Path(sys.executable).parent / "f2git"
    if script.is_file():
        return [str(script)]
    found = shutil.which("f2git")
    return [str(Path(found).resolve())] if found else [sys.executable, "-m", "f2git.cli"]


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
        entry["command"] = [*f2git_command(), "--config", str(config.path.resolve()), "serve"]
    return entry


# Runs inside the hub's config when it starts; `c` is the hub's config object.
SETUP = r'''
def _f2git_setup(c, service, access, service_role, secrets, trusted, secrets_file=None, groups=()):
    import inspect
    import os
    missing = [name for name in secrets if name not in os.environ]
    if missing:
        raise SystemExit("jupyterhub_config.py (f2git): " + ", ".join(missing) + " not set in the hub's"
                         " environment; f2git's config names them. Set them where the hub starts"
                         " (e.g. Environment= in its systemd unit), then start the hub again.")
    if "api_token" in service and not service["api_token"]:
        raise SystemExit("jupyterhub_config.py (f2git): F2GIT_HUB_TOKEN not set in the hub's environment: the"
                         " token f2git (running on its own) uses with the hub. Make one (openssl rand -hex 32),"
                         " set it as F2GIT_HUB_TOKEN where the hub starts and as JUPYTERHUB_API_TOKEN for"
                         " f2git, then start the hub again.")
    if "command" in service and secrets:
        # the hub stores a service's `environment` in its database: pass a 0600 file's path instead
        import tempfile
        folder = os.path.dirname(secrets_file)
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            fd, scratch = tempfile.mkstemp(prefix=".hub-secrets.", dir=folder)  # mode 0600
            with os.fdopen(fd, "w") as written:
                for name in secrets:
                    value = os.environ[name].replace("\\", "\\\\").replace("'", "\\'")
                    written.write(name + "='" + value + "'\n")
            os.replace(scratch, secrets_file)
        except OSError as error:
            raise SystemExit("jupyterhub_config.py (f2git): cannot write " + secrets_file + " (" + str(error.strerror)
                             + "): the hub passes f2git its secrets there; f2git's data_dir must be writable"
                             " by the hub's user.")
        service["environment"] = {"F2GIT_ENV_FILE": secrets_file}
    c.JupyterHub.services.append(service)

    # every user may use the service: the `user` role that load_roles defines, else the default one
    roles = c.JupyterHub.load_roles
    listed = roles
    if hasattr(roles, "to_dict"):  # only appended to so far (get_value would freeze it)
        pending = roles.to_dict()
        listed = [*pending.get("prepend", []), *(r for _, r in pending.get("inserts", [])),
                  *pending.get("extend", [])]
    user_roles = [role for role in listed if role.get("name") == "user" and "scopes" in role]
    for role in user_roles:
        if access not in role["scopes"]:
            role["scopes"] = [*role["scopes"], access]
    if not user_roles:
        extra = c.JupyterHub.extra_user_scopes
        if hasattr(extra, "add"):
            extra.add(access)
        else:
            c.JupyterHub.extra_user_scopes = {*extra, access}
    if not any(role.get("name") == service_role["name"] for role in listed):
        roles.append(service_role)

    # hub groups f2git keeps equal to LMS rosters (hub_group): the hub creates them; load_groups only adds
    for group in groups:
        known = c.JupyterHub.load_groups
        present = known.to_dict().get("update", {}) if hasattr(known, "to_dict") else known
        if group not in present:
            known.update({group: {"users": []}})

    # pullhook sends a student's token only to an f2git the image trusts: this one
    environment = c.Spawner.environment
    listed = environment.get("F2GIT_PULLHOOK_TRUSTED", "") if isinstance(environment, dict) else ""
    if trusted not in listed.split():
        environment.update({"F2GIT_PULLHOOK_TRUSTED": f"{listed} {trusted}".strip()})

    # the single-user server's token (what pullhook sends) needs the access too
    scopes = c.Spawner.server_token_scopes
    if callable(scopes) and not hasattr(scopes, "get_value"):
        async def with_access(spawner, scopes=scopes):
            chosen = scopes(spawner)
            chosen = (await chosen) if inspect.isawaitable(chosen) else chosen
            return [*(chosen or DEFAULT_SERVER_SCOPES), access]
        c.Spawner.server_token_scopes = with_access
    else:
        chosen = scopes.get_value([]) if hasattr(scopes, "get_value") else list(scopes)
        if access not in chosen:
            c.Spawner.server_token_scopes = [*(chosen or DEFAULT_SERVER_SCOPES), access]'''


def render(config: Config, *, external: bool = False) -> str:
    """The jupyterhub_config.py lines (Python), the image's pip line and notes, as one text."""
    name = config.server.service_name
    entry = pformat(service_entry(config, external=external), sort_dicts=False, width=96)
    secrets = [] if external else secret_variables(config)
    groups = [group_name(course) for course in config.courses.values() if course.hub_group]
    service_role = {"name": f"{name}-service", "scopes": SERVICE_SCOPES + group_scopes(config.courses.values()),
                    "services": [name]}
    lines = [
        f"# --- f2git {__version__}: paste at the END of jupyterhub_config.py; it adds to your settings ---",
        f"# f2git as a hub service{' the hub starts' if not external else ' you run yourself'}"
        " (its config: [server] auth = \"jupyterhub\")",
    ]
    if external:
        entry = entry.replace(repr("<F2GIT_HUB_TOKEN>"), "os.environ.get('F2GIT_HUB_TOKEN', '')")
        lines += [
            "# The hub needs $F2GIT_HUB_TOKEN (e.g. `openssl rand -hex 32`). f2git's own environment needs:",
            *(f"#   {variable}={value}" for variable, value in external_environment(config).items()),
            *(f"#   {variable}=<the secret>   (named in f2git's config)" for variable in secret_variables(config)),
            *(["#   (the secrets may instead sit in a mode-0600 NAME=value file named by F2GIT_ENV_FILE)"]
              if secret_variables(config) else []),
            "import os",
        ]
    lines += [
        f"DEFAULT_SERVER_SCOPES = {SERVER_TOKEN_DEFAULT_SCOPES!r}  # JupyterHub's `server` role",
        SETUP.strip("\n"),
        "",
        f"_f2git_setup(c, {entry},",
        f"             access={access_scope(config)!r},",
        f"             service_role={service_role!r},",
        f"             secrets={secrets!r},",
        f"             trusted={trusted_base(config)!r},",
        f"             secrets_file={str(secrets_file(config))!r}"
        + (f",\n             groups={groups!r})" if groups else ")"),
        "",
        "# --- in the single-user image (Dockerfile or environment) ---",
        "# pip install 'f2git[hub] @ git+<f2git's git URL>'   (or the wheel of `make dist`, with [hub])",
        "#   brings nbgitpuller 1.3.0 and pullhook's git-remote-f2git",
        "",
        "# --- in f2git's config ---",
        "# [server] auth = \"jupyterhub\"" + ("" if config.server.auth == "jupyterhub" else
                                              f"   (now: {config.server.auth!r})"),
        "# [hub] pullhook = true" + ("" if config.hub.pullhook else "   (now: false)")
        + "; links then use f2git:: URLs",
    ]
    return "\n".join(lines) + "\n"


def trusted_base(config: Config) -> str:
    """f2git's exact base URL as students' git reaches it: the only place pullhook may send hub
    tokens to (its path too: the hub's origin also serves every user's own server)."""
    return config.server.public_url.rstrip("/")


def secrets_file(config: Config) -> Path:
    """Where the hub writes the secrets for the service it starts (mode 0600; see envfile.py)."""
    return config.server.data_dir.resolve() / "hub-secrets.env"


def external_environment(config: Config) -> dict[str, str]:
    """The variables an f2git outside the hub (e.g. its own Helm Deployment) must have."""
    name = config.server.service_name
    return {
        "JUPYTERHUB_API_TOKEN": "<the value of the hub's $F2GIT_HUB_TOKEN>",
        "JUPYTERHUB_API_URL": "http://hub:8081/hub/api   (the hub's API as f2git reaches it)",
        "JUPYTERHUB_SERVICE_NAME": name,
        "JUPYTERHUB_SERVICE_PREFIX": f"/services/{name}/",
        "JUPYTERHUB_CLIENT_ID": f"service-{name}",
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": f"/services/{name}/oauth_callback",
    }
