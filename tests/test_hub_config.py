"""`f2git hub-config` prints configuration JupyterHub itself loads, granting what pullhook needs."""
from __future__ import annotations

from pathlib import Path

import pytest
import requests
from traitlets.config import Config as TraitletsConfig
from traitlets.config.loader import LazyConfigValue, PyFileConfigLoader

from f2git.cli import main
from f2git import envfile
from f2git.config import load
from f2git.hubconfig import render
from tests.hubhelpers import CHP, Hub, free_port, server_token


def load_into_hub_config(text: str, tmp_path, existing: str = "") -> TraitletsConfig:
    path = tmp_path / "jupyterhub_config.py"
    path.write_text(existing + text)
    return PyFileConfigLoader(path.name, str(tmp_path)).load_config()


def resolved(value, initial=()):
    """A value as the hub sees it: `.append`/`.extend` on unset traits stay lazy until applied."""
    start = set(initial) if isinstance(initial, set) else list(initial)
    return value.get_value(start) if isinstance(value, LazyConfigValue) else value


def courses_config(make_config):
    env = {"CANVAS_TOKEN": "x", "MIRROR_TOKEN": "y"}
    config = make_config({
        "cs101": {"source": "local", "path": "/tmp", "mirror": "https://git.example.edu/cs101.git",
                  "mirror_token_env": "MIRROR_TOKEN", "groups": ["cs101"]},
        "ml": {"source": "canvas", "url": "https://canvas.example.edu", "course_id": 7, "token_env": "CANVAS_TOKEN"},
    }, server={"auth": "jupyterhub", "service_name": "courses", "port": 9123}, env=env)
    return config, env


def test_rendered_config_loads_and_grants_service_access(make_config, tmp_path, monkeypatch):
    config, env = courses_config(make_config)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    hub = load_into_hub_config(render(config), tmp_path,
                               existing='c.JupyterHub.services = [{"name": "other", "url": "http://127.0.0.1:1"}]\n')
    services = hub.JupyterHub.services
    assert [s["name"] for s in services] == ["other", "courses"], "appends, keeps existing services"
    service = services[1]
    assert service["url"] == "http://127.0.0.1:9123"
    command = service["command"]
    assert Path(command[0]).is_absolute() and Path(command[0]).is_file(), "the hub's PATH may not have f2git"
    assert command[1:] == ["--config", str(config.path.resolve()), "serve"]
    # the secrets the config names reach the service from the hub's environment through a 0600
    # file, never through `environment` (the hub stores that in its database)
    secrets_file = config.server.data_dir.resolve() / "hub-secrets.env"
    assert service["environment"] == {"F2GIT_ENV_FILE": str(secrets_file)}
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    assert envfile.read(secrets_file) == {"MIRROR_TOKEN": "y", "CANVAS_TOKEN": "x"}
    roles = {r["name"]: r for r in resolved(hub.JupyterHub.load_roles)}
    assert "user" not in roles, "JupyterHub refuses a second `user` role"
    assert resolved(hub.JupyterHub.extra_user_scopes, set()) == {"access:services!service=courses"}
    assert roles["courses-service"]["services"] == ["courses"]
    assert "read:users:groups" in roles["courses-service"]["scopes"]
    assert set(hub.Spawner.server_token_scopes) == {"users:activity!user", "access:servers!server",
                                                    "access:services!service=courses"}


def test_the_image_trusts_f2gits_exact_base_url_path_included(make_config, tmp_path, monkeypatch):
    config, env = courses_config(make_config)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config.server.public_url = "https://hub.example.edu/services/courses"
    existing = 'c.Spawner.environment = {"F2GIT_PULLHOOK_TRUSTED": "http://f2git:8765"}\n'
    hub = load_into_hub_config(render(config), tmp_path, existing=existing)
    assert hub.Spawner.environment["F2GIT_PULLHOOK_TRUSTED"] == \
        "http://f2git:8765 https://hub.example.edu/services/courses"


def test_external_service_takes_its_token_from_the_environment(make_config, tmp_path, monkeypatch):
    config, _ = courses_config(make_config)
    text = render(config, external=True)
    monkeypatch.setenv("F2GIT_HUB_TOKEN", "hub-tok-distinctive")
    service = resolved(load_into_hub_config(text, tmp_path).JupyterHub.services)[0]
    assert "command" not in service and "environment" not in service
    assert service["api_token"] == "hub-tok-distinctive"


def test_external_without_its_token_stops_the_hub_with_one_line(make_config, tmp_path, monkeypatch):
    config, _ = courses_config(make_config)
    monkeypatch.delenv("F2GIT_HUB_TOKEN", raising=False)
    with pytest.raises(SystemExit) as stopped:
        load_into_hub_config(render(config, external=True), tmp_path)
    message = str(stopped.value)
    assert message.startswith("jupyterhub_config.py (f2git): F2GIT_HUB_TOKEN not set") and "\n" not in message


