"""The one error type for bad data: a one-line message naming the path and the expected layout."""


class DataError(ValueError):
    pass
