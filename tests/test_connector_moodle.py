"""The Moodle connector against `FakeMoodle` (tests/moodlefake.py), a `responses` fake of
Moodle's web service whose answers are shaped by Moodle's source (tests/fixtures/moodle), for
a teacher's token or a student's.
"""
from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timedelta, timezone

import pytest
import responses
import time_machine

from connectors import AuthError, SourceError
from connectors.moodle import MoodleConnector, MoodleOptions, restriction
from f2git.config import ConfigError, parse
from tests.conformance import read_all
from tests.fixtures import moodle as ws
from tests.lms_contract import LmsConformance, LmsContract, listed
from tests.moodlefake import BASE, COURSE, NOW, TOKEN, FakeMoodle, unix

SECRET_NAME = "exam-solutions.ipynb"


@pytest.fixture
def fake():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeMoodle(mock)


@pytest.fixture
def student():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeMoodle(mock, student=True)


class TestMoodleLmsContract(LmsContract):
    credential_hint = "$MOODLE_TOKEN"
    rejection_words = ("Moodle rejected the token", "invalidtoken")  # HTTP 200, not 401


class TestMoodleConformance(LmsConformance):
    pass


# --- release rules: a teacher's token -------------------------------------------------------

FUTURE = NOW + timedelta(days=3)
PAST = NOW - timedelta(days=3)


def availability(node: dict) -> str:
    return json.dumps(node)


UNRELEASED = {
    "section hidden": ("section", {"visible": 0}),
    "section restricted (text only)": ("section", {
        "availabilityinfo": "Not available unless: You belong to <strong>Gruppe A</strong>"}),
    "section beyond the course's sections": ("section", {"hiddenbynumsections": 1}),
    # A group restriction the teacher passes (accessallgroups): no text, only the editor's flag.
    "section restricted (flag only)": ("section", {"restricted": True}),
    "module hidden": ("module", {"visible": 0}),
    "module stealth (available, not on the course page)": ("module", {"visibleoncoursepage": 0}),
    "opens later": ("module", {"availability": availability(ws.tree("&", ws.date(">=", unix(FUTURE))))}),
    "closed since": ("module", {"availability": availability(ws.tree("&", ws.date("<", unix(PAST))))}),
    "window not open yet": ("module", {"availability": availability(
        ws.tree("&", ws.date(">=", unix(FUTURE)), ws.date("<", unix(FUTURE + timedelta(days=1)))))}),
    "negated window (!&): inside it": ("module", {"availability": availability(
        ws.tree("!&", ws.tree("&", ws.date(">=", unix(PAST)), ws.date("<", unix(FUTURE)), root=False)))}),
    "grade condition": ("module", {"availability": availability(ws.tree("&", ws.grade()))}),
    "completion condition": ("module", {"availability": availability(ws.tree("&", ws.completion()))}),
    "profile condition": ("module", {"availability": availability(ws.tree("&", ws.profile()))}),
    "group condition": ("module", {"availability": availability(ws.tree("&", ws.group()))}),
    "open date and a grade": ("module", {"availability": availability(
        ws.tree("&", ws.date(">=", unix(PAST)), ws.grade()))}),
    "or of two undecidable": ("module", {"availability": availability(ws.tree("|", ws.group(), ws.grade()))}),
    "nested or, both dates closed": ("module", {"availability": availability(
        ws.tree("&", ws.tree("|", ws.date(">=", unix(FUTURE)), ws.date("<", unix(PAST)), root=False)))}),
    "unreadable availability": ("module", {"availability": "{not json"}),
    "unknown operator": ("module", {"availability": availability({"op": "^", "c": [ws.date(">=", 0)]})}),
    "a plugin's condition": ("module", {"availability": availability(ws.tree("&", {"type": "<b>x</b>"}))}),
}


@pytest.mark.parametrize("case", sorted(UNRELEASED))
def test_unreleased_modules_appear_nowhere(fake, case):
    target, settings = UNRELEASED[case]
    fake.publish({"README.md": b"hi", "exams/notes.txt": b"n", f"exams/sub/{SECRET_NAME}": b"{}"})
    if target == "section":
        fake.section("exams", **settings)
    else:
        fake.modules[("exams", "sub")].update(settings)
    listing = fake.connector().list({})
    paths = sorted(entry.path for entry in listing.entries)
    assert SECRET_NAME not in json.dumps([paths, [s.path for s in listing.skipped], listing.state,
                                          listing.withheld])
    assert "README.md" in paths
    assert ("exams/notes.txt" in paths) == (target == "module")
    # Released again, the module is listed: the rule above is what held it back.
    fake.section("exams", visible=1, availabilityinfo=None, hiddenbynumsections=0, restricted=False)
    fake.modules[("exams", "sub")].update(visible=1, visibleoncoursepage=1, availability=None)
    assert f"exams/sub/{SECRET_NAME}" in listed(fake.connector())


