"""The attacker's launches: each fails closed with a 4xx page in words, logged without the token.

Tokens are hand-made around a real login f2git started (state in this browser's cookie), so each
test breaks exactly one thing the platform (lti1p3platform over HTTP) would have done right."""
from __future__ import annotations

import base64
import html
import re
import hashlib
import hmac
import json
import logging
from urllib.parse import urlsplit

import pytest
import requests

from tests.ltiplatform import INSTRUCTOR, LEARNER, Browser, LtiPlatform, Message, form_of, new_key
from tests.serverhelpers import RunningServer
from tests.test_lti import make_config, page_words, refusal

STUDENT = Message("stud-1", LEARNER, custom={"f2git_course": "cs101"})


@pytest.fixture
def platform():
    with LtiPlatform() as running:
        yield running


def serve(tmp_path, source, platform, **options):
    server = RunningServer(make_config(tmp_path, source, platform, **options))
    platform.connect(server.url)
    return server


@pytest.fixture
def tool(tmp_path, source, platform):
    with serve(tmp_path, source, platform) as server:
        yield server


from tests.test_lti import source  # noqa: E402,F401  (the course folder fixture)


def post_launch(browser: Browser, tool, token: str, state: str) -> requests.Response:
    return browser.session.post(tool.url + "/lti/launch", data={"id_token": token, "state": state},
                                allow_redirects=False)


def forged(platform, message=STUDENT, *, key=None, headers=None, algorithm="RS256", **changes):
    """A browser holding a real login, and a token made as told."""
    browser = Browser()
    state, nonce = browser.pending(platform, platform.add(message))
    claims = {**platform.claims(message, nonce), **changes}
    return browser, state, platform.sign({k: v for k, v in claims.items() if v is not None}, key=key,
                                         headers=headers, algorithm=algorithm)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_the_honest_hand_made_token_is_accepted(tool, platform):
    browser, state, token = forged(platform)
    assert post_launch(browser, tool, token, state).status_code == 303  # so each test below breaks one thing


def test_a_foreign_key_with_the_platforms_kid_is_refused(tool, platform, caplog):
    caplog.set_level(logging.INFO)
    attacker_key, _ = new_key()
    browser, state, token = forged(platform, key=attacker_key)
    answer = post_launch(browser, tool, token, state)
    assert answer.status_code == 403 and "signature is not the platform's" in refusal(answer)
    assert token not in caplog.text and token.split(".")[2] not in caplog.text


def test_alg_none_is_refused(tool, platform):
    browser = Browser()
    state, nonce = browser.pending(platform, platform.add(STUDENT))
    claims = platform.claims(STUDENT, nonce)
    token = f"{b64(json.dumps({'alg': 'none', 'kid': platform.kid}).encode())}.{b64(json.dumps(claims).encode())}."
    answer = post_launch(browser, tool, token, state)
    assert answer.status_code == 403 and "RS256" in refusal(answer)


