"""The error of a file that cannot be used."""


class DataError(ValueError):
    """A file could not be used; the message (one line) names the file and the reason."""


__all__ = ["DataError"]
