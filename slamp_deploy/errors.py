"""One exception hierarchy for the whole toolkit.

Library code raises these; only :mod:`slamp_deploy.cli` turns them into messages and exit codes.
Every message names the thing at fault (file, field, layer or rule) and what to do about it.
"""

from __future__ import annotations


class SlampError(Exception):
    """Base class of every error slamp-deploy raises on purpose."""

    exit_code = 1


class UsageError(SlampError, ValueError):
    """An option or argument has a value the toolkit cannot use."""


class ModelError(SlampError, ValueError):
    """The model, its factory or its checkpoint cannot be used."""


class DataError(SlampError, ValueError):
    """The data set is missing, empty or does not fit the model."""


class ProfileError(SlampError, ValueError):
    """A hardware profile file is malformed."""


class UnknownTargetError(SlampError, KeyError):
    """A target, method or exporter name is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConstraintViolation(SlampError):
    """A model does not satisfy a hardware rule."""


class InfeasibleTargetError(ConstraintViolation):
    """No sparsity makes the model fit the target (a rule pruning cannot relieve)."""

    exit_code = 3


class ExportError(SlampError):
    """An exporter cannot express or verify the model."""


class SlampWarning(UserWarning):
    """A recoverable problem the user should know about."""
