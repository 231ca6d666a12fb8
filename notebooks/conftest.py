"""nbval kernels talk over Unix sockets in a folder of their own (``make nbtest``).

nbval's kernels use TCP by default: the client picks five free ports (bind to port 0, close)
and the kernel binds them a few seconds later. On a loaded machine any other process can take
one of them in between; the kernel then fails to bind and exits ("Kernel died before replying
to kernel_info"). Over IPC in a fresh private folder no other process can take the names.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import weakref

import nbval.kernel
from jupyter_client.manager import KernelManager


class PrivateIPCKernelManager(KernelManager):
    """A kernel manager whose sockets live in a new temporary folder, removed at shutdown."""

    def __init__(self, **kwargs):
        self._folder = tempfile.mkdtemp(prefix="vfs-kernel-",
                                        dir=os.environ.get("XDG_RUNTIME_DIR"))
        kwargs.setdefault("transport", "ipc")
        kwargs.setdefault("ip", os.path.join(self._folder, "k"))
        super().__init__(**kwargs)
        weakref.finalize(self, shutil.rmtree, self._folder, True)   # a manager never shut down

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart:
            shutil.rmtree(self._folder, ignore_errors=True)


nbval.kernel.KernelManager = PrivateIPCKernelManager