RELEASED = {
    "no restriction (null)": None,
    "empty tree (restrictions removed)": availability({"op": "&", "c": [], "showc": []}),
    "opened": availability(ws.tree("&", ws.date(">=", unix(PAST)))),
    "inside its window": availability(ws.tree("&", ws.date(">=", unix(PAST)), ws.date("<", unix(FUTURE)))),
    "or: open date or a grade": availability(ws.tree("|", ws.date(">=", unix(PAST)), ws.grade())),
    "negated or (!|): not yet closed": availability(ws.tree("!|", ws.date(">=", unix(FUTURE)))),
    "negated and (!&) of a grade and a future date": availability(
        ws.tree("!&", ws.tree("&", ws.grade(), ws.date(">=", unix(FUTURE)), root=False))),
    "hidden marker does not matter": availability(ws.tree("&", ws.date(">=", unix(PAST)), show=False)),
}


@pytest.mark.parametrize("case", sorted(RELEASED))
def test_modules_whose_restrictions_are_open_are_released(fake, case):
    fake.put("week1/data/x.csv", b"1", availability=RELEASED[case])
    listing = fake.connector().list({})
    assert [e.path for e in listing.entries] == ["week1/data/x.csv"]
    assert listing.withheld == {}


def test_undecidable_conditions_are_counted_by_reason_never_named(fake):
    fake.publish({"README.md": b"r"})
    fake.put(f"w1/grade-gated/{SECRET_NAME}", b"x", availability=availability(ws.tree("&", ws.grade())))
    fake.put(f"w1/also-graded/{SECRET_NAME}", b"x", availability=availability(ws.tree("&", ws.grade())))
    fake.put(f"w1/grouped/{SECRET_NAME}", b"x", availability=availability(ws.tree("|", ws.group(), ws.completion())))
    fake.put(f"restricted/{SECRET_NAME}", b"x")
    fake.section("restricted", availabilityinfo="Not available unless: Your <strong>Email</strong> contains ...")
    fake.put(f"w2/later/{SECRET_NAME}", b"x", availability=availability(ws.tree("&", ws.date(">=", unix(FUTURE)))))
    listing = fake.connector().list({})
    assert [e.path for e in listing.entries] == ["README.md"]
    assert listing.withheld == {"grade restriction": 2, "completion/group restriction": 1,
                                "section restriction (teacher token)": 1}
    assert listing.next_release == FUTURE  # a date is not "cannot decide": it is a refresh moment
    assert fake.connector().check() == \
        "1 released file; withheld: 1 × completion/group restriction, 2 × grade restriction," \
        " 1 × section restriction (teacher token)"
    fake.put(f"w3/odd/{SECRET_NAME}", b"x", availability=availability(ws.tree("&", {"type": f"x-{SECRET_NAME}"})))
    assert fake.connector().list({}).withheld["unknown restriction"] == 1  # a plugin's name, or nothing


def test_a_restricted_section_is_found_without_the_course_state_too_when_moodle_shows_its_text(fake):
    """A service without core_courseformat_get_state: the listing still works, and sections
    whose restriction the teacher does not meet (the text Moodle shows) stay withheld."""
    fake.state_function = False
    fake.publish({"README.md": b"r", f"restricted/{SECRET_NAME}": b"x"})
    fake.section("restricted", availabilityinfo="Not available unless: It is on or after <strong>1 Dec</strong>")
    listing = fake.connector().list({})
    assert [e.path for e in listing.entries] == ["README.md"]
    assert listing.withheld == {"section restriction (teacher token)": 1}


def test_a_student_token_does_not_ask_for_the_course_editors_state(student):
    student.publish({"README.md": b"r"})
    student.connector().list({})
    assert student.calls == ["core_course_get_contents"]


