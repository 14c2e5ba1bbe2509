"""The one exception type for bad input: the command line prints its message on one line and
exits non-zero, without a traceback."""


class DeqaError(ValueError):
    """Bad input (file, row, setting) with a message that names what is wrong and where."""
