"""f2git as an LTI 1.3 tool: the tool's keys, the launch, deep linking, NRPS rosters."""


class Refused(Exception):
    """A login, launch or pick f2git will not act on: an HTTP `status` and a sentence for the person."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message