def test_next_release_is_the_earliest_moment_a_restricted_module_opens(fake):
    fake.publish({"now.txt": b"n"})
    soon, later = NOW + timedelta(hours=2), NOW + timedelta(hours=5)
    fake.put("w/a/soon.txt", b"s", availability=availability(ws.tree("&", ws.date(">=", unix(later)))))
    fake.put("w/b/window.txt", b"w", availability=availability(
        ws.tree("&", ws.date(">=", unix(soon)), ws.date("<", unix(soon + timedelta(hours=1))))))
    # Closes before it would open: never a release.
    fake.put("w/c/never.txt", b"x", availability=availability(
        ws.tree("&", ws.date(">=", unix(NOW + timedelta(minutes=30))),
                ws.date("<", unix(NOW + timedelta(minutes=10))))))
    # Opens with a date, but also needs a grade: not a moment f2git can promise.
    fake.put("w/d/graded.txt", b"g", availability=availability(
        ws.tree("&", ws.date(">=", unix(NOW + timedelta(minutes=5))), ws.grade())))
    connector = fake.connector()
    listing = connector.list({})
    assert [e.path for e in listing.entries] == ["now.txt"]
    assert listing.next_release == soon and listing.next_release.tzinfo is not None
    connector.now = lambda: soon
    assert {e.path for e in connector.list({}).entries} == {"now.txt", "w/b/window.txt"}
    connector.now = lambda: soon + timedelta(hours=1)
    after = connector.list({})
    assert {e.path for e in after.entries} == {"now.txt"}  # the window closed
    assert after.next_release == later


def test_restriction_evaluates_nested_and_negated_trees_at_moments():
    t1, t2 = unix(NOW) + 3600, unix(NOW) + 7200
    # Not (from t1 until t2): open now, closed inside, open again after.
    outside = ws.tree("!&", ws.tree("&", ws.date(">=", t1), ws.date("<", t2), root=False))
    assert restriction(json.dumps(outside), NOW)[0].visible
    assert not restriction(json.dumps(outside), NOW + timedelta(hours=1, minutes=30))[0].visible
    reopening = restriction(json.dumps(outside), NOW + timedelta(hours=1, minutes=30))[0]
    assert reopening.at == datetime.fromtimestamp(t2, timezone.utc)
    # (from t2) or (until now-1h): closed now, opens at t2.
    either = ws.tree("|", ws.date(">=", t2), ws.date("<", unix(NOW) - 3600))
    assert restriction(json.dumps(either), NOW)[0].at == datetime.fromtimestamp(t2, timezone.utc)
    # Not any of (before t1): closed until t1.
    not_before = ws.tree("!|", ws.date("<", t1))
    assert restriction(json.dumps(not_before), NOW)[0].at == datetime.fromtimestamp(t1, timezone.utc)


def test_a_date_window_opens_and_closes_as_time_passes(fake):
    """With the real clock moved (time-machine), not an injected one."""
    opens, closes = NOW + timedelta(hours=1), NOW + timedelta(hours=3)
    fake.publish({"README.md": b"r"})
    fake.put("w/lab/sheet.ipynb", b"{}", availability=availability(
        ws.tree("&", ws.date(">=", unix(opens)), ws.date("<", unix(closes)))))
    opts = MoodleOptions(url=BASE, course_id=COURSE, token_env="MOODLE_TOKEN")
    with time_machine.travel(NOW, tick=False) as clock:
        connector = MoodleConnector(opts, env=dict(fake.env))
        first = connector.list({})
        assert [e.path for e in first.entries] == ["README.md"] and first.next_release == opens
        clock.move_to(opens)
        assert {e.path for e in connector.list({}).entries} == {"README.md", "w/lab/sheet.ipynb"}
        clock.move_to(closes)
        last = connector.list({})
        assert [e.path for e in last.entries] == ["README.md"] and last.next_release is None


def test_only_files_of_resources_folders_and_assignment_attachments_are_copied(fake):
    fake.publish({"README.md": b"r"})
    link = fake.module("week1", "Course website", "url")
    fake.module("week1", "Reading", "page")
    fake.module("week1", "Announcements", "forum")
    fake.assignment("week1", "Übungsblatt 1", {"blatt1.ipynb": b"{}", "daten.csv": b"a,b\n"})
    fake.assignment("week1", "Blatt 2", {"blatt2.ipynb": b"{}"}, shown=False, opens=unix(FUTURE))
    assert link["modname"] == "url"
    connector = fake.connector()
    listing = connector.list({})
    assert [e.path for e in listing.entries] == \
        ["README.md", "week1/Übungsblatt 1/blatt1.ipynb", "week1/Übungsblatt 1/daten.csv"]
    assert listing.next_release == datetime.fromtimestamp(unix(FUTURE), timezone.utc)  # when Blatt 2's intro shows
    assert read_all(connector, listed(connector)["week1/Übungsblatt 1/daten.csv"]) == b"a,b\n"
    assert fake.calls.count("mod_assign_get_assignments") == 2


def test_assignments_are_not_asked_for_when_the_course_has_none(fake):
    fake.publish({"README.md": b"r", "w/x.txt": b"x"})
    fake.connector().list({})
    assert fake.calls == ["core_course_get_contents", "core_courseformat_get_state"]


