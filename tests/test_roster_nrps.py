"""LTI NRPS rosters: the client-credentials token with a JWT assertion signed by the tool key,
the membership container's pages, Active members only, for a course of any source."""
from __future__ import annotations

import json
import re
from urllib.parse import parse_qs

import jwt
import pytest
import responses

from connectors.base import SourceError
from connectors.roster import ACTIVE, INACTIVE, INSTRUCTOR, LEARNER, OBSERVER, TA
from f2git.config import parse
from f2git.lti import nrps
from f2git.lti.contexts import ContextStore
from f2git.lti.keys import ToolKeys
from f2git.roster import RosterStore, refresh_roster
from tests.fixtures.lti import (CONTENT_DEVELOPER, INSTRUCTOR as LIS_INSTRUCTOR, LEARNER as LIS_LEARNER, MENTOR,
                                TEACHING_ASSISTANT, container, member)

TOKEN_URL = "https://sso.canvaslms.com/login/oauth2/token"
MEMBERSHIPS = "https://canvas.example.edu/api/lti/courses/77/names_and_roles"
PLATFORM = {"name": "canvas", "issuer": "https://canvas.instructure.com", "client_id": "10000000000001",
            "auth_login_url": "https://sso.canvaslms.com/api/lti/authorize_redirect", "auth_token_url": TOKEN_URL,
            "key_set_url": "https://sso.canvaslms.com/api/lti/security/jwks"}
ACCESS_TOKEN = "nrps-access-Tok-93kd"


