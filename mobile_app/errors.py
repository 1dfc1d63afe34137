"""The app's error types: each is a Sat2SoundError, so the CLI prints one line and the app shows one message.

Device-side: imports only contracts.errors (standard library), never torch.
"""

from __future__ import annotations

from contracts.errors import Sat2SoundError


class BundleError(Sat2SoundError):
    """A bundle that is missing, incomplete, tampered with, or whose parts do not belong together."""


class PlaceError(Sat2SoundError):
    """A place the app cannot look at: outside the bundle's region, or imagery missing from its map."""


class PlaybackError(Sat2SoundError):
    """A clip that cannot be played (missing, corrupt, or not decodable by the audio stack)."""


class RuntimeChoiceError(Sat2SoundError):
    """An inference runtime that is not installed, or a model file it cannot run."""
