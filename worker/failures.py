"""Why a job failed, as its ``error`` says: one table from what a run raised to a job error ``code``.

The core raises typed exceptions (:mod:`gacd_core.errors`), each with its own stable ``code``
(``invalid_spec``, ``teacher_unfit``, a dataset folder's ``dataset_path_forbidden``,
``dataset_not_found`` and ``dataset_invalid``, ...): the first row of the table keeps the code, message
and field; a full, read-only or over-quota artifact store is ``storage_error``, named by its errno;
anything else is a bug, ``internal_error``, and its traceback goes to the worker's log. A job's
cancellation, its pause and a lost lease are not failures: the runner handles them before it asks here.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gacd_core.errors import GACDError
from service.state.records import JobError

MAX_MESSAGE = 2000  # characters of an unexpected exception's text kept in the error


def _core_error(exc: GACDError, root: Path) -> JobError:
    check = getattr(exc, "check", None)  # teacher_unfit: the figures that refused the teacher
    return JobError(code=exc.code, message=exc.message, field=exc.field, **({"check": check} if check else {}))


_STORAGE_REASONS = {
    errno.ENOSPC: "the artifact store is full",
    errno.EACCES: "the artifact store is not writable",
    errno.EROFS: "the artifact store is read-only",
    errno.EDQUOT: "the artifact store's quota is exhausted",
}


def _storage_error(exc: OSError, root: Path) -> JobError:
    reason = _STORAGE_REASONS.get(exc.errno or 0, f"storage error: {exc}")
    reason += f" ({exc.strerror or exc}: {exc.filename or root})"
    return JobError(code="storage_error", message=reason, field=None)


def _internal_error(exc: Exception, root: Path) -> JobError:
    return JobError(code="internal_error", message=f"the job failed: {type(exc).__name__}: {exc}"[:MAX_MESSAGE])


# The first row whose type the exception is an instance of describes it. The third column: what the core
# did not raise on purpose is logged with its traceback, with this message (``%s``: the job's id).
JOB_ERRORS: tuple[tuple[type[Exception], Callable[[Any, Path], JobError], str | None], ...] = (
    (GACDError, _core_error, None),
    (OSError, _storage_error, "job %s: storage error"),
    (Exception, _internal_error, "job %s failed"),
)


def job_error(exc: Exception, root: Path) -> tuple[JobError, str | None]:
    """The job error ``exc`` means (``root``: the artifact store, named when an OSError names no file),
    and the message to log its traceback with (None: not logged)."""
    for kind, describe, logged in JOB_ERRORS:
        if isinstance(exc, kind):
            return describe(exc, root), logged
    raise TypeError(f"not an Exception: {exc!r}")  # the table's last row takes every Exception
