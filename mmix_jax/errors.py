"""The errors a user can fix: each message names the key or file, the value, and what is allowed."""


class ConfigError(ValueError):
    """An invalid configuration; the message names the key and the allowed values."""


class DataError(ConfigError):
    """Data that cannot be used as configured (missing or damaged archive, wrong shapes, labels)."""
