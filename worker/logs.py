"""The worker's log: a rotating file readable by its user alone, at INFO without provider URLs.

`reelbatch run` and `reelbatch worker` name the file in REELBATCH_LOG_FILE; Celery's own logging
setup is replaced when it is set (the setup_logging signal)."""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path

LOG_FILE_VARIABLE = "REELBATCH_LOG_FILE"
MAX_BYTES = 20 * 1024 * 1024
BACKUPS = 5
FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(name)s: %(message)s"
# Libraries that log every request URL at INFO: result URLs are presigned (they grant access).
QUIET = ("httpx", "httpcore", "urllib3")


def private_log(path: Path) -> logging.Handler:
    """A rotating handler on ``path``, created 0600 (the user's alone)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    return logging.handlers.RotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS,
                                                encoding="utf-8")


def configure(loglevel: int | str = logging.INFO) -> None:
    """Log to REELBATCH_LOG_FILE when it is set, else to stderr."""
    target = os.environ.get(LOG_FILE_VARIABLE)
    handler = private_log(Path(target)) if target else logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(loglevel)
    quiet_libraries()


def quiet_libraries() -> None:
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
