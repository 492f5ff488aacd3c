"""Where the outbox lives: an explicit path, ``$GBTRACK_OUTBOX``, or the user's state dir."""

from __future__ import annotations

import os
from pathlib import Path

from gbtrack._errors import ConfigurationError

__all__ = ["ENV_VAR", "default_outbox_path", "resolve_outbox_path"]

ENV_VAR = "GBTRACK_OUTBOX"
"""The environment variable naming the outbox file."""

_FILE_NAME = "outbox.sqlite3"


def default_outbox_path() -> Path:
    """Return the default outbox file, without creating anything.

    ``$GBTRACK_OUTBOX`` when set; else ``$XDG_STATE_HOME/gbtrack/outbox.sqlite3``; else
    ``~/.local/state/gbtrack/outbox.sqlite3`` (the XDG default for state files).
    """
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        return Path(explicit).expanduser()
    state = os.environ.get("XDG_STATE_HOME")
    base = Path(state).expanduser() if state else Path.home() / ".local" / "state"
    return base / "gbtrack" / _FILE_NAME


def resolve_outbox_path(path: str | os.PathLike[str] | None = None, *, create: bool = True) -> Path:
    """Return the outbox file to use, checking that it can be written.

    Args:
        path: An explicit file; ``None`` means :func:`default_outbox_path`.
        create: Create the parent directory when missing.

    Raises:
        ConfigurationError: If the directory cannot be created or the file is not
            writable, with the path and the environment variable to set in the message.
    """
    target = Path(path).expanduser() if path is not None else default_outbox_path()
    parent = target.parent
    hint = f"pass another path or set ${ENV_VAR}"
    if target.is_dir():
        raise ConfigurationError(f"outbox path {str(target)!r} is a directory; {hint}")
    if create:
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the outbox directory {str(parent)!r} ({exc.strerror}); {hint}"
            ) from exc
    if not parent.is_dir():
        raise ConfigurationError(f"outbox directory {str(parent)!r} does not exist; {hint}")
    # SQLite in WAL mode writes the file and two siblings (-wal, -shm) in the directory.
    if target.exists() and not os.access(target, os.R_OK | os.W_OK):
        raise ConfigurationError(f"outbox file {str(target)!r} is not writable; {hint}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigurationError(f"outbox directory {str(parent)!r} is not writable; {hint}")
    return target
