"""``python -m vfs_utils`` is the ``vfs`` command."""
from vfs_utils.cli import main

raise SystemExit(main())
