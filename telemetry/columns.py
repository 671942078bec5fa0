"""Column batches: frozen dataclasses whose fields are numpy arrays of one length.

Every stage of the path hands data on as columns, one element per record, so that checks,
snapping and detection are vectorized. :class:`Columns` gives such a dataclass its length,
row selection and an empty instance, from the fields' declared array types.
"""

from __future__ import annotations

import typing
from dataclasses import fields
from typing import Any, ClassVar, Self, get_args

import numpy as np
import numpy.typing as npt

__all__ = ["Columns", "FloatArray", "IntArray", "ObjectArray"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
ObjectArray = npt.NDArray[np.object_]


class Columns:
    """Base of a column batch (subclass with ``@dataclass(frozen=True, slots=True)``)."""

    __slots__ = ()
    _dtypes: ClassVar[dict[type, dict[str, np.dtype[Any]]]] = {}

    def __len__(self) -> int:
        first = fields(self)[0].name  # type: ignore[arg-type]
        return int(getattr(self, first).shape[0])

    def take(self, index: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> Self:
        """The rows at ``index`` (integer positions or a boolean mask)."""
        return type(self)(
            **{f.name: getattr(self, f.name)[index] for f in fields(self)}  # type: ignore[arg-type]
        )

    @classmethod
    def empty(cls) -> Self:
        """A batch of no rows, each column of its declared dtype."""
        return cls(**{name: np.empty(0, dtype=dt) for name, dt in cls._column_dtypes().items()})

    @classmethod
    def _column_dtypes(cls) -> dict[str, np.dtype[Any]]:
        known = Columns._dtypes.get(cls)
        if known is None:
            hints = typing.get_type_hints(cls)
            known = {f.name: _dtype_of(hints[f.name]) for f in fields(cls)}  # type: ignore[arg-type]
            Columns._dtypes[cls] = known
        return known


def _dtype_of(hint: Any) -> np.dtype[Any]:
    """``npt.NDArray[np.float64]`` → ``float64``; ``npt.NDArray[np.str_]`` → ``<U1``."""
    args = get_args(hint)
    scalar = get_args(args[1])[0] if len(args) == 2 else object
    return np.dtype(scalar) if scalar is not np.str_ else np.dtype("<U1")
