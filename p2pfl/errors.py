"""The one exception type for bad user input (config, data file, spec strings)."""


class UserError(ValueError):
    """A problem the user can fix. The CLI prints its message on one line and exits with code 2."""
