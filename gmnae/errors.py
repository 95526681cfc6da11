"""User-facing errors: one line that names the thing and the fix. The CLI prints them without a traceback."""


class GmnaeError(Exception):
    """Bad input or state the user can fix; the message says how."""


class ZooError(GmnaeError):
    """A zoo folder, manifest or shard is missing, corrupt or inconsistent."""


class ConfigError(GmnaeError):
    """A config key, dataset name or override is wrong."""
