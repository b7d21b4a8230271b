"""User-facing errors.

Every problem caused by the user's input (a malformed puzzle, a bad config key, a dataset that
does not match the model...) is raised as :class:`RecursaError` with one line that names the
problem and where it is. The CLI prints it as ``error: <message>`` and exits with code 2.
"""


class RecursaError(Exception):
    """An input problem the user can fix; the message is one line naming file/key/position."""

    exit_code = 2
