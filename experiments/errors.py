"""Errors that mean "the user must fix something" (config, data): reported in one line, exit 2."""


class UserError(Exception):
    """A problem the user can fix; the message says what is wrong and how to fix it."""


class DataError(UserError):
    """A dataset is missing or malformed; the message names where we looked and how to get it."""
