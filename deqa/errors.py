"""The one exception type for bad input: the command line prints its message on one line and
exits non-zero, without a traceback."""


class DeqaError(ValueError):
    """Bad input (file, row, setting) with a message that names what is wrong and where."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty): what a
    one-line error shows of a library's multi-line message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Interrupted(KeyboardInterrupt):
    """Training was stopped by a signal (Ctrl-C, SIGTERM from a scheduler or ``timeout``, SIGHUP from a
    closed terminal) after saving a checkpoint; the command line exits with 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