def test_a_hidden_assignment_is_not_read(fake):
    fake.publish({"README.md": b"r"})
    fake.assignment("week1", "Klausur", {SECRET_NAME: b"x"}, visible=0)
    assert [e.path for e in fake.connector().list({}).entries] == ["README.md"]


# --- subsections (Moodle 4.5+) --------------------------------------------------------------

def _with_subsection(fake, **settings):
    fake.publish({"README.md": b"r", "Woche 1/intro.ipynb": b"{}"})
    fake.subsection("Woche 1", "Vertiefung", **settings)
    fake.put("Woche 1/Vertiefung/extra.ipynb", b"{}")
    fake.put(f"Woche 1/Vertiefung/Daten/{SECRET_NAME}", b"x")
    return fake


def test_a_subsection_is_a_folder_inside_its_section(fake):
    _with_subsection(fake)
    contents = fake._contents()
    assert [s["component"] for s in contents] == [None, None, "mod_subsection"]  # listed as a section of its own
    connector = fake.connector()
    assert set(listed(connector)) == {"README.md", "Woche 1/intro.ipynb", "Woche 1/Vertiefung/extra.ipynb",
                                      f"Woche 1/Vertiefung/Daten/{SECRET_NAME}"}
    assert set(listed(fake.connector(folder="Woche 1/Vertiefung"))) == {"extra.ipynb", f"Daten/{SECRET_NAME}"}


@pytest.mark.parametrize("case, settings, withheld", [
    ("its section hidden", {"section": {"visible": 0}}, {}),
    # intro.ipynb in that section too
    ("its section restricted", {"section": {"restricted": True}}, {"section restriction (teacher token)": 3}),
    ("the subsection module hidden", {"module": {"visible": 0}}, {}),
    ("the subsection opens later",
     {"module": {"availability": availability(ws.tree("&", ws.date(">=", unix(FUTURE))))}}, {}),
    ("the subsection needs a grade", {"module": {"availability": availability(ws.tree("&", ws.grade()))}},
     {"grade restriction": 2}),
])
def test_a_subsection_is_closed_by_what_closes_its_section_or_its_module(fake, case, settings, withheld):
    """The subsection's own section says visible and unrestricted: what holds it back lies above."""
    _with_subsection(fake)
    fake.section("Woche 1", **settings.get("section", {}))
    fake.modules[("Woche 1", "Vertiefung")].update(settings.get("module", {}))
    listing = fake.connector().list({})
    assert SECRET_NAME not in json.dumps([e.path for e in listing.entries])
    assert not any(e.path.startswith("Woche 1/Vertiefung/") for e in listing.entries)
    assert listing.withheld == withheld
    if "later" in case:
        assert listing.next_release == FUTURE
        later = fake.connector()
        later.now = lambda: FUTURE
        assert "Woche 1/Vertiefung/extra.ipynb" in listed(later)


def test_a_subsections_section_no_module_leads_to_is_never_released(fake):
    _with_subsection(fake)
    del fake.modules[("Woche 1", "Vertiefung")]  # its section is still listed, on its own
    listing = fake.connector().list({})
    assert {e.path for e in listing.entries} == {"README.md", "Woche 1/intro.ipynb"}
    assert listing.withheld == {"subsection outside the course page": 2}


def test_a_student_token_sees_a_subsection_as_moodle_shows_it(student):
    _with_subsection(student)
    assert "Woche 1/Vertiefung/extra.ipynb" in listed(student.connector())
    student.modules[("Woche 1", "Vertiefung")]["visible"] = 0
    assert not any(p.startswith("Woche 1/Vertiefung") for p in listed(student.connector()))


# --- release rules: a student's token ---------------------------------------------------------

def test_a_student_token_gets_what_moodle_lets_the_student_open(student):
    student.publish({"README.md": b"r", "week1/intro.ipynb": b"{}", f"exam/{SECRET_NAME}": b"x",
                     f"week2/data/{SECRET_NAME}": b"x", "week3/later/a.txt": b"a"})
    student.section("exam", visible=0)
    student.modules[("week2", "data")].update(visible=0)
    student.modules[("week3", "later")].update(student_sees=False, info="Available from <strong>1 December</strong>")
    listing = student.connector().list({})
    assert [e.path for e in listing.entries] == ["README.md", "week1/intro.ipynb"]
    assert listing.withheld == {}  # Moodle decided: nothing f2git had to withhold
    sent = json.dumps(student._contents())
    assert '"availability"' not in sent and "Available from" in sent  # a student sees text, no JSON