def test_hs256_signed_with_the_platforms_public_key_is_refused(tool, platform):
    browser = Browser()
    state, nonce = browser.pending(platform, platform.add(STUDENT))
    signing_input = (b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": platform.kid}).encode()) + "."
                     + b64(json.dumps(platform.claims(STUDENT, nonce)).encode()))
    mac = hmac.new(platform.public_pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    answer = post_launch(browser, tool, signing_input + "." + b64(mac), state)
    assert answer.status_code == 403 and "RS256" in refusal(answer)


@pytest.mark.parametrize("changes, words", [
    ({"exp": 1_000_000_000, "iat": 999_999_000}, "expired"),
    ({"aud": "another-tool", "azp": "another-tool"}, "addressed to another tool"),
    ({"iss": "https://evil.example"}, "unknown issuer"),
    ({"nonce": "not-the-logins-nonce"}, "nonce differs"),
    ({"https://purl.imsglobal.org/spec/lti/claim/version": "1.1"}, "not an LTI 1.3.0 launch"),
    ({"https://purl.imsglobal.org/spec/lti/claim/message_type": "LtiSubmissionReviewRequest"}, "does not handle"),
    ({"aud": ["f2git-tool", "other"], "azp": "other"}, "azp"),
    ({"https://purl.imsglobal.org/spec/lti/claim/roles": None}, "no roles"),
])
def test_claims_that_do_not_hold_are_refused(tool, platform, changes, words):
    browser, state, token = forged(platform, **changes)
    answer = post_launch(browser, tool, token, state)
    assert words in refusal(answer)


GERMAN = "de-DE,de;q=0.9,en;q=0.5"


def test_an_expired_launch_is_refused_in_the_browsers_language(tool, platform, caplog):
    caplog.set_level(logging.INFO)
    browser, state, token = forged(platform, exp=1_000_000_000, iat=999_999_000)
    browser.session.headers["Accept-Language"] = GERMAN
    answer = post_launch(browser, tool, token, state)
    words = refusal(answer)
    assert answer.status_code == 403 and answer.headers["Content-Language"] == "de"
    assert "Dieser Aufruf aus dem LMS wurde abgelehnt" in words and "Dieser Aufruf ist abgelaufen." in words
    assert "Gehen Sie zurück zu Ihrem Kurs im LMS" in words and "expired" not in words
    # still framable by the platform only, no reload of a single-use form post offered, and the log has no token
    assert answer.headers["Content-Security-Policy"].endswith(f"frame-ancestors {platform.url}")
    assert "X-Frame-Options" not in answer.headers and 'id="retry"' not in answer.text
    assert "This launch has expired." in caplog.text and token.split(".")[2] not in caplog.text


def test_a_launch_without_the_cookie_says_what_to_do_in_german(tool, platform):
    victim = Browser()
    action, fields = victim.authorize(victim.login(platform, platform.add(STUDENT)))
    other = Browser()
    other.session.headers["Accept-Language"] = "de"
    words = refusal(other.session.post(action, data=fields, allow_redirects=False))
    assert "kam nicht zu dem Browser zurück" in words and "Drittanbieter-Cookies" in words


def test_a_deployment_not_accepted_is_refused(tmp_path, source, platform):
    with serve(tmp_path, source, platform, platform_overrides={"deployment_ids": ["deploy-9"]}) as tool:
        answer = Browser().launch(platform, platform.add(STUDENT))
        assert answer.status_code == 403 and "deployment 'deploy-1'" in refusal(answer)


def test_a_replayed_id_token_and_state_is_refused(tool, platform):
    browser = Browser()
    login = browser.login(platform, platform.add(STUDENT))
    action, fields = browser.authorize(login)
    assert browser.session.post(action, data=fields, allow_redirects=False).status_code == 303
    again = browser.session.post(action, data=fields, allow_redirects=False)
    assert again.status_code == 403 and "already used" in refusal(again)


def test_a_launch_without_the_logins_browser_binding_is_refused(tool, platform):
    victim = Browser()
    login = victim.login(platform, platform.add(STUDENT))
    action, fields = victim.authorize(login)
    stolen = Browser().session.post(action, data=fields, allow_redirects=False)  # another browser, same form
    assert stolen.status_code == 403 and "browser that started it" in refusal(stolen)
    # and the login is used up: the victim's own (late) post cannot be the attacker's second try either
    assert victim.session.post(action, data=fields, allow_redirects=False).status_code == 403


def test_a_state_f2git_never_issued_is_refused(tool, platform):
    browser, _, token = forged(platform)
    assert "does not belong to a login" in refusal(post_launch(browser, tool, token, "made-up-state"))


def test_a_flood_of_logins_costs_no_memory_and_crowds_out_no_real_launch(tool, platform):
    """Logins need no sign-in: each used to be kept until its launch, up to a cap a flood filled
    (every real login then refused for minutes). The state now carries the login, signed."""
    flooder = requests.Session()
    url = platform.login_initiation(platform.add(STUDENT))
    for _ in range(500):
        assert flooder.get(url, allow_redirects=False, timeout=30).status_code == 302
    logins = tool.server.app.settings["f2git_lti"].logins
    assert logins.used() == 0 and not [name for name, value in vars(logins).items()
                                       if isinstance(value, (dict, list, set)) and value]
    assert Browser().launch(platform, platform.add(STUDENT)).status_code == 303
    assert logins.used() == 1  # only a used state is kept, against replay, until it expires


def test_a_state_altered_or_signed_by_another_tool_is_refused(tmp_path, source, platform):
    with serve(tmp_path / "other", source, platform) as other:
        foreign, _ = Browser().pending(platform, platform.add(STUDENT))  # another f2git's (another key) login
    with serve(tmp_path, source, platform) as tool:
        browser, state, token = forged(platform)
        header, claims, signature = state.split(".")
        changed = json.loads(base64.urlsafe_b64decode(claims + "=="))
        changed["exp"] += 3600  # a longer life, the signature kept
        for bad in (f"{header}.{b64(json.dumps(changed).encode())}.{signature}", foreign):
            answer = post_launch(browser, tool, token, bad)
            assert answer.status_code == 403 and "does not belong to a login" in refusal(answer)
        assert post_launch(browser, tool, token, state).status_code == 303  # the real one still works


def test_a_login_begun_before_a_restart_launches_after_it(tmp_path, source, platform):
    with serve(tmp_path, source, platform):
        browser = Browser()
        login = browser.login(platform, platform.add(STUDENT))
        action, fields = browser.authorize(login)
    with serve(tmp_path, source, platform) as again:  # same data dir, same tool key (another port here)
        answer = browser.session.post(again.url + urlsplit(action).path, data=fields, allow_redirects=False)
        assert answer.status_code == 303, refusal(answer)


def test_what_is_no_launch_at_all_gets_a_page_in_words_too(tool, platform):
    german = {"Accept-Language": GERMAN}
    got = requests.get(tool.url + "/lti/launch", headers=german, allow_redirects=False)
    assert got.status_code == 405 and "Die LTI-Aufrufadresse nimmt nur das Formular" in refusal(got)
    put = requests.put(tool.url + "/lti/launch", headers=german, allow_redirects=False)  # tornado's own refusal
    assert put.status_code == 405 and "f2git konnte diese Anfrage nicht bearbeiten (HTTP 405)" in refusal(put)
    foreign = requests.post(tool.url + "/lti/deep-link", data={"launch": "x"}, allow_redirects=False,
                            headers={**german, "Origin": "https://evil.example"})
    assert foreign.status_code == 403 and "von einer anderen Website abgeschickt" in refusal(foreign)
    stranger = requests.get(tool.url + "/lti/login", params={"iss": "https://evil.example", "login_hint": "x"},
                            headers=german, allow_redirects=False)
    assert stranger.status_code == 403 and "[[lti.platforms]]" in refusal(stranger)


def test_a_learner_asking_for_deep_linking_is_refused(tool, platform):
    learner = Message("stud-1", LEARNER, deep_linking={"title": "x"})
    answer = Browser().launch(platform, platform.add(learner))
    assert answer.status_code == 403 and "Only instructors" in refusal(answer)
    assert 'name="launch"' not in answer.text
    german = Browser()
    german.session.headers["Accept-Language"] = GERMAN
    answer = german.launch(platform, platform.add(learner))
    assert answer.status_code == 403 and "Nur Lehrpersonen können f2git-Inhalte" in refusal(answer)
    assert "Öffnen Sie die Links, die Ihre Lehrperson in den Kurs gestellt hat." in page_words(answer)


@pytest.mark.parametrize("mode", ["down", "junk", "endless"])
def test_a_platform_jwks_that_is_down_junk_or_endless_fails_closed(tool, platform, mode):
    platform.jwks_mode = mode
    answer = Browser().launch(platform, platform.add(STUDENT))
    assert answer.status_code == 403 and "could not be checked" in refusal(answer)
    platform.jwks_mode = "ok"  # and the next launch reads the key set again and works
    assert Browser().launch(platform, platform.add(STUDENT)).status_code == 303


def test_platform_key_rotation_is_picked_up_and_made_up_kids_cost_one_read(tool, platform):
    assert Browser().launch(platform, platform.add(STUDENT)).status_code == 303
    reads = platform.jwks_requests
    for _ in range(5):  # a flood of unknown kids: the key set is read again at most once
        browser, state, token = forged(platform, headers={"kid": "made-up"})
        assert post_launch(browser, tool, token, state).status_code == 403
    assert platform.jwks_requests <= reads + 1
    for _ in range(3):  # known kid: served from the cache
        assert Browser().launch(platform, platform.add(STUDENT)).status_code == 303
    assert platform.jwks_requests <= reads + 1


def test_a_rotated_platform_key_is_fetched_on_its_unknown_kid(tmp_path, source, platform):
    with serve(tmp_path, source, platform) as tool:
        assert Browser().launch(platform, platform.add(STUDENT)).status_code == 303
        platform.private_pem, platform.public_pem = new_key()
        platform.connect(tool.url)
        tool.server.app.settings["f2git_lti"].platform_keys.refetch_after = 0  # the next unknown kid re-reads
        reads = platform.jwks_requests
        assert Browser().launch(platform, platform.add(STUDENT)).status_code == 303
        assert platform.jwks_requests == reads + 1


def test_an_instructor_session_cannot_reach_other_courses_or_admin_pages(tool, platform):
    browser = Browser()
    assert browser.launch(platform, platform.add(Message("teach-1", INSTRUCTOR))).status_code == 303
    assert browser.session.get(tool.url + "/metrics").status_code == 403
    assert browser.session.get(tool.url + "/git/bio/info/refs?service=git-upload-pack").status_code == 403
    # a forged session cookie is nobody
    browser.session.cookies.set("f2git-lti-session", "2|1:0|10:1700000000|17:f2git-lti-session|4:e30=|abc")
    page = requests.get(tool.url + "/courses/bio", cookies={"f2git-lti-session": "garbage"})
    assert page.headers["Content-Security-Policy"].endswith("frame-ancestors 'none'")


def test_platform_storage_binds_the_login_when_cookies_are_blocked(tool, platform):
    """LTI client-side storage (Canvas's lti_storage_target): the binding is kept by the platform too."""
    message = Message("stud-1", LEARNER, custom={"f2git_course": "cs101"}, storage_target="_parent")
    browser = Browser()
    login = browser.session.get(platform.login_initiation(platform.add(message)), allow_redirects=False)
    assert login.status_code == 200 and 'data-action="put"' in login.text and "Set-Cookie" in login.headers
    binding = html.unescape(re.search(r'data-value="([^"]+)"', login.text).group(1))
    authorize = html.unescape(re.search(r'data-next="([^"]+)"', login.text).group(1))
    action, fields = form_of(requests.get(authorize).text)
    blocked = Browser()  # the launch arrives without the cookie, as in a browser blocking third-party cookies
    page = blocked.session.post(action, data=fields, allow_redirects=False)
    assert page.status_code == 200 and 'data-action="get"' in page.text  # asks the platform's storage
    wrong = blocked.session.post(action, data={**fields, "binding": "guessed"}, allow_redirects=False)
    assert wrong.status_code == 403 and "browser that started it" in refusal(wrong)
    # the wrong guess used the login up: a login's binding is tried once
    again = Browser()
    login = again.session.get(platform.login_initiation(platform.add(message)), allow_redirects=False)
    binding = html.unescape(re.search(r'data-value="([^"]+)"', login.text).group(1))
    action, fields = form_of(requests.get(html.unescape(re.search(r'data-next="([^"]+)"', login.text).group(1))).text)
    assert Browser().session.post(action, data={**fields, "binding": binding}, allow_redirects=False).status_code == 303
    # the sign-in page speaks the browser's language too, its script's error sentence included
    german = Browser()
    german.session.headers["Accept-Language"] = GERMAN
    page = german.session.get(platform.login_initiation(platform.add(message)), allow_redirects=False)
    assert "<h1>Anmeldung läuft…</h1>" in page.text and 'data-failed="Das LMS konnte die Anmeldung' in page.text
