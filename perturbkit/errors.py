"""perturbkit's public error classes: ``pk.errors``.

Every bad-input error derives from :class:`PerturbkitInputError` (itself a :class:`ValueError`), so
``except pk.errors.PerturbkitInputError`` catches them all.

>>> import perturbkit as pk
>>> try:
...     pk.io.read_gct("missing.gct")
... except FileNotFoundError as err:
...     print(type(err).__name__)
FileNotFoundError
"""

from ._schema import (
    ColumnTypeError,
    DeviceError,
    DownloadError,
    EmptyGroupError,
    FileFormatError,
    GeneMismatchError,
    MissingColumnError,
    ModelFileError,
    NonFiniteError,
    PerturbkitInputError,
    UnknownCategoryError,
    UnknownOptionError,
)

__all__ = [
    "ColumnTypeError",
    "DeviceError",
    "DownloadError",
    "EmptyGroupError",
    "FileFormatError",
    "GeneMismatchError",
    "MissingColumnError",
    "ModelFileError",
    "NonFiniteError",
    "PerturbkitInputError",
    "UnknownCategoryError",
    "UnknownOptionError",
]
