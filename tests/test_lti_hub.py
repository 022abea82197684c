"""End to end: a student launches a real JupyterHub (jupyterhub-ltiauthenticator, the same
platform) and then f2git's content from the LMS; real nbgitpuller pulls it into their server."""
from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from f2git.config import parse
from tests.hubhelpers import Hub
from tests.ltiplatform import LEARNER, Browser, LtiPlatform, Message
from tests.repohelpers import SourceFolder
from tests.serverhelpers import RunningServer

pytestmark = pytest.mark.slow

HUB_LTI = '''
c.JupyterHub.authenticator_class = "ltiauthenticator.lti13.auth.LTI13Authenticator"
c.LTI13Authenticator.issuer = {issuer!r}
c.LTI13Authenticator.authorize_url = {authorize!r}
c.LTI13Authenticator.jwks_endpoint = {jwks!r}
c.LTI13Authenticator.client_id = ["hub-tool"]
c.LTI13Authenticator.username_key = "sub"
c.Authenticator.allow_all = True
'''


def test_a_student_launches_the_hub_and_f2git_content_end_to_end(tmp_path):
    source = SourceFolder(tmp_path / "source")
    source.write("week1/intro.ipynb", '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n')
    with LtiPlatform() as platform:
        hub = Hub(tmp_path / "hub", HUB_LTI.format(issuer=platform.issuer, authorize=f"{platform.url}/authorize",
                                                   jwks=f"{platform.url}/jwks"), groups={})

        def make(port):
            return parse({"server": {"data_dir": str(tmp_path / "data"), "port": port, "click_window": 0,
                                     "public_url": f"http://127.0.0.1:{port}"},
                          "hub": {"url": hub.url},
                          "lti": {"key_file": str(tmp_path / "lti-key.pem"), "platforms": [platform.section()]},
                          "courses": {"cs101": {"source": "local", "path": str(source.path), "schedule": 0,
                                                "lti_contexts": ["ctx-cs101"]}}}, tmp_path / "f2git.toml", {})

        with hub, RunningServer(make) as tool:
            platform.connect(tool.url)
            platform.connect_hub(hub.url)
            student = Browser()
            # 1. the LMS's "JupyterHub" link: ltiauthenticator logs the student in as their LMS sub
            hub_hint = platform.add(Message("stud-1", LEARNER, client_id="hub-tool"))
            action, fields = student.authorize(student.login(platform, hub_hint))
            assert action == f"{hub.url}/hub/lti13/oauth_callback"
            student.session.post(action, data=fields, timeout=120)
            hub.start_user("stud-1")
            # 2. the LMS's f2git link: a checked launch, 303 to the hub's nbgitpuller link
            launch = student.launch(platform, platform.add(Message("stud-1", LEARNER, custom={
                "f2git_course": "cs101", "f2git_path": "week1/intro.ipynb", "f2git_app": "lab"})))
            assert launch.status_code == 303, launch.text
            link = launch.headers["Location"]
            assert link.startswith(f"{hub.url}/hub/user-redirect/git-pull?")
            # 3. the hub sends the logged-in student to their own server's nbgitpuller page
            page = student.session.get(link, timeout=120)
            assert page.status_code == 200 and urlsplit(page.url).path == "/user/stud-1/git-pull", page.url
            query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
            events = []
            with student.session.get(f"{hub.url}/user/stud-1/git-pull/api", stream=True, timeout=180,
                                     params={"repo": query["repo"], "branch": query["branch"]}) as stream:
                for line in stream.iter_lines(decode_unicode=True):
                    if line and line.startswith("data: "):
                        events.append(json.loads(line[len("data: "):]))
                        if events[-1].get("phase") in ("finished", "error"):
                            break
            assert events[-1]["phase"] == "finished", events[-5:]
            pulled = tmp_path / "hub" / "home" / "stud-1" / "cs101" / "week1" / "intro.ipynb"
            assert pulled.read_text() == source.path.joinpath("week1/intro.ipynb").read_text()
