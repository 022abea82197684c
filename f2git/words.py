"""Every sentence f2git says to students, in English and German, and which one a browser wants.

One catalogue for every page a student reads (the front door, LTI refusals): a key names a
sentence, `WORDS[key]` holds it per language, with `{name}` fields filled by `say`. English is
the fallback. Stud.IP and ILIAS are German-speaking LMSes, hence German first after English.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

LANGUAGES = ("en", "de")
DEFAULT = "en"

WORDS: dict[str, dict[str, str]] = {
    # the page frame
    "brand": {"en": "Course files", "de": "Kursdateien"},
    "continue": {"en": "Continue to JupyterHub", "de": "Weiter zu JupyterHub"},
    "try_again": {"en": "Try again", "de": "Erneut versuchen"},
    "reason": {"en": "Reason given:", "de": "Angegebener Grund:"},
    # not a member of the course
    "refused.title": {"en": "You are not in this course", "de": "Sie sind nicht in diesem Kurs"},
    "refused.text": {
        "en": "Your account {user} may not open the files of course {course}.",
        "de": "Ihr Konto {user} darf die Dateien des Kurses {course} nicht öffnen."},
    "refused.todo": {
        "en": "If you joined the course recently, try again in a few minutes. If it still does not work,"
              " ask your instructor to add you to the course.",
        "de": "Wenn Sie dem Kurs gerade erst beigetreten sind, versuchen Sie es in ein paar Minuten erneut."
              " Klappt es dann noch nicht, bitten Sie Ihre Lehrperson, Sie in den Kurs aufzunehmen."},
    # no such course
    "missing.title": {"en": "There is no course with this name", "de": "Einen Kurs mit diesem Namen gibt es nicht"},
    "missing.text": {
        "en": "This link names the course {course}, which does not exist here. It may have been renamed.",
        "de": "Dieser Link nennt den Kurs {course}, den es hier nicht gibt. Vielleicht wurde er umbenannt."},
    "missing.todo": {
        "en": "Open the link again from your course page in the LMS, or ask your instructor for the new link.",
        "de": "Öffnen Sie den Link erneut von Ihrer Kursseite im LMS aus, oder bitten Sie Ihre Lehrperson"
              " um den neuen Link."},
    # a course whose configuration is broken
    "broken.title": {"en": "This course is not available right now",
                     "de": "Dieser Kurs ist gerade nicht verfügbar"},
    "broken.text": {
        "en": "The course {course} is set up wrongly on this server, so its files cannot be handed out.",
        "de": "Der Kurs {course} ist auf diesem Server falsch eingerichtet, daher können seine Dateien"
              " nicht ausgegeben werden."},
    "broken.todo": {"en": "Please tell your instructor; the administrators have been told in the log.",
                    "de": "Bitte sagen Sie Ihrer Lehrperson Bescheid; die Administration sieht den Fehler im Protokoll."},
    # the source is failing
    "failing.title": {"en": "The newest course files could not be fetched",
                      "de": "Die neuesten Kursdateien konnten nicht abgerufen werden"},
    "failing.text": {
        "en": "The place where your instructor publishes the files of {course} is not answering as it should."
              " You get the snapshot of {date}: files released since then are missing.",
        "de": "Die Stelle, an der Ihre Lehrperson die Dateien von {course} veröffentlicht, antwortet nicht wie"
              " erwartet. Sie erhalten den Stand vom {date}: seitdem freigegebene Dateien fehlen."},
    "failing.todo": {
        "en": "Continue to work with these files. Click the course link again later to get the newest ones;"
              " your own changes are kept.",
        "de": "Arbeiten Sie mit diesen Dateien weiter. Klicken Sie später erneut auf den Kurslink, um die neuesten"
              " zu erhalten; Ihre eigenen Änderungen bleiben erhalten."},
    "empty.title": {"en": "This course has no files yet", "de": "Dieser Kurs hat noch keine Dateien"},
    "empty.text": {
        "en": "No files of {course} could be fetched yet, so there is nothing to open.",
        "de": "Von {course} konnten noch keine Dateien abgerufen werden, daher gibt es nichts zu öffnen."},
    "empty.todo": {"en": "Try again later. If it stays like this, tell your instructor.",
                   "de": "Versuchen Sie es später erneut. Bleibt es so, sagen Sie Ihrer Lehrperson Bescheid."},
    # held by the instructor
    "held.title": {"en": "Your instructor has paused updates of this course",
                   "de": "Ihre Lehrperson hat die Aktualisierung dieses Kurses angehalten"},
    "held.text": {
        "en": "New files of {course} are not handed out for now. You get the snapshot your instructor chose,"
              " of {date}.",
        "de": "Neue Dateien von {course} werden vorerst nicht ausgegeben. Sie erhalten den von Ihrer Lehrperson"
              " gewählten Stand vom {date}."},
    "held.todo": {
        "en": "Continue to work with these files; your own changes are kept.",
        "de": "Arbeiten Sie mit diesen Dateien weiter; Ihre eigenen Änderungen bleiben erhalten."},
    # overloaded
    "busy.title": {"en": "Too many people are opening course files right now",
                   "de": "Gerade öffnen zu viele Personen Kursdateien"},
    "busy.text": {
        "en": "The course file server is fully busy, so your files would take long to arrive.",
        "de": "Der Server für die Kursdateien ist voll ausgelastet, Ihre Dateien kämen nur sehr langsam an."},
    "busy.todo": {"en": "Please try again in a minute.", "de": "Bitte versuchen Sie es in einer Minute erneut."},
    "hub_busy.title": {"en": "JupyterHub is not answering right now", "de": "JupyterHub antwortet gerade nicht"},
    "hub_busy.text": {
        "en": "JupyterHub, which signs you in, is overloaded or restarting.",
        "de": "JupyterHub, über das Sie sich anmelden, ist überlastet oder startet gerade neu."},
    # not signed in (no sign-in page to send the browser to)
    "login.title": {"en": "Please sign in", "de": "Bitte melden Sie sich an"},
    "login.text": {"en": "This link works only for people signed in to this server.",
                   "de": "Dieser Link funktioniert nur für Personen, die an diesem Server angemeldet sind."},
    "login.todo": {"en": "Open the link from your course page in the LMS or on JupyterHub.",
                   "de": "Öffnen Sie den Link von Ihrer Kursseite im LMS oder in JupyterHub aus."},
    # a link whose file or app is wrong
    "badlink.title": {"en": "This link is broken", "de": "Dieser Link ist fehlerhaft"},
    "badlink.text": {"en": "The link to {course} cannot be opened: {detail}.",
                     "de": "Der Link zu {course} lässt sich nicht öffnen: {detail}."},
    "badlink.todo": {"en": "Ask your instructor for a corrected link.",
                     "de": "Bitten Sie Ihre Lehrperson um einen korrigierten Link."},
    # the dashboard's count
    "opened_by": {"en": "opened by {count} student{s} this week", "de": "diese Woche von {count} Studierenden geöffnet"},
}

MONTHS = {"en": ("January", "February", "March", "April", "May", "June", "July", "August", "September",
                 "October", "November", "December"),
          "de": ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September",
                 "Oktober", "November", "Dezember")}

_TAG = re.compile(r"^\s*([A-Za-z]{1,8})(?:-[A-Za-z0-9]{1,8})*\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*$")


def language(accept_language: str | None) -> str:
    """The first language of LANGUAGES the browser ranks highest (RFC 9110 q-values), else English."""
    ranked: list[tuple[float, int, str]] = []
    for order, item in enumerate((accept_language or "").split(",")):
        match = _TAG.match(item)
        if not match:
            continue
        try:
            weight = float(match.group(2)) if match.group(2) is not None else 1.0
        except ValueError:
            continue
        primary = match.group(1).lower()
        if weight > 0 and (primary in LANGUAGES or primary == "*"):
            ranked.append((-weight, order, DEFAULT if primary == "*" else primary))
    return min(ranked)[2] if ranked else DEFAULT


def say(lang: str, key: str, **values: object) -> str:
    """The sentence `key` in `lang` (English if it has none), with `values` filled in."""
    entry = WORDS[key]
    return entry.get(lang, entry[DEFAULT]).format(**values)


def when(lang: str, epoch: float) -> str:
    """A moment in UTC as that language writes it: "3 December 2026, 09:15 UTC"."""
    moment = datetime.fromtimestamp(epoch, timezone.utc)
    month = MONTHS.get(lang, MONTHS[DEFAULT])[moment.month - 1]
    day = f"{moment.day}." if lang == "de" else f"{moment.day}"
    return f"{day} {month} {moment.year}, {moment:%H:%M} UTC"
