"""Real servers for the hub-side tests, bound to 127.0.0.1 on free ports, stopped by the test.

- `GitHost`: a second git server (`git http-backend` with receive-pack on, behind HTTP Basic
  with a token as password, the way GitLab/Gitea take tokens) — the mirror target.
- `Hub`: a real JupyterHub (dummy authenticator, simple local spawner, configurable-http-proxy
  from npm) with f2git registered as a service; students' servers are real jupyter-server
  processes with nbgitpuller and pullhook.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import requests
import tornado.web

from tests.gitcgi import GitCgiHandler, GitCgiServer
from tests.serveprocess import free_port  # noqa: F401 (re-exported for the hub tests)

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
CHP = ROOT / ".cache" / "chp" / "node_modules" / ".bin" / "configurable-http-proxy"


def git(*args: str, cwd: Path | str | None = None, env: dict | None = None) -> str:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    full_env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_AUTHOR_NAME="t",
                    GIT_AUTHOR_EMAIL="t@example.org", GIT_COMMITTER_NAME="t",
                    GIT_COMMITTER_EMAIL="t@example.org", **(env or {}))
    return subprocess.run(["git", *args], cwd=cwd, env=full_env, check=True, capture_output=True,
                          text=True).stdout


class _MirrorHandler(GitCgiHandler):
    """Fetches and pushes; HTTP Basic with the host's token as password, as GitLab/Gitea take tokens."""

    server: "_MirrorServer"

    def allowed(self) -> bool:
        host = self.server.owner
        header = self.headers.get("Authorization", "")
        host.authorizations.append(header)
        if "git-upload-pack" in self.path:
            host.upload_requests.append(self.path)
            if host.public_read:
                return True
        if not host.token:
            return True
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            password = base64.b64decode(value).decode().partition(":")[2]
        except ValueError:
            return False
        return secrets.compare_digest(password, host.token)

    def extra_env(self) -> dict[str, str]:
        return {"REMOTE_USER": "mirror", "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.receivepack",
                "GIT_CONFIG_VALUE_0": "true"}


class _MirrorServer(GitCgiServer):
    owner: "GitHost"


class GitHost:
    """`with GitHost(tmp, token) as host:` bare repos under `host.root`, URLs `host.url(name)`."""

    def __init__(self, root: Path, token: str = "", public_read: bool = False):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.public_read = public_read  # fetches without a token, pushes with it (a public project)
        self.authorizations: list[str] = []  # every Authorization header received
        self.upload_requests: list[str] = []  # every fetch request (upload-pack)

    def create(self, name: str) -> Path:
        path = self.root / f"{name}.git"
        git("init", "-q", "--bare", "-b", "main", str(path))
        return path

    def url(self, name: str) -> str:
        return self.http.url(name)

    def __enter__(self) -> "GitHost":
        self.http = _MirrorServer(self.root, _MirrorHandler)
        self.http.owner = self
        self.port = self.http.port
        self.http.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.http.__exit__(*exc)


HUB_CONFIG = '''
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
# where students reach the hub: single-user servers get it as $JUPYTERHUB_PUBLIC_HUB_URL, and
# pullhook trusts f2git behind it (<hub>/services/f2git) with students' tokens
c.JupyterHub.public_url = "http://127.0.0.1:{port}/"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.JupyterHub.db_url = "sqlite:///{work}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{work}/cookie_secret"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {admins!r}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{work}/home/{{username}}"
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.args = ["--allow-root"]
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
# students' git must not read this machine's git config
c.Spawner.environment = {{"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0"}}
c.JupyterHub.load_groups = {groups!r}
# the test drives the hub with an admin service token
c.JupyterHub.services = [{{"name": "tester", "api_token": {admin_token!r}}}]
c.JupyterHub.load_roles = [{{"name": "tester", "services": ["tester"],
    "scopes": ["admin:users", "admin:servers", "tokens", "admin:groups", "access:servers", "read:users"]}}]
'''


def service_toml(port: int, data_dir: Path, server: dict | None = None, **hub: object) -> str:
    """f2git's [server] as the hub's service on `port` (more keys in `server`), and its [hub] table
    (`hub` keys, pullhook on)."""
    tables = {"server": {"host": "127.0.0.1", "port": port, "data_dir": str(data_dir), "refresh_ttl": 0,
                         "auth": "jupyterhub", **(server or {})}, "hub": {"pullhook": True, **hub}}
    return "".join(toml_table(name, table) for name, table in tables.items())


def toml_table(name: str, table: dict) -> str:
    """One TOML table of strings, numbers and booleans."""
    return f"[{name}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in table.items())