def test_a_student_token_respects_stealth_modules_too(student):
    student.publish({"README.md": b"r", f"w/hidden-link/{SECRET_NAME}": b"x"})
    student.modules[("w", "hidden-link")].update(visibleoncoursepage=0)
    assert [e.path for e in student.connector().list({}).entries] == ["README.md"]


# --- names, folders, changes ------------------------------------------------------------------

def test_section_and_module_names_become_safe_folder_names(fake):
    fake.put("week1/data/x.csv", b"1")
    fake.modules[("week1", "data")]["name"] = "Daten &amp; Skripte / Teil 1"
    fake.section("week1")
    fake.put("s2/y.txt", b"y")
    fake.put("s3/raw/z.txt", b"z")
    fake.modules[("s3", "raw")]["name"] = "  "
    connector = fake.connector()
    original = connector.list({})
    module_id = fake.modules[("s3", "raw")]["cmid"]
    assert [e.path for e in original.entries] == \
        ["s2/y.txt", f"s3/Module {module_id}/z.txt", "week1/Daten & Skripte - Teil 1/x.csv"]


def test_the_top_section_is_the_root_and_a_section_named_like_a_path_stays_one_folder(fake):
    fake.put("a.txt", b"a")
    fake.put("Week 1/b.txt", b"b")
    contents = fake._contents()
    assert contents[0]["section"] == 0 and contents[0]["name"] == "General"
    assert {e.path for e in fake.connector().list({}).entries} == {"a.txt", "Week 1/b.txt"}


def test_a_module_moved_between_sections_moves_its_files(fake):
    fake.publish({"README.md": b"r", "week1/data/x.csv": b"1", "week1/data/y.csv": b"2"})
    before = listed(fake.connector())
    fake.section("week2")
    fake.modules[("week2", "data")] = fake.modules.pop(("week1", "data"))
    after = listed(fake.connector())
    assert set(after) == {"README.md", "week2/data/x.csv", "week2/data/y.csv"}
    assert after["week2/data/x.csv"].version == before["week1/data/x.csv"].version


def test_a_renamed_file_is_a_new_path_and_the_old_one_is_gone(fake):
    fake.publish({"w/data/old name.csv": b"1", "w/data/other.csv": b"2"})
    before = listed(fake.connector())
    files = fake.modules[("w", "data")]["files"]
    files[("/", "new name.csv")] = files.pop(("/", "old name.csv"))
    after = listed(fake.connector())
    assert set(after) == {"w/data/new name.csv", "w/data/other.csv"}
    assert after["w/data/other.csv"].version == before["w/data/other.csv"].version


def test_one_changed_file_downloads_one_file(fake, make_config):
    from f2git.snapshot import sync_course
    fake.publish({"README.md": b"r", "w/data/a.csv": b"1", "w/data/b.csv": b"2", "w/data/c.csv": b"3"})
    config = make_config({"c1": fake.course_table()}, env=fake.env)
    first = sync_course(config, config.courses["c1"], connector=fake.connector())
    assert first.ok and first.added == 4, first.error
    assert len(fake.downloads) == 4
    fake.downloads.clear()
    fake.put("w/data/b.csv", b"2, edited")  # the folder's revision changes, its other files do not
    second = sync_course(config, config.courses["c1"], connector=fake.connector())
    assert second.ok and (second.added, second.modified, second.deleted) == (0, 1, 0), second.error
    assert fake.downloads == ["/b.csv"]


def test_renaming_the_section_holding_most_files_is_stopped_by_the_mass_delete_guard(fake, make_config):
    from f2git.snapshot import sync_course
    fake.publish({"README.md": b"r", **{f"Topic 1/sheet{i}.ipynb": b"{}" for i in range(6)}})
    config = make_config({"c1": fake.course_table()}, env=fake.env)
    assert sync_course(config, config.courses["c1"], connector=fake.connector()).ok
    fake.sections["Week 1"] = fake.sections.pop("Topic 1")
    fake.modules = {("Week 1" if section == "Topic 1" else section, name): module
                    for (section, name), module in fake.modules.items()}
    refused = sync_course(config, config.courses["c1"], connector=fake.connector())
    assert not refused.ok and "would delete 6 of 7 files" in refused.error
    moved = sync_course(config, config.courses["c1"], connector=fake.connector(), allow_mass_delete=True)
    assert moved.ok and (moved.added, moved.deleted) == (6, 6)


