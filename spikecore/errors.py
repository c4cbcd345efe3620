"""The one exception type for bad user input.

Every message is a single line that names the file, key or layer at fault; the command line prints it
and exits with status 2.
"""

import reprlib

_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxlevel = 40, 40, 4, 4, 2


def short_repr(value) -> str:
    """``repr(value)`` cut short for a message: a user's value may be a huge structure (reprlib's limits:
    40 characters of text, 4 items of a list or mapping, 2 levels)."""
    return _SHORT.repr(value)


#: Longest message shown: a message quoting a huge value is cut in its middle.
MAX_MESSAGE_CHARS = 600


class UserError(Exception):
    """Bad input from the user: malformed file, unknown key, out-of-range value, unsupported layer."""

    def __init__(self, message: str):
        text = " ".join(str(message).split())
        if len(text) > MAX_MESSAGE_CHARS:
            text = f"{text[:MAX_MESSAGE_CHARS - 120]} ... {text[-100:]}"
        super().__init__(text)