class Hub:
    """A real JupyterHub with f2git as a managed service, configured by `f2git hub-config`.

        with Hub(work, f2git_config_text, groups={"g": {"users": ["ana"]}}) as hub:
            token = hub.start_user("ana")              # the user's server runs; a user API token
            events = hub.click("ana", token, repo)     # nbgitpuller's git-pull/api, SSE events
    """

    def __init__(self, work: Path, hub_config_extra: str, groups: dict, admins: set[str] = frozenset()):
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.port, self.hub_port, self.proxy_api_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_token = secrets.token_hex(16)
        self.log_path = self.work / "hub.log"
        text = HUB_CONFIG.format(port=self.port, hub_port=self.hub_port, proxy_api_port=self.proxy_api_port,
                                 chp=str(CHP), work=self.work, admins=set(admins), groups=groups,
                                 singleuser=str(VENV_BIN / "jupyterhub-singleuser"),
                                 admin_token=self.admin_token)
        (self.work / "jupyterhub_config.py").write_text(text + hub_config_extra)
        self.process: subprocess.Popen | None = None
        self.user_pids: set[int] = set()
        self.http = requests.Session()

    def api(self, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
        headers = {"Authorization": f"token {token or self.admin_token}"}
        return self.http.request(method, f"{self.url}/hub/api{path}", headers=headers, timeout=60, **kwargs)

    def __enter__(self) -> "Hub":
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTERHUB_", "GIT_"))}
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen([str(VENV_BIN / "jupyterhub"), "-f", str(self.work / "jupyterhub_config.py")],
                                        cwd=self.work, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        try:
            self._wait(lambda: self.api("GET", "/").status_code == 200, "the hub API")
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait(self, ready, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the hub exited ({self.process.returncode}):\n{self.log()[-3000:]}")
            try:
                if ready():
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)  # polling a process we do not control: no event to await
        raise RuntimeError(f"{what} was not ready within {timeout:g}s:\n{self.log()[-3000:]}")

    def wait_for_url(self, url: str, what: str) -> None:
        self._wait(lambda: self.http.get(url, timeout=5).status_code < 500, what)

    def start_user(self, name: str) -> str:
        """Start `name`'s server and return an API token of theirs."""
        response = self.api("POST", f"/users/{name}/server")
        assert response.status_code in (201, 202, 400), response.text  # 400: already running
        self._wait(lambda: self.api("GET", f"/users/{name}").json()["servers"].get("", {}).get("ready"),
                   f"{name}'s server")
        self.user_pids |= set(server_pids(self.hub_port))
        response = self.api("POST", f"/users/{name}/tokens", json={"note": "test"})
        assert response.status_code == 201, response.text
        return response.json()["token"]

    def click(self, user: str, token: str, repo: str, targetpath: str | None = None) -> list[dict]:
        """nbgitpuller's own endpoint, as the status page calls it: the events until the end."""
        params = {"repo": repo, "branch": "main"}
        if targetpath:
            params["targetpath"] = targetpath
        events = []
        with self.http.get(f"{self.url}/user/{user}/git-pull/api", params=params, stream=True, timeout=120,
                           headers={"Authorization": f"token {token}"}) as response:
            assert response.status_code == 200, response.text
            for line in response.iter_lines(decode_unicode=True):
                if line and line.startswith("data: "):
                    events.append(json.loads(line[len("data: "):]))
                    if events[-1].get("phase") in ("finished", "error"):
                        break
        return events

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # the hub stops users' servers, services, proxy
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)  # anything of the hub's still left
            except ProcessLookupError:
                pass
        for pid in self.user_pids | set(server_pids(self.hub_port)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.http.close()
        if getattr(self, "_log", None):
            self._log.close()


def shown(events: list[dict]) -> str:
    """What the student's nbgitpuller page shows of a click: the streamed git output and the error."""
    return "".join(str(event.get("output", "")) + str(event.get("message", "")) for event in events)


def process_environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def server_pids(hub_port: int) -> list[int]:
    """Single-user servers of the hub on `hub_port` (they run in sessions of their own)."""
    marker = f"127.0.0.1:{hub_port}/"
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            env = process_environ(int(entry.name))
            if env.get("JUPYTERHUB_USER") and marker in env.get("JUPYTERHUB_API_URL", ""):
                pids.append(int(entry.name))
    return pids


def server_token(hub_port: int, user: str) -> str:
    """The $JUPYTERHUB_API_TOKEN of `user`'s single-user server (what pullhook sends)."""
    for pid in server_pids(hub_port):
        env = process_environ(pid)
        if env.get("JUPYTERHUB_USER") == user:
            return env["JUPYTERHUB_API_TOKEN"]
    raise LookupError(f"no running server of {user}")


def browser_login(hub: Hub, user: str) -> requests.Session:
    browser = requests.Session()
    browser.get(f"{hub.url}/hub/login", timeout=30)
    answer = browser.post(f"{hub.url}/hub/login", timeout=30,
                          data={"username": user, "password": "any", "_xsrf": browser.cookies.get("_xsrf", "")})
    assert answer.status_code == 200, answer.text[:500]
    return browser


@contextmanager
def hub_oauth_in_process() -> Iterator[None]:
    """For an f2git with `auth = "jupyterhub"` inside the test process: jupyterhub's HubOAuth
    patches tornado's RequestHandler for the whole process (its own XSRF token, which needs a
    cookie secret) the first time it reads a cookie. Undone on leaving, so later tests' servers
    get tornado's own."""
    cls = tornado.web.RequestHandler
    saved = {name: cls.__dict__[name] for name in ("xsrf_token", "check_xsrf_cookie")}
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(cls, name, value)
        if "_xsrf_token_id" in cls.__dict__:
            delattr(cls, "_xsrf_token_id")
