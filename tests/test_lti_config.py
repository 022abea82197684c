"""`[lti]` and the membership keys: errors name the table and key; the tool key is private,
published with its `kid`, and a second key can be published while the first still signs."""
from __future__ import annotations

import stat

import jwt
import pytest

from f2git.config import ConfigError, parse
from f2git.lti.keys import KeyFileError, ToolKeys

CANVAS = {"name": "canvas", "issuer": "https://canvas.instructure.com", "client_id": "10000000000001",
          "auth_login_url": "https://sso.canvaslms.com/api/lti/authorize_redirect",
          "auth_token_url": "https://sso.canvaslms.com/login/oauth2/token",
          "key_set_url": "https://sso.canvaslms.com/api/lti/security/jwks"}
MOODLE = {"name": "moodle", "issuer": "https://moodle.example.edu", "client_id": "aBc",
          "auth_login_url": "https://moodle.example.edu/mod/lti/auth.php",
          "auth_token_url": "https://moodle.example.edu/mod/lti/token.php",
          "key_set_url": "https://moodle.example.edu/mod/lti/certs.php"}


def parse_with(tmp_path, lti, courses=None):
    data = {"server": {}, "courses": courses or {}}
    if lti is not None:
        data["lti"] = lti
    return parse(data, tmp_path / "f.toml", {})


def test_platforms_and_defaults(tmp_path):
    config = parse_with(tmp_path, {"platforms": [CANVAS, MOODLE]})
    assert [p.name for p in config.lti.platforms] == ["canvas", "moodle"]
    assert config.lti.username_claim == "sub" and config.lti.provision == "ask"
    assert config.lti.key_file == (tmp_path / "lti-key.pem").resolve()
    assert parse_with(tmp_path, None).lti is None


@pytest.mark.parametrize("lti, words", [
    ({"provision": "sometimes"}, "[lti] key 'provision'"),
    ({"colour": 1}, "[lti] unknown key 'colour'"),
    ({"platforms": [{**CANVAS, "key_set_url": "canvas/jwks"}]}, "(canvas) key 'key_set_url'"),
    ({"platforms": [{**CANVAS, "client_id": ""}]}, "key 'client_id'"),
    ({"platforms": [CANVAS, {**CANVAS, "name": "other"}]}, "registered twice"),
    ({"platforms": [{k: v for k, v in CANVAS.items() if k != "issuer"}]}, "missing key 'issuer'"),
    ({"platforms": "canvas"}, "array of tables"),
])
def test_lti_errors_name_table_and_key(tmp_path, lti, words):
    with pytest.raises(ConfigError) as error:
        parse_with(tmp_path, lti)
    assert words in str(error.value) and "f.toml" in str(error.value)


def test_members_lms_needs_a_roster(tmp_path):
    course = {"source": "http", "url": "https://example.org/c.zip", "members": "lms"}
    with pytest.raises(ConfigError) as error:
        parse_with(tmp_path, None, {"cs101": course})
    assert "key 'members'" in str(error.value) and "lti_contexts" in str(error.value) and "groups" in str(error.value)
    config = parse_with(tmp_path, {"platforms": [CANVAS]}, {"cs101": {**course, "lti_contexts": ["ctx-1"]}})
    assert config.courses["cs101"].members == "lms"


def test_contexts_name_their_platform_when_there_are_several(tmp_path):
    course = {"source": "local", "path": ".", "lti_contexts": ["ctx-1"]}
    with pytest.raises(ConfigError) as error:
        parse_with(tmp_path, {"platforms": [CANVAS, MOODLE]}, {"cs101": course})
    assert "<platform name>/<context id>" in str(error.value)
    config = parse_with(tmp_path, {"platforms": [CANVAS, MOODLE]},
                        {"cs101": {**course, "lti_contexts": ["moodle/ctx-1"]}})
    assert config.courses["cs101"].lti_contexts == ["moodle/ctx-1"]
    with pytest.raises(ConfigError) as error:
        parse_with(tmp_path, None, {"cs101": course})
    assert "needs an [lti] table" in str(error.value)


def test_tool_key_is_created_private_and_published(tmp_path):
    key_file = tmp_path / "keys" / "lti-key.pem"
    keys = ToolKeys.load(key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    (published,) = keys.jwks()["keys"]
    assert published["alg"] == "RS256" and published["kid"] and "d" not in published  # no private part
    token = keys.sign({"iss": "f2git"})
    assert jwt.get_unverified_header(token)["kid"] == published["kid"]
    assert jwt.decode(token, jwt.PyJWK(published).key, algorithms=["RS256"]) == {"iss": "f2git"}
    assert ToolKeys.load(key_file).signing.kid == published["kid"]  # the same key on the next start


def test_rotation_publishes_the_next_key_while_the_first_signs(tmp_path):
    first, second = tmp_path / "first.pem", tmp_path / "second.pem"
    ToolKeys.load(second)
    keys = ToolKeys.load(first, [second])
    kids = [key["kid"] for key in keys.jwks()["keys"]]
    assert len(set(kids)) == 2 and jwt.get_unverified_header(keys.sign({}))["kid"] == kids[0]
    rotated = ToolKeys.load(second, [first])
    assert jwt.get_unverified_header(rotated.sign({}))["kid"] == kids[1]


def test_a_key_file_that_is_no_rsa_key_names_the_file(tmp_path):
    bad = tmp_path / "lti-key.pem"
    bad.write_text("not a key")
    with pytest.raises(KeyFileError, match="lti-key.pem"):
        ToolKeys.load(bad)


def test_context_store_keeps_the_memberships_url_privately(tmp_path):
    from f2git.lti.contexts import ContextStore

    store = ContextStore(tmp_path / "lti" / "contexts.json")
    assert store.get("canvas", "ctx-1") is None
    store.record("canvas", "ctx-1", "Programming 1", "https://lms/api/lti/courses/1/names_and_roles")
    store.record("canvas", "ctx-1", "Programming 1")  # a launch without the NRPS claim keeps the URL
    record = ContextStore(tmp_path / "lti" / "contexts.json").get("canvas", "ctx-1")
    assert record.memberships_url.endswith("/names_and_roles") and record.title == "Programming 1"
    assert stat.S_IMODE((tmp_path / "lti" / "contexts.json").stat().st_mode) == 0o600
