"""Exception types users catch. The CLI turns any of them into a one-line message, exit 1."""


class StylecodecError(Exception):
    """Base class: bad input or a missing resource, explained in the message."""
