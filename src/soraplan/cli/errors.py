"""The one exception the CLI reports as a single line instead of a traceback."""


class UserError(Exception):
    """A mistake in what the user asked for; the message says what is wrong and how to fix it."""