def test_folder_option_selects_a_section_or_a_folder_as_the_root(fake):
    fake.publish({"README.md": b"r", "Woche 1/intro.ipynb": b"{}", "Woche 1/data/x.csv": b"1",
                  "Woche 1/data/raw/y.csv": b"2", "Woche 2/z.txt": b"z"})
    assert set(listed(fake.connector(folder="Woche 1"))) == {"intro.ipynb", "data/x.csv", "data/raw/y.csv"}
    connector = fake.connector(folder="/Woche 1/data/raw/")
    assert set(listed(connector)) == {"y.csv"}
    assert read_all(connector, listed(connector)["y.csv"]) == b"2"


# --- errors -----------------------------------------------------------------------------------

@pytest.mark.parametrize("code, kind, words", [
    ("invalidtoken", AuthError, "rejected the token"),
    ("accessexception", AuthError, "core_course_get_contents"),
    ("errorcoursecontextnotvalid", AuthError, "cannot open the course"),
    ("servicenotavailable", SourceError, "enable web services"),
    ("invalidrecord", SourceError, "course does not exist"),
    ("invalidparameter", SourceError, "invalidparameter"),
])
def test_moodle_errors_in_http_200_become_clear_messages(fake, code, kind, words):
    fake.publish({"a.txt": b"a"})
    fake.injected = [FakeMoodle._json(ws.error(code))]
    with pytest.raises(kind) as caught:
        fake.connector().list({})
    assert words in str(caught.value) and str(caught.value).startswith("Moodle")
    assert TOKEN not in str(caught.value)
    if kind is AuthError:
        assert "$MOODLE_TOKEN" in str(caught.value)


@pytest.mark.parametrize("status", [429, 503])
def test_throttling_and_unavailability_are_retried_after_retry_after(fake, status):
    fake.publish({"a.txt": b"a", "b.txt": b"b"})
    fake.injected = [(status, {"Retry-After": "7"}, "busy")] * 2
    connector = fake.connector()
    assert set(listed(connector)) == {"a.txt", "b.txt"}
    assert len(connector.sleeps) == 2 and min(connector.sleeps) >= 7


def test_a_login_page_instead_of_json_is_a_clear_error_and_gets_no_token(fake):
    fake.publish({"a.txt": b"a"})
    fake.login_page = True
    with pytest.raises(SourceError, match="HTML page instead of JSON.*login page"):
        fake.connector().list({})
    followed = [call.request for call in fake.mock.calls if "login/index.php" in call.request.url]
    assert followed and all(TOKEN not in (r.body or "") and TOKEN not in r.url for r in followed)


def test_a_login_page_answered_directly_is_a_clear_error(fake):
    fake.publish({"a.txt": b"a"})
    fake.injected = [(200, {"Content-Type": "text/html; charset=utf-8"}, "<html><body>Login</body></html>")]
    with pytest.raises(SourceError, match="HTML page instead of JSON"):
        fake.connector().list({})


def test_the_token_travels_in_post_bodies_never_in_a_url_or_a_log_line(fake, caplog):
    fake.publish({"w/data/x.csv": b"1"})
    caplog.set_level(logging.DEBUG)
    connector = fake.connector()
    entry = listed(connector)["w/data/x.csv"]
    assert read_all(connector, entry) == b"1"
    requests_made = [call.request for call in fake.mock.calls]
    assert requests_made and all(TOKEN not in r.url for r in requests_made)
    assert all(r.method == "POST" for r in requests_made)
    assert TOKEN not in caplog.text
    assert TOKEN not in json.dumps([e.ref for e in connector.list({}).entries])


def test_a_download_with_a_rejected_token_is_an_auth_error_without_the_token(fake):
    fake.publish({"w/data/x.csv": b"12345"})
    connector = fake.connector()
    entry = listed(connector)["w/data/x.csv"]
    connector.session  # the listing's token, then a revoked one
    connector._token = "0badc0ffee0badc0ffee0badc0ffee00"
    with pytest.raises(AuthError) as caught:
        read_all(connector, entry)
    assert "rejected the token" in str(caught.value) and "0badc0ffee" not in str(caught.value)


def test_a_download_redirected_to_another_host_gets_no_token(fake):
    store = "https://objects.example.net"
    fake.publish({"w/data/x.csv": b"payload"})
    connector = fake.connector()
    entry = listed(connector)["w/data/x.csv"]
    fake.mock.replace(responses.POST, re.compile(rf"{re.escape(BASE)}/webservice/pluginfile\.php/.*"),
                      status=307, headers={"Location": f"{store}/bucket/x.csv?X-Amz-Signature=abc"})
    fake.mock.add(responses.GET, f"{store}/bucket/x.csv", body=b"payload")
    assert read_all(connector, entry) == b"payload"
    (to_store,) = [c.request for c in fake.mock.calls if c.request.url.startswith(store)]
    assert to_store.method == "GET" and not to_store.body and TOKEN not in to_store.url


