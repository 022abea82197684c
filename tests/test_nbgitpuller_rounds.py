"""End to end: an instructor edits a released folder, students click nbgitpuller links.

Everything is real: the `local` source, the running f2git server (refresh_ttl = 0, so each
click refreshes; no sync is ever run by hand), git smart HTTP, and unmodified nbgitpuller 1.3
with its default shallow clone. Two students: Pat never touches anything and must always
have exactly the instructor's files; Sam edits, deletes and adds files and must never lose
an edit. nbgitpuller's rules (its `update()`): local changes are committed, then merged with
`-Xours` (the student's side wins a conflicting hunk, the instructor's other hunks still
arrive); files the student deleted are restored; a file the student modified but the
instructor deleted is kept; an untracked student file in the way of a new instructor file
is renamed to `name__<timestamp>.ext`.
"""
from __future__ import annotations

import re

import pytest

from tests.repohelpers import SourceFolder, Student, machine_git_config_ignored  # noqa: F401 (autouse)
from tests.serverhelpers import RunningServer, config_factory

COURSE = "cs101"


def lines(*items: str) -> str:
    return "".join(f"{item}\n" for item in items)


# A notebook-like file long enough that edits far apart are separate hunks.
EXERCISE = lines("# Exercise 1", "Compute the mean.", *[f"step {n}" for n in range(1, 21)], "# end")


@pytest.fixture
def course(tmp_path):
    instructor = SourceFolder(tmp_path / "released")
    instructor.write("README.md", lines("# CS 101", "Welcome."))
    instructor.write("week1/intro.ipynb", lines('{"cells": ["intro"]}'))
    instructor.write("week1/exercise.ipynb", EXERCISE)
    instructor.write("data/old.csv", lines("a,b", "1,2"))
    instructor.write("notes/tips.md", lines("Tip 1"))
    instructor.write("notes/faq.md", lines("Q: ?", "A: !"))
    courses = {COURSE: {"source": "local", "path": str(instructor.path), "schedule": 0}}
    with RunningServer(config_factory(tmp_path, courses, refresh_ttl=0, refresh_wait=30)) as server:
        yield instructor, server


