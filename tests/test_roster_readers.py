"""Each LMS's roster through its own API (fakes shaped from each LMS's source: see
tests/fixtures/canvas/enrollments.py, tests/fixtures/moodle, tests/fixtures/studip/schemas.py)."""
from __future__ import annotations

import json

import pytest
import responses

import connectors.roster
from connectors.base import AuthError, SourceError
from connectors.roster import ACTIVE, COMPLETED, INACTIVE, INSTRUCTOR, INVITED, LEARNER, OBSERVER, OTHER, TA, Enrolment
from tests.canvasfake import fake  # noqa: F401 (the fixture)
from tests.moodlefake import FakeMoodle
from tests.studipfake import FakeStudip


def roles_of(enrolments: list[Enrolment]) -> set[tuple[str | None, str, str]]:
    return {(e.hub_user, e.role, e.state) for e in enrolments}


# -- Canvas ----------------------------------------------------------------------------------------

def test_canvas_roster_names_each_enrolment_by_login_id_with_its_base_role_and_state(fake):
    fake.enrol("Ana.Lopez")  # mixed case: the hub lowercases
    fake.enrol("bo", state="invited")
    fake.enrol("cy", state="completed")
    fake.enrol("di", state="inactive")
    fake.enrol("ed", "ObserverEnrollment")
    fake.enrol("tina", "TeacherEnrollment")
    fake.enrol("tom", "TaEnrollment", custom_role="Grader")  # a custom role keeps its base type
    fake.enrol("des", "DesignerEnrollment")
    fake.enrol("ghost", state="deleted")  # never listed by Canvas for these states
    fake.enrol(None, "StudentViewEnrollment")  # the Test Student has no login
    enrolments = fake.connector().read_roster("login_id")
    assert roles_of(enrolments) == {
        ("ana.lopez", LEARNER, ACTIVE), ("bo", LEARNER, INVITED), ("cy", LEARNER, COMPLETED),
        ("di", LEARNER, INACTIVE), ("ed", OBSERVER, ACTIVE), ("tina", INSTRUCTOR, ACTIVE), ("tom", TA, ACTIVE),
        ("des", INSTRUCTOR, ACTIVE), (None, OTHER, ACTIVE)}
    # the states are asked for by name (Canvas's default would hide completed ones), over several pages
    asked = [r.url for r in fake.api_requests if "/enrollments" in r.url]
    assert len(asked) == 5 and all("state%5B%5D=completed" in url or "state[]=completed" in url for url in asked)


def test_canvas_without_the_permission_to_see_login_ids_is_one_error_naming_it(fake):
    fake.enrol("ana")
    fake.enrol("bo")
    fake.can_see_logins = False
    with pytest.raises(SourceError) as caught:
        fake.connector().read_roster("")
    assert "Users - view login IDs" in str(caught.value) and "login_id" in str(caught.value)
    assert "ana" not in str(caught.value)
    # the Canvas user id needs no permission
    assert {e.hub_user for e in fake.connector().read_roster("id")} == {str(e.user.id) for e in fake.enrollments}


def test_canvas_roster_by_email_asks_canvas_to_include_it(fake):
    fake.enrol("ana", email="Ana@Example.edu")
    assert [e.hub_user for e in fake.connector().read_roster("email")] == ["ana@example.edu"]
    assert "include%5B%5D=email" in fake.api_requests[-1].url or "include[]=email" in fake.api_requests[-1].url


def test_canvas_roster_that_never_ends_is_refused_whole(fake, monkeypatch):
    monkeypatch.setattr(connectors.roster, "MAX_ENROLMENTS", 30)
    for number in range(40):
        fake.enrol(f"user{number}")
    with pytest.raises(SourceError, match="more than 30 enrolments"):
        fake.connector().read_roster("login_id")


