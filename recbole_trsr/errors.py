"""The one exception type that the command line shows as a one-line message instead of a traceback, and how such a
message quotes another exception."""


class UserInputError(Exception):
    """Bad input from the user: a name, a file, a value. The message names the culprit and the fix."""


def first_line(error: BaseException) -> str:
    """An exception's message cut to its first line (at most 160 characters), for a one-line error that quotes it."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