class Platform:
    """The token endpoint and the memberships service of one platform (a `responses` fake)."""

    def __init__(self, mock, keys: ToolKeys):
        self.keys = keys
        self.members = [member("u-ana", [LIS_LEARNER], email="Ana.Lopez@example.edu"),
                        member("u-bo", [LIS_LEARNER], email="bo@example.edu", status="Inactive"),
                        member("u-tina", [LIS_INSTRUCTOR], email="tina@example.edu"),
                        member("u-tom", [TEACHING_ASSISTANT], email="tom@example.edu"),
                        member("u-dev", [CONTENT_DEVELOPER], email="dev@example.edu"),
                        member("u-pa", [MENTOR], email="pa@example.edu")]
        self.token_requests: list[dict] = []
        self.pages = 0
        mock.add_callback(responses.POST, TOKEN_URL, callback=self.token)
        mock.add_callback(responses.GET, re.compile(re.escape(MEMBERSHIPS) + r"(\?.*)?$"), callback=self.memberships)

    def token(self, request):
        form = {key: values[0] for key, values in parse_qs(request.body).items()}
        self.token_requests.append(form)
        claims = jwt.decode(form["client_assertion"], self.keys.signing.private_key.public_key(), algorithms=["RS256"],
                            audience=TOKEN_URL)
        assert claims["iss"] == claims["sub"] == PLATFORM["client_id"] and claims["jti"]
        assert jwt.get_unverified_header(form["client_assertion"])["kid"] == self.keys.signing.kid
        assert form["grant_type"] == "client_credentials"
        assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        assert form["scope"] == "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
        return 200, {"Content-Type": "application/json"}, json.dumps(
            {"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 3600, "scope": form["scope"]})

    def memberships(self, request):
        if request.headers.get("Authorization") != f"Bearer {ACCESS_TOKEN}":
            return 401, {}, "{}"
        assert request.headers["Accept"] == "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
        self.pages += 1
        page = int(parse_qs(request.url.partition("?")[2]).get("page", ["1"])[0])
        size = 4
        chunk = self.members[(page - 1) * size:page * size]
        headers = {"Content-Type": "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"}
        if page * size < len(self.members):
            headers["Link"] = f'<{MEMBERSHIPS}?page={page + 1}>; rel="next"'
        return 200, headers, json.dumps(container(MEMBERSHIPS, "ctx-77", chunk))


@pytest.fixture
def setup(tmp_path):
    nrps._tokens.clear()
    config = parse({"server": {"data_dir": str(tmp_path / "data")}, "lti": {"platforms": [PLATFORM]},
                    "courses": {"notes": {"source": "local", "path": str(tmp_path), "members": "lms",
                                          "lti_contexts": ["ctx-77"]}}}, tmp_path / "f.toml", {})
    keys = ToolKeys.for_config(config.lti)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield config, Platform(mock, keys)


def test_a_local_course_reads_its_roster_by_nrps_active_members_only(setup):
    config, platform = setup
    course = config.courses["notes"]
    ContextStore.for_config(config).record("canvas", "ctx-77", "Intro to CS", MEMBERSHIPS)  # what a launch records
    enrolments = nrps.read_course_roster(config, course)
    assert {(e.hub_user, e.role, e.state) for e in enrolments} == {
        ("u-ana", LEARNER, ACTIVE), ("u-bo", LEARNER, INACTIVE), ("u-tina", INSTRUCTOR, ACTIVE),
        ("u-tom", TA, ACTIVE), ("u-dev", INSTRUCTOR, ACTIVE), ("u-pa", OBSERVER, ACTIVE)}
    assert platform.pages == 2 and len(platform.token_requests) == 1
    # the token is reused while it lasts
    nrps.read_course_roster(config, course)
    assert len(platform.token_requests) == 1
    # hub names from another field; the whole read stored with source "lti"
    course.hub_username = "email"
    roster = refresh_roster(config, course, RosterStore(config.server.data_dir))
    assert roster.source == "lti" and "ana.lopez@example.edu" in {e.hub_user for e in roster.enrolments}


def test_without_a_launch_the_roster_error_says_to_launch_once(setup):
    config, platform = setup
    with pytest.raises(SourceError, match="launch f2git once from that course"):
        nrps.read_course_roster(config, config.courses["notes"])
    assert not platform.token_requests


def test_a_claim_the_platform_does_not_send_is_named(setup):
    config, _ = setup
    ContextStore.for_config(config).record("canvas", "ctx-77", "", MEMBERSHIPS)
    config.courses["notes"].hub_username = "preferred_username"
    with pytest.raises(SourceError, match="no 'preferred_username'"):
        nrps.read_course_roster(config, config.courses["notes"])


@pytest.mark.parametrize("course, words", [
    ({"source": "canvas", "url": "https://c.example.edu", "course_id": 1, "token_env": "T", "members": "lms",
      "hub_username": "username"}, "key 'hub_username': 'username' is not a Canvas user field; use one of login_id"),
    ({"source": "moodle", "url": "https://m.example.edu", "course_id": 1, "token_env": "T", "members": "lms",
      "hub_username": "login_id"}, "use one of username, email, idnumber, id"),
    ({"source": "studip", "url": "https://s.example.de", "course_id": "x", "username_env": "T", "password_env": "T",
      "members": "lms", "hub_username": "idnumber"}, "use one of username, email, id"),
    ({"source": "ilias", "webdav_url": "https://i.example.de/webdav.php/c/ref_1/", "username_env": "T",
      "password_env": "T", "members": "lms"}, "use groups (hub groups), or LTI NRPS"),
])
def test_hub_username_and_members_are_checked_against_the_roster_source(tmp_path, course, words):
    from f2git.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        parse({"server": {}, "courses": {"c": course}}, tmp_path / "f.toml", {"T": "x"})
    assert words in str(caught.value) and "[courses.c]" in str(caught.value)


def test_an_endless_or_hostile_membership_service_is_bounded(setup, monkeypatch):
    import connectors.roster

    config, platform = setup
    ContextStore.for_config(config).record("canvas", "ctx-77", "", MEMBERSHIPS)
    monkeypatch.setattr(connectors.roster, "MAX_ENROLMENTS", 100)
    platform.members = [member(f"u-{n}", [LIS_LEARNER]) for n in range(400)]  # pages of 4, "next" after each
    with pytest.raises(SourceError, match="more than 100 enrolments"):
        nrps.read_course_roster(config, config.courses["notes"])
    assert platform.pages == 26
    platform.members = [{"roles": [LIS_LEARNER]}]  # a member without user_id
    with pytest.raises(SourceError, match="without user_id"):
        nrps.read_course_roster(config, config.courses["notes"])


def test_an_unreadable_tool_key_is_a_roster_error_the_dashboard_can_show(setup):
    config, platform = setup
    ContextStore.for_config(config).record("canvas", "ctx-77", "", MEMBERSHIPS)
    config.lti.key_file.write_text("not a key")
    roster = refresh_roster(config, config.courses["notes"], RosterStore(config.server.data_dir))
    assert roster.enrolments is None and "not an unencrypted PEM private key" in roster.error
    assert not platform.token_requests