HOSTILE_SECRETS = {"CANVAS_TOKEN": "a'b\\'c\"d $HOME `id` # not a comment\nsecond line \\n end\\",
                   "MIRROR_TOKEN": "  spaced = value  "}


def test_secrets_of_any_shape_reach_f2git_exactly_through_the_file(make_config, tmp_path, monkeypatch):
    config, _ = courses_config(make_config)
    for name, value in HOSTILE_SECRETS.items():
        monkeypatch.setenv(name, value)
    service = resolved(load_into_hub_config(render(config), tmp_path).JupyterHub.services)[0]
    for name in HOSTILE_SECRETS:
        monkeypatch.delenv(name)
    assert envfile.read(service["environment"]["F2GIT_ENV_FILE"]) == HOSTILE_SECRETS
    assert not any(value in repr(service) for value in HOSTILE_SECRETS.values())


def test_a_data_dir_the_hub_cannot_write_stops_it_with_one_line(make_config, tmp_path, monkeypatch):
    config, env = courses_config(make_config)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    blocker = config.server.data_dir.resolve()
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where data_dir should be\n")
    with pytest.raises(SystemExit) as stopped:
        load_into_hub_config(render(config), tmp_path)
    message = str(stopped.value)
    assert message.startswith(f"jupyterhub_config.py (f2git): cannot write {blocker / 'hub-secrets.env'}")
    assert "(File exists)" in message and "\n" not in message


def test_cli_prints_it(tmp_path, capsys):
    path = tmp_path / "f2git.toml"
    path.write_text(f'[server]\nauth = "jupyterhub"\ndata_dir = "{tmp_path}"\n'
                    f'[courses.demo]\nsource = "local"\npath = "{tmp_path}"\n')
    assert main(["--config", str(path), "hub-config"]) == 0
    out = capsys.readouterr().out
    assert "c.JupyterHub.services.append(service)" in out and "_f2git_setup(c, " in out
    assert "pip install 'f2git[hub]" in out and "c.Spawner.server_token_scopes" in out


EXISTING = """
c.JupyterHub.load_roles = [
    {"name": "user", "scopes": ["self", "read:users:name"]},
    {"name": "helpdesk", "scopes": ["read:users"], "users": []},
]
c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server", "read:users:name!user"]
c.JupyterHub.extra_user_scopes = {"read:groups"}
"""


def test_pasted_after_existing_roles_and_scopes_it_adds_to_them(make_config, tmp_path, monkeypatch):
    config, env = courses_config(make_config)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    hub = load_into_hub_config(render(config), tmp_path, existing=EXISTING)
    roles = resolved(hub.JupyterHub.load_roles)
    assert [r["name"] for r in roles] == ["user", "helpdesk", "courses-service"]
    assert roles[0]["scopes"] == ["self", "read:users:name", "access:services!service=courses"]
    assert hub.JupyterHub.extra_user_scopes == {"read:groups"}, "ignored by the hub with a `user` role: untouched"
    assert hub.Spawner.server_token_scopes == ["users:activity!user", "access:servers!server",
                                               "read:users:name!user", "access:services!service=courses"]


def test_a_callable_server_token_scopes_is_wrapped(make_config, tmp_path, monkeypatch):
    import asyncio
    config, env = courses_config(make_config)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    existing = "c.Spawner.server_token_scopes = lambda spawner: ['users:activity!user', 'read:users:name!user']\n"
    scopes = load_into_hub_config(render(config), tmp_path, existing=existing).Spawner.server_token_scopes
    assert asyncio.run(scopes(None)) == ["users:activity!user", "read:users:name!user",
                                         "access:services!service=courses"]


def test_a_secret_missing_from_the_hubs_environment_stops_it_with_its_name(make_config, tmp_path, monkeypatch):
    config, _ = courses_config(make_config)
    monkeypatch.setenv("MIRROR_TOKEN", "y")
    monkeypatch.delenv("CANVAS_TOKEN", raising=False)
    with pytest.raises(SystemExit) as stopped:
        load_into_hub_config(render(config), tmp_path)
    assert "CANVAS_TOKEN not set in the hub's environment" in str(stopped.value)
    assert "MIRROR_TOKEN" not in str(stopped.value)


def test_external_names_every_variable_f2git_needs(make_config):
    config, _ = courses_config(make_config)
    text = render(config, external=True)
    for variable in ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL", "JUPYTERHUB_SERVICE_NAME=courses",
                     "JUPYTERHUB_SERVICE_PREFIX=/services/courses/", "JUPYTERHUB_CLIENT_ID=service-courses",
                     "JUPYTERHUB_OAUTH_CALLBACK_URL=/services/courses/oauth_callback",
                     "CANVAS_TOKEN=", "MIRROR_TOKEN=", "F2GIT_HUB_TOKEN"):
        assert variable in text


