"""`f2git hub-config` prints configuration JupyterHub itself loads, granting what pullhook needs."""
from __future__ import annotations

from traitlets.config import Config as TraitletsConfig
from traitlets.config.loader import LazyConfigValue, PyFileConfigLoader

from f2git.cli import main
from f2git.hubconfig import render


def load_into_hub_config(text: str, tmp_path, existing: str = "") -> TraitletsConfig:
    path = tmp_path / "jupyterhub_config.py"
    path.write_text(existing + text)
    return PyFileConfigLoader(path.name, str(tmp_path)).load_config()


def resolved(value, initial=()):
    """A value as the hub sees it: `.append`/`.extend` on unset traits stay lazy until applied."""
    return value.get_value(list(initial)) if isinstance(value, LazyConfigValue) else value


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
    assert service["command"] == ["f2git", "--config", str(config.path.resolve()), "serve"]
    # the secrets the config names reach the service from the hub's environment, not the file
    assert service["environment"] == {"MIRROR_TOKEN": "y", "CANVAS_TOKEN": "x"}
    roles = {r["name"]: r for r in resolved(hub.JupyterHub.load_roles)}
    assert "access:services!service=courses" in roles["user"]["scopes"] and "self" in roles["user"]["scopes"]
    assert roles["courses-service"]["services"] == ["courses"]
    assert "read:users:groups" in roles["courses-service"]["scopes"]
    assert set(hub.Spawner.server_token_scopes) == {"users:activity!user", "access:servers!server",
                                                    "access:services!service=courses"}


def test_external_service_takes_its_token_from_the_environment(make_config, tmp_path, monkeypatch):
    config, _ = courses_config(make_config)
    text = render(config, external=True)
    assert "command" not in text
    monkeypatch.setenv("F2GIT_HUB_TOKEN", "hub-tok-distinctive")
    service = resolved(load_into_hub_config(text, tmp_path).JupyterHub.services)[0]
    assert service["api_token"] == "hub-tok-distinctive"


def test_cli_prints_it(tmp_path, capsys):
    path = tmp_path / "f2git.toml"
    path.write_text(f'[server]\nauth = "jupyterhub"\ndata_dir = "{tmp_path}"\n'
                    f'[courses.demo]\nsource = "local"\npath = "{tmp_path}"\n')
    assert main(["--config", str(path), "hub-config"]) == 0
    out = capsys.readouterr().out
    assert "c.JupyterHub.services.append(f2git_service)" in out
    assert "pip install 'f2git[hub]" in out and "c.Spawner.server_token_scopes" in out
