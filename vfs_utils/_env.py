"""The one reading of an on/off environment variable (``VFS_OFFLINE``, ``VFS_NO_INDEX``, ...).

Other values than :data:`TRUE` and :data:`FALSE` are refused, not guessed.
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
    """Whether the environment variable ``name`` is on (``UsageError`` when neither on nor off)."""
    value = os.environ.get(name, "").strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise UsageError(f"{name}={os.environ[name]!r}: not an on/off value. Set it to 1 (on) or 0 "
                     f"(off), or unset it.")
