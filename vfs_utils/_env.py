"""The one reading of an on/off environment variable (``VFS_OFFLINE``, ``VFS_NO_INDEX``, ...).

One meaning of "on" for every flag of the package: ``1``, ``true``, ``yes`` or ``on``
(any case) switch it on; unset, empty, ``0``, ``false``, ``no`` or ``off`` leave it off.
Any other value is refused with a :class:`~vfs_utils.errors.UsageError` naming the
variable and the values it takes, rather than guessed: ``VFS_OFFLINE=off`` must not
mean offline.
"""
from __future__ import annotations

import os

from .errors import UsageError

__all__ = ["FALSE", "TRUE", "env_flag"]

#: Values (lower case, stripped) that switch a flag on.
TRUE = frozenset({"1", "true", "yes", "on"})
#: Values that leave it off (an unset variable is off too).
FALSE = frozenset({"", "0", "false", "no", "off"})


def env_flag(name: str) -> bool:
    """Whether the environment variable ``name`` is switched on.

    Raises
    ------
    UsageError
        When the variable holds something that is neither on nor off.
    """
    value = os.environ.get(name, "").strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise UsageError(f"{name}={os.environ[name]!r}: not an on/off value. Set it to 1 (on) or 0 "
                     f"(off), or unset it.")
