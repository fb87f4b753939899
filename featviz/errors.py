"""The one exception type for user errors: the CLI prints its message, never a traceback. Also how
a message from torch or another library is embedded in featviz's own (one line, no colour codes)."""
import re

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


class FeatvizError(Exception):
    """A problem with the user's input (config, data, checkpoint, names). The message says what
    is wrong and names the key or file."""


def plain(text: str, limit: int = 300) -> str:
    """A message from torch or another library as featviz embeds it: ANSI colour codes removed,
    blank lines and indentation collapsed, cut to `limit` characters."""
    text = _ANSI.sub("", str(text))
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def why(exc: BaseException) -> str:
    """One line for an exception: its message, or its type where it has none (EOFError)."""
    return plain(str(exc)) or type(exc).__name__
