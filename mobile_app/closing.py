"""``with`` support for the device side's readers: an object that has ``close()`` closes at the end of the block.

Standard library only.
"""

from __future__ import annotations

from typing import Self


class Closing:
    """Mixin: ``with obj as o:`` gives ``obj`` and calls ``obj.close()`` when the block ends, however it ends."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
