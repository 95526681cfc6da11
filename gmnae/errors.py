"""User-facing errors: one line that names the thing and the fix. The CLI prints them without a traceback."""


class GmnaeError(Exception):
    """Bad input or state the user can fix; the message says how."""


class ZooError(GmnaeError):
    """A zoo folder, manifest or shard is missing, corrupt or inconsistent."""


class ConfigError(GmnaeError):
    """A config key, dataset name or override is wrong."""


def check_writable(path, what: str) -> None:
    """Raise a one-line GmnaeError, starting with `what`, unless the folder `path` (there or not yet) can
    be written in: its nearest existing ancestor must be a folder we can write in (tried, so a read-only
    mount counts too, whoever we run as). Writes nothing that stays."""
    import os
    import tempfile
    from pathlib import Path

    path = Path(path).absolute()
    for parent in [path, *path.parents]:
        if parent.exists():
            break
    if not parent.is_dir():
        raise GmnaeError(f"{what}: {parent} is a file, not a folder; pass a folder path")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise GmnaeError(f"{what}: cannot write in {parent} ({os.strerror(e.errno) if e.errno else e}); "
                         "pass a path you can write to") from None