def test_canvas_hostile_roster_answers_are_errors_not_crashes(fake):
    fake.enrol("ana")
    fake.injected[("enrollments", 1)] = [(200, {"Content-Type": "application/json"}, json.dumps({"not": "a list"}))]
    with pytest.raises(SourceError, match="expected a list"):
        fake.connector().read_roster("login_id")
    fake.injected[("enrollments", 1)] = [(200, {"Content-Type": "application/json"}, json.dumps([{"user": {}}]))]
    with pytest.raises(SourceError, match="unexpected shape"):
        fake.connector().read_roster("login_id")


def test_canvas_rejects_an_unknown_hub_username_field(fake):
    with pytest.raises(SourceError, match="login_id, email, sis_user_id, id"):
        fake.connector().read_roster("username")


# -- Moodle ----------------------------------------------------------------------------------------

def mocked(fake_class):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield fake_class(mock)


@pytest.fixture
def moodle():
    yield from mocked(FakeMoodle)


def test_moodle_roster_has_active_enrolments_with_moodles_roles(moodle):
    moodle.participants = {"Ana": (["student"], True), "sus": (["student"], False),
                           "tina": (["editingteacher"], True), "tom": (["teacher", "student"], True),
                           "gus": (["guest"], True), "odd": (["coursecreator"], True)}
    enrolments = moodle.connector().read_roster("")
    assert roles_of(enrolments) == {("ana", LEARNER, ACTIVE), ("tina", INSTRUCTOR, ACTIVE), ("tom", TA, ACTIVE),
                                    ("tom", LEARNER, ACTIVE), ("gus", OBSERVER, ACTIVE), ("odd", OTHER, ACTIVE)}
    form = moodle.forms[-1]
    assert form["wsfunction"] == "core_enrol_get_enrolled_users" and form["options[0][name]"] == "onlyactive"
    assert "wstoken" not in moodle.forms[-1].get("url", "")  # the token travels in the POST body


def test_moodle_student_token_reads_the_roster_by_email_and_names_the_capability_for_usernames(moodle):
    moodle.student = True
    moodle.can_view_details = False  # a student's token does not hold moodle/user:viewalldetails
    moodle.participants = {"ana": (["student"], True), "tina": (["editingteacher"], True)}
    with pytest.raises(SourceError, match="moodle/user:viewalldetails"):
        moodle.connector().read_roster("username")
    assert {e.hub_user for e in moodle.connector().read_roster("email")} == {"ana@example.edu", "tina@example.edu"}


def test_moodle_service_without_the_roster_function_is_an_auth_error_naming_it(moodle):
    moodle.canned["core_enrol_get_enrolled_users"] = FakeMoodle._json(
        {"exception": "webservice_access_exception", "errorcode": "accessexception", "message": "Access control exception"})
    with pytest.raises(AuthError, match="core_enrol_get_enrolled_users"):
        moodle.connector().read_roster("username")


# -- Stud.IP ---------------------------------------------------------------------------------------

@pytest.fixture
def studip():
    yield from mocked(FakeStudip)


def test_studip_roster_maps_permissions_over_pages_with_included_users(studip):
    studip.members = {"ana.lopez": "autor", "bo.berg": "user", "tim.tutor": "tutor", "doz.mueller": "dozent",
                      "Eve.Ernst": "autor"}
    enrolments = studip.connector().read_roster("")
    assert roles_of(enrolments) == {("ana.lopez", LEARNER, ACTIVE), ("bo.berg", LEARNER, ACTIVE),
                                    ("tim.tutor", TA, ACTIVE), ("doz.mueller", INSTRUCTOR, ACTIVE),
                                    ("eve.ernst", LEARNER, ACTIVE)}
    asked = [r.url for r in studip.requests if "memberships" in r.url]
    assert len(asked) == 2 and all("include=user" in url for url in asked)  # page limit 3 in the fake
    assert {e.hub_user for e in studip.connector().read_roster("email")} >= {"ana.lopez@uni.example.de"}
