"""Where database errors enter: constraint violations become domain errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from telemetry.errors import ConflictError, ValidationError

__all__ = ["constraint_errors"]


@contextmanager
def constraint_errors(*, conflict: str | None = None) -> Iterator[None]:
    """Turn a unique violation into :class:`ConflictError` (with ``conflict`` as its message
    when given) and a check violation into :class:`ValidationError`."""
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        raise ConflictError(conflict or str(exc)) from exc
    except asyncpg.CheckViolationError as exc:
        raise ValidationError(str(exc)) from exc
