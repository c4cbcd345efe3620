"""The one exception type for bad user input.

Every message is a single line that names the file, key or layer at fault; the command line prints it
and exits with status 2.
"""


class UserError(Exception):
    """Bad input from the user: malformed file, unknown key, out-of-range value, unsupported layer."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
