"""The one exception type that means "the user asked for something we cannot do"."""


class FmnistError(Exception):
    """A user-facing error. The CLI prints its message as one line and exits with status 2.

    Raise it for bad input (files, flags, configs, checkpoints); let genuine bugs raise
    anything else so that they keep their traceback.
    """
