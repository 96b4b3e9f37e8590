"""Errors that name the file and what is wrong with it.

Users meet bad input every day (truncated downloads, wrong products, a label
raster from another chip). A message that names the file and the problem saves
them an hour of debugging, so every reader raises these instead of bare errors.
"""

from __future__ import annotations

from os import PathLike


class SarlabError(Exception):
    """Base class for errors raised by sarlab."""


class InputError(SarlabError, ValueError):
    """A file or folder given to sarlab cannot be used; the message names it."""

    def __init__(self, path: str | PathLike[str] | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


class UnitsError(SarlabError, ValueError):
    """Two quantities or units were mixed, or a conversion was applied twice."""


class ManifestError(InputError):
    """A data manifest is invalid, or a file it lists fails verification."""


class PipelineError(InputError):
    """A pipeline file is invalid (unknown notebook, unknown parameter, bad YAML)."""
