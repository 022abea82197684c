"""f2git as an LTI 1.3 tool: the tool's keys, the launch, deep linking, NRPS rosters."""
from __future__ import annotations

from f2git import words


class Refused(Exception):
    """A login, launch or pick f2git will not act on: an HTTP `status` and a `topic` of the words
    catalogue (f2git.words: `<topic>.text`, and `.title`/`.todo` where it has its own), filled with
    `values`. `todo` names a shared sentence of what to do; `reason`, words from elsewhere (a
    library's, a key set's), is shown as given. `message` is the English sentence, for the log."""

    def __init__(self, status: int, topic: str, *, todo: str | None = None, reason: str | None = None,
                 **values: object):
        self.status = status
        self.topic = topic
        self.todo = f"{topic}.todo" if f"{topic}.todo" in words.WORDS else todo
        self.reason = reason
        self.values = values
        said = [words.say("en", f"{topic}.text", **values)]
        if reason:
            said.append(f"({reason})")
        if self.todo:
            said.append(words.say("en", self.todo, **values))
        self.message = " ".join(said)
        super().__init__(self.message)