def test_a_failed_download_names_the_file_host_path_but_not_the_token(fake):
    fake.publish({"w/data/x.csv": b"1"})
    connector = fake.connector()
    entry = listed(connector)["w/data/x.csv"]
    fake.modules[("w", "data")]["files"].clear()
    with pytest.raises(SourceError) as caught:
        read_all(connector, entry)
    assert "404" in str(caught.value) and TOKEN not in str(caught.value) and "token=" not in str(caught.value)


# --- configuration ------------------------------------------------------------------------

def test_config_table_builds_validated_options(tmp_path):
    table = {"courses": {"da101": {"source": "moodle", "url": BASE, "course_id": COURSE,
                                   "token_env": "MOODLE_TOKEN", "folder": "Woche 1"}}}
    config = parse(table, tmp_path / "f2git.toml", {"MOODLE_TOKEN": TOKEN})
    options = config.courses["da101"].options
    assert (options.url, options.course_id, options.folder) == (BASE, COURSE, "Woche 1")
    with pytest.raises(ConfigError, match="MOODLE_TOKEN"):
        parse(table, tmp_path / "f2git.toml", {})
    for bad, key in (({"url": f"{BASE}/webservice/rest/server.php"}, "url"), ({"course_id": 0}, "course_id"),
                     ({"url": "moodle.example.edu"}, "url")):
        broken = {"courses": {"da101": {**table["courses"]["da101"], **bad}}}
        with pytest.raises(ConfigError, match=key):
            parse(broken, tmp_path / "f2git.toml", {"MOODLE_TOKEN": TOKEN})


# --- end to end: a real f2git server ----------------------------------------------------------

def test_the_served_course_shows_withheld_counts_and_the_next_release_but_no_names_or_token(
        fake, tmp_path, monkeypatch):
    """Sync through a real `f2git serve`: the dashboard's course page counts the modules withheld
    for rules f2git cannot check and names the next release; no page, status file, metric or
    commit holds the token or a withheld file's name."""
    import subprocess
    import time

    from f2git.store import CourseRepo
    from tests.serverhelpers import RunningServer, config_factory

    fake.mock.add_passthru("http://127.0.0.1")
    monkeypatch.setenv("MOODLE_TOKEN", TOKEN)
    opens = int(time.time()) + 6 * 3600  # the server's connector reads the real clock
    fake.publish({"README.md": b"# Kurs\n", "Woche 1/intro.ipynb": b"{}"})
    fake.put(f"Woche 1/Bonus/{SECRET_NAME}", b"x", availability=availability(ws.tree("&", ws.grade())))
    fake.put(f"Woche 1/Gruppe/{SECRET_NAME}", b"x", availability=availability(ws.tree("&", ws.group())))
    fake.put(f"Woche 2/Blatt/{SECRET_NAME}", b"x", availability=availability(ws.tree("&", ws.date(">=", opens))))
    make = config_factory(tmp_path, {"da101": {**fake.course_table(), "schedule": 0}}, env=fake.env,
                          refresh_ttl=0)
    with RunningServer(make) as server:
        code, answer = server.post_json("/api/courses/da101/refresh")
        assert code == 200 and answer.get("ok", True), answer
        page = server.request("GET", "/courses/da101")[2].decode()
        assert "1 × grade restriction" in page and "1 × group restriction" in page
        assert "Next release in the source" in page
        assert datetime.fromtimestamp(opens, timezone.utc).isoformat(timespec="seconds") in page
        repo = CourseRepo.for_course(server.config, "da101")
        assert sorted(repo.files(repo.head())) == ["README.md", "Woche 1/intro.ipynb"]
        everything = subprocess.run(["git", "--git-dir", str(repo.path), "cat-file", "--batch-all-objects",
                                     "--batch"], check=True, capture_output=True).stdout.decode(errors="replace")
        status_file = (tmp_path / "data" / "status" / "da101.json").read_text()
        metrics_status, _, metrics_body = server.request("GET", "/metrics")
        metrics = metrics_body.decode()
        assert metrics_status == 200 and "f2git_" in metrics
        api = json.dumps(server.get_json("/api/courses/da101"))
        for text in (page, everything, status_file, metrics, api):
            assert TOKEN not in text and SECRET_NAME not in text
        assert json.loads(status_file)["withheld"] == {"grade restriction": 1, "group restriction": 1}


# --- garbled answers ------------------------------------------------------------------------

