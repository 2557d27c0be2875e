"""Lazy imports of the optional ``[local]`` dependencies, with an error that names the extra."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Final

#: The pip extra that installs webrtcvad-wheels, pocketsphinx and espeakng-loader.
EXTRA_HINT: Final = "pip install 'realtime-nb[local]'"


class MissingExtraError(ImportError):
    """An optional dependency of :mod:`realtime_nb.local` is not installed."""


def require(module: str, distribution: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` saying how to install it.

    Raises:
        MissingExtraError: the module cannot be imported; the message names the distribution,
            what it is needed for and the extra that installs it.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"realtime_nb.local needs {distribution!r} for {purpose}, but importing {module!r} "
            f"failed ({exc}). Install the offline extra: {EXTRA_HINT}"
        ) from exc