def test_hub_config_works_without_the_courses_secrets(tmp_path, monkeypatch):
    monkeypatch.delenv("F2GIT_TEST_ABSENT", raising=False)
    path = tmp_path / "f2git.toml"
    path.write_text(f'[server]\nauth = "jupyterhub"\ndata_dir = "{tmp_path}"\n'
                    '[courses.cv]\nsource = "canvas"\nurl = "https://canvas.example.edu"\ncourse_id = 3\n'
                    'token_env = "F2GIT_TEST_ABSENT"\n')
    assert main(["--config", str(path), "hub-config"]) == 0


@pytest.mark.slow
def test_a_real_hub_with_its_own_roles_and_scopes_starts_and_students_reach_f2git(tmp_path, monkeypatch):
    """Pasted after a config that defines the `user` role and server token scopes: the hub
    starts, keeps its own grants, and a student's server token opens f2git."""
    if not CHP.exists():
        raise RuntimeError(f"configurable-http-proxy is missing at {CHP}: run `make test-deps`")
    (tmp_path / "course").mkdir()
    (tmp_path / "course" / "a.txt").write_text("a")
    port = free_port()
    path = tmp_path / "f2git.toml"
    path.write_text(f'[server]\nport = {port}\nauth = "jupyterhub"\ndata_dir = "{tmp_path / "data"}"\n'
                    f'[courses.demo]\nsource = "local"\npath = "{tmp_path / "course"}"\nschedule = 0\n'
                    f'[courses.cv]\nsource = "canvas"\nurl = "https://canvas.example.edu"\ncourse_id = 3\n'
                    f'token_env = "F2GIT_TEST_CANVAS"\n')
    monkeypatch.setenv("F2GIT_TEST_CANVAS", "canvas-secret")
    existing = ('c.JupyterHub.load_roles.append({"name": "user", "scopes": ["self", "read:users:name"]})\n'
                'c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server",'
                ' "read:users:name!user"]\n')
    with Hub(tmp_path / "hub", existing + render(load(path)), groups={"students": {"users": ["ana"]}}) as hub:
        f2git_url = f"http://127.0.0.1:{port}"
        hub.wait_for_url(f"{f2git_url}/healthz", "the f2git service")
        hub.start_user("ana")
        token = server_token(hub.hub_port, "ana")
        courses = requests.get(f"{f2git_url}/api/courses", headers={"Authorization": f"token {token}"}, timeout=30)
        assert courses.status_code == 200, courses.text
        assert [c["name"] for c in courses.json()["courses"]] == ["demo", "cv"]
        me = hub.http.get(f"{hub.url}/hub/api/user", headers={"Authorization": f"token {token}"}, timeout=30).json()
        assert {"read:users:name!user=ana", "access:services!service=f2git"} <= set(me["scopes"])
        assert "multiply defined" not in hub.log()


def test_a_course_with_a_hub_group_gets_that_group_created_and_only_its_scope(make_config, tmp_path, monkeypatch):
    monkeypatch.setenv("CANVAS_TOKEN", "x")
    config = make_config({
        "ml": {"source": "canvas", "url": "https://canvas.example.edu", "course_id": 7, "token_env": "CANVAS_TOKEN",
               "members": "lms", "hub_group": "nbgrader-{course}"},
        "cs": {"source": "local", "path": "/tmp"},
    }, server={"auth": "jupyterhub", "service_name": "courses"}, env={"CANVAS_TOKEN": "x"})
    hub = load_into_hub_config(render(config), tmp_path,
                               existing='c.JupyterHub.load_groups = {"nbgrader-ml": {"users": ["tina"]}, "x": {}}\n')
    roles = {r["name"]: r for r in resolved(hub.JupyterHub.load_roles)}
    assert roles["courses-service"]["scopes"] == ["read:users:name", "read:users:groups", "groups!group=nbgrader-ml"]
    assert hub.JupyterHub.load_groups == {"nbgrader-ml": {"users": ["tina"]}, "x": {}}  # an admin's own kept
    (tmp_path / "fresh").mkdir()
    fresh = load_into_hub_config(render(config), tmp_path / "fresh")  # no groups of the admin's: a lazy update
    assert fresh.JupyterHub.load_groups.get_value({}) == {"nbgrader-ml": {"users": []}}
    # without a hub_group nothing is added
    plain = make_config({"cs": {"source": "local", "path": "/tmp"}}, server={"auth": "jupyterhub"})
    assert "groups!group" not in render(plain) and "groups=[" not in render(plain)
