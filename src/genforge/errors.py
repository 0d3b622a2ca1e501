"""The one exception type for user errors.

Anything the user can fix (a bad flag, a missing file, a corrupt image, a conflicting run
directory) raises :class:`GenforgeError` with a one-line message that names the problem and the
fix. The CLI catches it once, prints ``genforge: error: <message>`` and exits with status 2.
Everything else is a bug and keeps its traceback.
"""


class GenforgeError(Exception):
    """A user error: bad input, configuration or file. The message is one line: problem; fix."""
