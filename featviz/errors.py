"""The one exception type for user errors: the CLI prints its message, never a traceback."""


class FeatvizError(Exception):
    """A problem with the user's input (config, data, checkpoint, names). The message says what
    is wrong and names the key or file."""
