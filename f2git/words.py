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
    # after a retract (the door says it once per browser; pullhook's students need not know)
    "rewritten.title": {"en": "Your instructor took back files of this course",
                        "de": "Ihre Lehrperson hat Dateien dieses Kurses zurückgenommen"},
    "rewritten.text": {
        "en": "On {date}, files of {course} that had been released by mistake were taken back, and every snapshot"
              " since {since} was replaced by one without them. If you first opened this course between {since}"
              " and {date}, your copy began at a snapshot that no longer exists and cannot be updated in place.",
        "de": "Am {date} wurden versehentlich freigegebene Dateien von {course} zurückgenommen, und jeder Stand seit"
              " dem {since} wurde durch einen ohne sie ersetzt. Wenn Sie diesen Kurs zum ersten Mal zwischen dem"
              " {since} und dem {date} geöffnet haben, beginnt Ihre Kopie bei einem Stand, den es nicht mehr gibt,"
              " und lässt sich nicht an Ort und Stelle aktualisieren."},
    "rewritten_root.text": {
        "en": "On {date}, files of {course} that had been released by mistake were taken back, and every snapshot"
              " was replaced by one without them. If you opened this course before {date}, your copy cannot be"
              " updated in place.",
        "de": "Am {date} wurden versehentlich freigegebene Dateien von {course} zurückgenommen, und jeder Stand wurde"
              " durch einen ohne sie ersetzt. Wenn Sie diesen Kurs vor dem {date} geöffnet haben, lässt sich Ihre"
              " Kopie nicht an Ort und Stelle aktualisieren."},
    "rewritten.todo": {
        "en": "In that case choose “Fresh copy”: your folder is kept beside it as a backup, with your own changes,"
              " and you get the corrected files. Otherwise continue as usual; your own changes are kept.",
        "de": "Wählen Sie in diesem Fall „Neue Kopie“: Ihr Ordner bleibt daneben als Sicherung mit Ihren"
              " Änderungen erhalten, und Sie erhalten die korrigierten Dateien. Andernfalls machen Sie wie gewohnt"
              " weiter; Ihre Änderungen bleiben erhalten."},
    "fresh_copy": {"en": "Fresh copy (keep mine as a backup)", "de": "Neue Kopie (meine als Sicherung behalten)"},
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
    # -- LTI pages (f2git.server.lti): a topic has .text, and .title/.todo where the shared ones do not fit --
    # titles by HTTP status, and what to do when the topic says nothing of its own
    "lti.unusable.title": {"en": "This launch cannot be used", "de": "Dieser Aufruf aus dem LMS ist nicht verwendbar"},
    "lti.refused.title": {"en": "This launch was refused", "de": "Dieser Aufruf aus dem LMS wurde abgelehnt"},
    "lti.missing.title": {"en": "Not found", "de": "Nicht gefunden"},
    "lti.failed.title": {"en": "Something went wrong", "de": "Etwas ist schiefgegangen"},
    "lti.relaunch.todo": {"en": "Go back to your course in the LMS and click the link again.",
                          "de": "Gehen Sie zurück zu Ihrem Kurs im LMS und klicken Sie den Link erneut an."},
    "lti.from_lms.todo": {"en": "Start from a link in your LMS.", "de": "Beginnen Sie mit einem Link in Ihrem LMS."},
    "lti.admin.todo": {"en": "Tell your hub admin; this is a matter of how f2git and the LMS are set up.",
                       "de": "Sagen Sie der Hub-Administration Bescheid; es liegt an der Einrichtung von f2git"
                             " und dem LMS."},
    "lti.instructor.todo": {"en": "Tell your instructor so they can replace the link.",
                            "de": "Sagen Sie Ihrer Lehrperson Bescheid, damit sie den Link ersetzt."},
    "lti.error.text": {"en": "f2git could not handle this request (HTTP {code}).",
                       "de": "f2git konnte diese Anfrage nicht bearbeiten (HTTP {code})."},
    # the login
    "lti.login_incomplete.text": {
        "en": "This login request lacks iss or login_hint.",
        "de": "Dieser Anmeldeanfrage fehlen iss oder login_hint."},
    "lti.unknown_platform.text": {
        "en": "This launch comes from a platform that is not registered with f2git (unknown issuer or client id).",
        "de": "Dieser Aufruf kommt von einer Plattform, die bei f2git nicht registriert ist (unbekannter"
              " Aussteller oder unbekannte Client-ID)."},
    "lti.unknown_platform.todo": {
        "en": "Ask your hub admin to add it to [[lti.platforms]].",
        "de": "Bitten Sie die Hub-Administration, sie in [[lti.platforms]] einzutragen."},
    "lti.ambiguous.text": {
        "en": "Several registrations share this issuer and the login named no client_id.",
        "de": "Mehrere Registrierungen teilen sich diesen Aussteller, und die Anmeldung nennt keine client_id."},
    "lti.ambiguous.todo": {"en": "Ask your hub admin to configure the LMS to send client_id.",
                           "de": "Bitten Sie die Hub-Administration, das LMS so einzurichten, dass es die"
                                 " client_id mitschickt."},
    "lti.foreign_target.text": {
        "en": "This login asks to open a page that is not f2git's (target_link_uri).",
        "de": "Diese Anmeldung will eine Seite öffnen, die nicht zu f2git gehört (target_link_uri)."},
    "lti.stale.text": {
        "en": "This launch does not belong to a login f2git started, or was already used or took too long.",
        "de": "Dieser Aufruf gehört zu keiner Anmeldung, die f2git begonnen hat, oder er wurde schon verwendet"
              " oder hat zu lange gedauert."},
    "lti.unbound.text": {
        "en": "This launch did not come back to the browser that started it (the login cookie is missing).",
        "de": "Dieser Aufruf kam nicht zu dem Browser zurück, der ihn begonnen hat (das Anmelde-Cookie fehlt)."},
    "lti.unbound.todo": {
        "en": "If your browser blocks third-party cookies, allow them for this site or open the link in a new tab.",
        "de": "Wenn Ihr Browser Drittanbieter-Cookies sperrt, erlauben Sie sie für diese Seite oder öffnen Sie"
              " den Link in einem neuen Tab."},
    "lti.signing_in": {"en": "Signing in…", "de": "Anmeldung läuft…"},
    "lti.storage_failed": {"en": "The LMS could not keep the sign-in:", "de": "Das LMS konnte die Anmeldung nicht"
                                                                           " festhalten:"},
    "lti.not_a_launch.text": {"en": "The LTI launch URL takes the platform's form post.",
                              "de": "Die LTI-Aufrufadresse nimmt nur das Formular der Plattform an."},
    # the id_token
    "lti.no_token.text": {"en": "The launch carried no id_token, or one far too long to be one.",
                          "de": "Der Aufruf enthielt kein id_token oder eines, das viel zu lang dafür ist."},
    "lti.not_jwt.text": {"en": "The launch's id_token is not a JSON Web Token.",
                         "de": "Das id_token des Aufrufs ist kein JSON Web Token."},
    "lti.other_platform.text": {
        "en": "This launch comes from another platform than the login f2git started.",
        "de": "Dieser Aufruf kommt von einer anderen Plattform als die Anmeldung, die f2git begonnen hat."},
    "lti.audience.text": {
        "en": "This launch is addressed to another tool (its audience is not one of f2git's client ids for"
              " this platform).",
        "de": "Dieser Aufruf ist an ein anderes Tool gerichtet (seine Zielgruppe ist keine der Client-IDs von"
              " f2git für diese Plattform)."},
    "lti.alg.text": {"en": "The launch was not signed with RS256, the only algorithm LTI 1.3 allows.",
                     "de": "Der Aufruf wurde nicht mit RS256 signiert, dem einzigen Verfahren, das LTI 1.3"
                           " erlaubt."},
    "lti.no_kid.text": {"en": "The launch's signature names no key (no kid).",
                        "de": "Die Signatur des Aufrufs nennt keinen Schlüssel (keine kid)."},
    "lti.keyset.text": {"en": "The launch could not be checked: f2git cannot read the platform's keys.",
                        "de": "Der Aufruf ließ sich nicht prüfen: f2git kann die Schlüssel der Plattform nicht"
                              " lesen."},
    "lti.keyset.todo": {"en": "Try again in a few minutes. If it stays like this, tell your hub admin.",
                        "de": "Versuchen Sie es in ein paar Minuten erneut. Bleibt es so, sagen Sie der"
                              " Hub-Administration Bescheid."},
    "lti.expired.text": {"en": "This launch has expired.", "de": "Dieser Aufruf ist abgelaufen."},
    "lti.signature.text": {"en": "The launch's signature is not the platform's.",
                           "de": "Die Signatur des Aufrufs stammt nicht von der Plattform."},
    "lti.invalid.text": {"en": "The launch's token does not hold what LTI 1.3 requires.",
                         "de": "Das Token des Aufrufs erfüllt nicht, was LTI 1.3 verlangt."},
    "lti.iat.text": {"en": "The launch's issue time is not plausible.",
                     "de": "Der Ausstellungszeitpunkt des Aufrufs ist nicht plausibel."},
    "lti.iat.todo": {"en": "Ask your hub admin to check the platform's clock.",
                     "de": "Bitten Sie die Hub-Administration, die Uhr der Plattform zu prüfen."},
    "lti.azp.text": {"en": "The launch's authorised party (azp) is not f2git's client id.",
                     "de": "Die berechtigte Partei (azp) des Aufrufs ist nicht die Client-ID von f2git."},
    "lti.nonce.text": {"en": "The launch does not answer the login f2git started (nonce differs).",
                       "de": "Der Aufruf passt nicht zu der Anmeldung, die f2git begonnen hat (die Nonce"
                             " weicht ab)."},
    "lti.version.text": {"en": "This is not an LTI 1.3.0 launch.", "de": "Dies ist kein Aufruf nach LTI 1.3.0."},
    "lti.message_type.text": {"en": "f2git does not handle LTI messages of type {type}.",
                              "de": "f2git bearbeitet keine LTI-Nachrichten vom Typ {type}."},
    "lti.no_deployment.text": {"en": "The launch names no deployment.",
                               "de": "Der Aufruf nennt kein Deployment."},
    "lti.deployment.text": {"en": "The deployment {deployment} of this platform is not accepted by f2git.",
                            "de": "Das Deployment {deployment} dieser Plattform nimmt f2git nicht an."},
    "lti.deployment.todo": {"en": "Ask your hub admin to add it to deployment_ids.",
                            "de": "Bitten Sie die Hub-Administration, es in deployment_ids einzutragen."},
    "lti.no_roles.text": {"en": "The launch carries no roles claim.", "de": "Der Aufruf enthält keine Rollen (roles)."},
    "lti.sub.text": {"en": "The launch's subject (sub) is not a string.",
                     "de": "Das Subjekt (sub) des Aufrufs ist keine Zeichenkette."},
    "lti.no_link.text": {"en": "The launch names no resource link.", "de": "Der Aufruf nennt keinen Ressourcenlink."},
    "lti.no_return.text": {"en": "The deep-linking request names no deep_link_return_url.",
                           "de": "Die Deep-Linking-Anfrage nennt keine deep_link_return_url."},
    # which course a launch opens
    "lti.unserved.text": {"en": "f2git serves no course for this LMS course yet.",
                          "de": "f2git stellt für diesen LMS-Kurs noch keinen Kurs bereit."},
    "lti.unserved.todo": {"en": "Tell your instructor.", "de": "Sagen Sie Ihrer Lehrperson Bescheid."},
    "lti.off.text": {"en": "No f2git course serves this LMS course yet.",
                     "de": "Noch kein f2git-Kurs gehört zu diesem LMS-Kurs."},
    "lti.off.todo": {"en": "Ask your hub admin to add lti_contexts = [\"{context_key}\"] to the f2git course for it.",
                     "de": "Bitten Sie die Hub-Administration, lti_contexts = [\"{context_key}\"] im f2git-Kurs dafür"
                           " einzutragen."},
    "lti.filed.title": {"en": "Not connected yet", "de": "Noch nicht verbunden"},
    "lti.filed.text": {
        "en": "f2git has no course for \"{context}\" yet. Your request is filed: an f2git manager approves it on the"
              " dashboard (course \"{course}\", files from {source}).",
        "de": "f2git hat noch keinen Kurs für „{context}“. Ihre Anfrage ist eingereicht: Eine f2git-Verwaltung"
              " genehmigt sie im Dashboard (Kurs „{course}“, Dateien aus {source})."},
    "lti.filed.todo": {"en": "Open this link again once it is approved.",
                       "de": "Öffnen Sie diesen Link erneut, sobald sie genehmigt ist."},
    "lti.source_local": {"en": "a local upload folder ({path})", "de": "einem lokalen Upload-Ordner ({path})"},
    "lti.source_lms": {"en": "{source} course {course_id} at {url}", "de": "dem {source}-Kurs {course_id} unter {url}"},
    "lti.create_failed.text": {"en": "f2git could not create a course for this LMS course.",
                               "de": "f2git konnte für diesen LMS-Kurs keinen Kurs anlegen."},
    "lti.course_gone.text": {"en": "The course {course} this link opens is no longer served by f2git.",
                             "de": "Den Kurs {course}, den dieser Link öffnet, stellt f2git nicht mehr bereit."},
    "lti.other_context.text": {
        "en": "This link opens f2git course {course}, which does not belong to the LMS course you launched it from.",
        "de": "Dieser Link öffnet den f2git-Kurs {course}, der nicht zu dem LMS-Kurs gehört, aus dem Sie ihn"
              " aufgerufen haben."},
    "lti.other_context.todo": {"en": "Use the links in your own course.",
                               "de": "Verwenden Sie die Links in Ihrem eigenen Kurs."},
    "lti.file_gone.text": {"en": "The file {path} this link opens is not in course {course} any more.",
                           "de": "Die Datei {path}, die dieser Link öffnet, ist nicht mehr im Kurs {course}."},
    "lti.new_tab.title": {"en": "Your course files", "de": "Ihre Kursdateien"},
    "lti.new_tab.text": {"en": "{path} of course {course} opens in {app} in a new tab.",
                         "de": "{path} aus dem Kurs {course} öffnet sich in {app} in einem neuen Tab."},
    "lti.new_tab_folder.text": {"en": "The course folder of {course} opens in {app} in a new tab.",
                                "de": "Der Kursordner von {course} öffnet sich in {app} in einem neuen Tab."},
    "lti.new_tab.todo": {"en": "Inside the LMS's page there is too little room to work: use the button.",
                         "de": "Innerhalb der LMS-Seite ist zu wenig Platz zum Arbeiten: Nutzen Sie die"
                               " Schaltfläche."},
    "lti.new_tab.open": {"en": "Open in a new tab", "de": "In neuem Tab öffnen"},
    # deep linking: the picker
    "lti.learner_picker.text": {
        "en": "Only instructors can add f2git content to a course; your role in this course does not allow it.",
        "de": "Nur Lehrpersonen können f2git-Inhalte zu einem Kurs hinzufügen; Ihre Rolle in diesem Kurs"
              " erlaubt das nicht."},
    "lti.learner_picker.todo": {"en": "Open the links your instructor placed in the course.",
                                "de": "Öffnen Sie die Links, die Ihre Lehrperson in den Kurs gestellt hat."},
    "lti.no_links_here.text": {
        "en": "This place in the LMS accepts no LTI links (accept_types lacks ltiResourceLink), so f2git cannot"
              " add content here.",
        "de": "Diese Stelle im LMS nimmt keine LTI-Links an (accept_types enthält kein ltiResourceLink),"
              " daher kann f2git hier keine Inhalte hinzufügen."},
    "lti.no_links_here.todo": {"en": "Add f2git content from another place in your course.",
                               "de": "Fügen Sie f2git-Inhalte an einer anderen Stelle Ihres Kurses hinzu."},
    "lti.one_item.text": {"en": "This place in the LMS takes one item at a time.",
                          "de": "Diese Stelle im LMS nimmt jeweils nur ein Element an."},
    "lti.one_item.todo": {"en": "Go back and choose a single file or folder.",
                          "de": "Gehen Sie zurück und wählen Sie eine einzelne Datei oder einen Ordner."},
    "lti.picker_expired.text": {"en": "This picker has expired or was not opened by f2git.",
                                "de": "Diese Auswahl ist abgelaufen oder wurde nicht von f2git geöffnet."},
    "lti.picker_expired.todo": {"en": "Open it again from your LMS.",
                                "de": "Öffnen Sie sie erneut aus Ihrem LMS."},
    "lti.platform_gone.text": {"en": "The platform of this picker is no longer registered with f2git.",
                               "de": "Die Plattform dieser Auswahl ist bei f2git nicht mehr registriert."},
    "lti.picker_course.text": {
        "en": "Course {course} does not belong to the LMS course this picker was opened from.",
        "de": "Der Kurs {course} gehört nicht zu dem LMS-Kurs, aus dem diese Auswahl geöffnet wurde."},
    "lti.picker_app.text": {"en": "Choose one of the hub's apps ({apps}), not {app}.",
                            "de": "Wählen Sie eine der Apps des Hubs ({apps}), nicht {app}."},
    "lti.picker_path.text": {"en": "{path} is not in course {course}.", "de": "{path} ist nicht im Kurs {course}."},
    "lti.cross_site.text": {"en": "This form was sent from another site.",
                            "de": "Dieses Formular wurde von einer anderen Website abgeschickt."},
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
