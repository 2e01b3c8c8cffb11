"""The one exception type the data layer shows to users.

Anything that is the user's to fix (a missing file, a corrupt download, a file
that is not in our schema) is raised as `DataError`, whose message is one line
saying what was wrong and what to do. Anything else is a bug and keeps its
traceback.
"""


class DataError(Exception):
    """A user-facing data problem; `str(err)` is one clear line."""

    def __init__(self, message: str) -> None:
        # Collapse whitespace so that wrapped OS or library messages can never
        # spread the error over several lines of the terminal.
        super().__init__(" ".join(str(message).split()))
