"""Errors a user can act on: the CLI prints their message as one line, no traceback."""


class EngageError(Exception):
    """A failure caused by the user's input or set-up; the message says what to do."""


class UsageError(EngageError):
    """Bad arguments: the CLI exits with code 2."""


class ImageReadError(EngageError):
    """One image could not be read; folder runs report it and go on."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")
