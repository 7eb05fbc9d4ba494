"""The one exception class for mistakes a user can fix (bad path, bad alpha, shape mismatch, unknown name)."""


class ConfigError(ValueError):
    """A user-fixable problem. The message names the thing at fault and how to fix it."""
