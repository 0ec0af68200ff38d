"""The one exception type that the command line shows as a one-line message instead of a traceback."""


class UserInputError(Exception):
    """Bad input from the user: a name, a file, a value. The message names the culprit and the fix."""
