"""The gallery's one error type, so the CLI and the device app can show a clear line instead of a traceback.

Device-side code imports this, so it must stay light: contracts.errors imports only the standard library.
"""

from __future__ import annotations

from contracts.errors import Sat2SoundError


class GalleryError(Sat2SoundError):
    """A gallery folder that is missing, corrupt, from another schema or model, or whose index does not match its db."""