def test_rounds_of_instructor_and_student_changes(course, tmp_path):
    instructor, server = course
    url = server.git_url(COURSE)
    assert not url.endswith(".git")  # links use the form without .git: the folder is named cs101
    pat = Student(url, tmp_path / "pat" / COURSE)
    sam = Student(url, tmp_path / "sam" / COURSE)

    def click_all() -> None:
        for student in (pat, sam):
            student.click()
        # Pat changed nothing: Pat's folder is exactly what the instructor released.
        assert pat.files() == instructor.files()
        assert pat.is_shallow() and sam.is_shallow()

    # Round 0: first click clones.
    click_all()
    assert sam.files() == instructor.files()

    # Round 1: the instructor adds and edits; Sam answers the exercise and adds own files.
    instructor.write("week2/lab.ipynb", lines('{"cells": ["lab"]}'))
    instructor.write("README.md", lines("# CS 101", "Welcome.", "Office hours: Mondays."))
    answered = EXERCISE.replace("step 4\n", "step 4: my answer is 42\n")
    sam.write("week1/exercise.ipynb", answered)
    sam.write("my_notes.txt", lines("remember the mean"))
    sam.write("week1/scratch.ipynb", lines('{"cells": ["mine"]}'))
    click_all()
    assert sam.files() == {**instructor.files(),
                           "week1/exercise.ipynb": answered,          # Sam's edit kept
                           "my_notes.txt": lines("remember the mean"),  # Sam's new files kept
                           "week1/scratch.ipynb": lines('{"cells": ["mine"]}')}

    # Round 2: both edit the exercise. Line 2 is a true conflict: Sam's line wins (-Xours).
    # The instructor's fix of the last line is a separate hunk and arrives.
    instructor.write("week1/exercise.ipynb", EXERCISE.replace("Compute the mean.", "Compute the median.")
                     .replace("# end", "# end of exercise 1"))
    answered = answered.replace("Compute the mean.", "Compute the mean (I prefer it).")
    sam.write("week1/exercise.ipynb", answered)
    click_all()
    assert sam.read("week1/exercise.ipynb") == answered.replace("# end", "# end of exercise 1")
    assert "median" not in sam.read("week1/exercise.ipynb")

    # Round 3: deletions. The instructor retracts data/old.csv (untouched by Sam: it goes),
    # notes/tips.md (edited by Sam: Sam's copy stays) and notes/faq.md (which Sam deleted
    # too: it stays gone). Sam deletes week1/intro.ipynb, which nbgitpuller restores.
    instructor.delete("data/old.csv")
    instructor.delete("notes/tips.md")
    instructor.delete("notes/faq.md")
    sam.write("notes/tips.md", lines("Tip 1", "Sam: and tip 2"))
    sam.delete("notes/faq.md")
    sam.delete("week1/intro.ipynb")
    click_all()
    assert not sam.exists("data/old.csv") and not sam.exists("notes/faq.md")
    assert sam.read("notes/tips.md") == lines("Tip 1", "Sam: and tip 2")
    assert sam.read("week1/intro.ipynb") == instructor.read("week1/intro.ipynb")
    assert sam.files() == {**instructor.files(), "week1/exercise.ipynb": answered.replace("# end", "# end of exercise 1"),
                           "my_notes.txt": lines("remember the mean"),
                           "week1/scratch.ipynb": lines('{"cells": ["mine"]}'),
                           "notes/tips.md": lines("Tip 1", "Sam: and tip 2")}

    # Round 4: renames and moves. The lab is renamed (Sam never opened it); the exercise,
    # which Sam answered, moves into a folder: git's rename detection carries Sam's answer
    # along to the new path; the README moves into docs/.
    exercise = sam.read("week1/exercise.ipynb")
    instructor.rename("week2/lab.ipynb", "week2/lab1.ipynb")
    instructor.rename("week1/exercise.ipynb", "week1/exercises/exercise1.ipynb")
    instructor.rename("README.md", "docs/README.md")
    click_all()
    assert not sam.exists("week2/lab.ipynb") and not sam.exists("week1/exercise.ipynb")
    assert not sam.exists("README.md")
    assert sam.read("week2/lab1.ipynb") == lines('{"cells": ["lab"]}')
    assert sam.read("week1/exercises/exercise1.ipynb") == exercise
    assert sam.read("docs/README.md") == instructor.read("docs/README.md")

    # Round 5: the instructor releases a file where Sam already created one of the same name
    # (untracked): Sam's file is renamed out of the way, the release arrives. Sam also adds a
    # line to the moved exercise while the instructor edits another part of it: both arrive.
    sam.write("week3/project.ipynb", lines('{"cells": ["Sam started early"]}'))
    instructor.write("week3/project.ipynb", lines('{"cells": ["project"]}'))
    exercise = exercise.replace("step 16\n", "step 16\nSam: checked\n")
    sam.write("week1/exercises/exercise1.ipynb", exercise)
    instructor.write("week1/exercises/exercise1.ipynb",
                     instructor.read("week1/exercises/exercise1.ipynb").replace("step 10\n", "step 10 (use numpy)\n"))
    click_all()
    assert sam.read("week3/project.ipynb") == lines('{"cells": ["project"]}')
    renamed = [path for path in sam.files() if re.fullmatch(r"week3/project__\d{14}\.ipynb", path)]
    assert len(renamed) == 1 and sam.read(renamed[0]) == lines('{"cells": ["Sam started early"]}')
    assert sam.read("week1/exercises/exercise1.ipynb") == exercise.replace("step 10\n", "step 10 (use numpy)\n")

    # Round 6: nothing changes; a click changes nothing for anyone.
    before = sam.files()
    click_all()
    assert sam.files() == before
