"""The errors a user can fix: each message names the key or file, the value, and what is allowed."""


class ConfigError(ValueError):
    """An invalid configuration; the message names the key and the allowed values."""


class DataError(ConfigError):
    """Data that cannot be used as configured (missing or damaged archive, wrong shapes, labels)."""


class WorkdirError(RuntimeError):
    """The workdir cannot be used as asked (e.g. it already holds a finished run)."""


class HostSetupError(RuntimeError):
    """The CPU set-up was asked for after JAX had already started its backends."""


class MixPointError(ValueError):
    """A mix point that the model does not have, that runs twice, or that is not a hidden state."""