def _garble(fake, mutate):
    contents = fake._contents()
    mutate(contents)
    fake.injected = [FakeMoodle._json(contents)]


GARBLED = {
    "a section without modules": lambda c: c.clear() or c.append({"courses": []}),
    "modules not a list": lambda c: c[1].update(modules={"a": 1}),
    "module without modname": lambda c: c[1]["modules"][0].pop("modname"),
    "contents not a list": lambda c: c[1]["modules"][0].update(contents=7),
    "file without filename": lambda c: c[1]["modules"][0]["contents"][0].pop("filename"),
    "fileurl not a URL": lambda c: c[1]["modules"][0]["contents"][0].update(fileurl={"x": 1}),
    "fileurl relative": lambda c: c[1]["modules"][0]["contents"][0].update(fileurl="/pluginfile.php/1/a"),
    "visible not a number": lambda c: c[1]["modules"][0].update(visible="yes"),
    "availability not a tree": lambda c: c[1]["modules"][0].update(availability="[1, 2]"),
}


@pytest.mark.parametrize("case", sorted(GARBLED))
def test_garbled_contents_are_a_source_error_or_withhold_never_a_crash(fake, case):
    fake.publish({"README.md": b"r", "w/data/x.csv": b"1"})
    _garble(fake, GARBLED[case])
    try:
        listing = fake.connector().list({})
    except SourceError as error:
        assert str(error).startswith("Moodle") and TOKEN not in str(error)
    else:  # only a restriction f2git cannot read may instead withhold the module
        assert [e.path for e in listing.entries] == ["README.md"] and listing.withheld


@pytest.mark.parametrize("answer", [
    {"courses": "none"}, {"courses": [{"assignments": [{"name": "x"}]}]}, ["not", "an", "object"]])
def test_garbled_assignments_are_a_source_error(fake, answer):
    fake.publish({"README.md": b"r"})
    fake.assignment("w", "Blatt 1", {"a.ipynb": b"{}"})
    fake.canned["mod_assign_get_assignments"] = FakeMoodle._json(answer)
    with pytest.raises(SourceError, match="unexpected shape"):
        fake.connector().list({})


def test_assignments_moodle_will_not_show_for_the_course_fail_the_listing_instead_of_going_missing(fake):
    fake.publish({"README.md": b"r"})
    fake.assignment("w", "Blatt 1", {"a.ipynb": b"{}"})
    fake.canned["mod_assign_get_assignments"] = FakeMoodle._json({"courses": [], "warnings": [
        {"item": "course", "itemid": COURSE, "warningcode": "1",
         "message": "No access rights in course context Course or activity not accessible. (Not enrolled)"}]})
    with pytest.raises(SourceError, match="mod_assign_get_assignments cannot read course 4711.*Not enrolled"):
        fake.connector().list({})


@pytest.mark.parametrize("state", ['"{not json"', '{"section": "x"}', "[1]"])
def test_a_garbled_course_state_is_a_source_error(fake, state):
    fake.publish({"README.md": b"r", "w/x.txt": b"x"})
    fake.canned["core_courseformat_get_state"] = (200, {"Content-Type": "application/json"}, state)
    with pytest.raises(SourceError, match="unexpected shape"):
        fake.connector().list({})


def test_a_moodle_error_that_repeats_the_token_is_redacted(fake):
    fake.publish({"a.txt": b"a"})
    echo = {"exception": "invalid_parameter_exception", "errorcode": "invalidparameter",
            "message": f"Invalid parameter value detected (wstoken={TOKEN})", "debuginfo": TOKEN}
    fake.injected = [FakeMoodle._json(echo)]
    with pytest.raises(SourceError) as caught:
        fake.connector().list({})
    assert "invalidparameter" in str(caught.value) and TOKEN not in str(caught.value)
    assert "wstoken=***" in str(caught.value)


def test_a_throttled_download_is_retried_after_retry_after(fake):
    fake.publish({"w/data/x.csv": b"payload"})
    connector = fake.connector()
    entry = listed(connector)["w/data/x.csv"]
    served = fake._pluginfile
    answers = [(503, {"Retry-After": "5"}, "Service Unavailable"), (429, {"Retry-After": "9"}, "slow down")]
    fake.mock.remove(responses.POST, re.compile(rf"{re.escape(BASE)}/webservice/pluginfile\.php/.*"))
    fake.mock.add_callback(responses.POST, re.compile(rf"{re.escape(BASE)}/webservice/pluginfile\.php/.*"),
                           callback=lambda request: answers.pop(0) if answers else served(request))
    assert read_all(connector, entry) == b"payload"
    assert connector.sleeps == [5, 9]
