"""The per-job directory under /tmp: the agent's HOME, CLAUDE_CONFIG_DIR, TMPDIR and working
directory, created fresh for each job and removed afterwards whatever happened (Lambda reuses
warm environments, and /tmp with them).

    <root>/            0711, the worker's: the agent may pass through, not list
      home/            HOME; home/.claude is CLAUDE_CONFIG_DIR
      work/            the working directory (job inputs land here)
      tmp/             TMPDIR
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .isolation import AgentIdentity


class Sandbox:
    def __init__(
        self, job_id: str, identity: AgentIdentity, base_dir: str | Path | None = None
    ) -> None:
        self._job_id = job_id
        self._identity = identity
        self._base = str(base_dir) if base_dir is not None else tempfile.gettempdir()
        self.root: Path | None = None

    # ------------------------------------------------------------ layout

    def _path(self, *parts: str) -> Path:
        if self.root is None:
            raise RuntimeError("the sandbox is not created")
        return self.root.joinpath(*parts)

    @property
    def home(self) -> Path:
        return self._path("home")

    @property
    def config_dir(self) -> Path:
        return self._path("home", ".claude")

    @property
    def work_dir(self) -> Path:
        return self._path("work")

    @property
    def tmp_dir(self) -> Path:
        return self._path("tmp")

    # ------------------------------------------------------------ lifecycle

    def create(self) -> Sandbox:
        safe_id = "".join(c for c in self._job_id if c.isalnum() or c == "-")[:36]
        self.root = Path(tempfile.mkdtemp(prefix=f"claude-job-{safe_id}-", dir=self._base))
        os.chmod(self.root, 0o711 if self._identity.switches_user else 0o700)
        for directory in (self.home, self.config_dir, self.work_dir, self.tmp_dir):
            os.mkdir(directory, 0o700)
            self.give(directory)
        return self

    @property
    def owner_uid(self) -> int | None:
        """The agent's uid (None: the worker's own user)."""
        return self._identity.uid

    def give(self, path: Path) -> None:
        """Hand a file or directory to the agent's user (a no-op when it is the worker's)."""
        if self._identity.uid is not None and self._identity.gid is not None:
            os.chown(path, self._identity.uid, self._identity.gid, follow_symlinks=False)

    def remove(self) -> None:
        if self.root is None:
            return
        root, self.root = self.root, None
        remove_tree(root)

    def __enter__(self) -> Sandbox:
        return self.create()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()


def remove_tree(path: Path) -> None:
    """Remove a tree (or a file, a link) even where the agent took away write or search
    permission."""
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            os.unlink(path)
            return
    except FileNotFoundError:
        return

    tried: set[str] = set()

    def retry(function: Callable[..., Any], target: str, *_: Any) -> None:
        if target in tried:  # its permissions could not be mended: leave it
            return
        tried.add(target)
        parent = os.path.dirname(target)
        for item in (parent, target):
            try:
                mode = os.lstat(item).st_mode
                if not stat.S_ISLNK(mode):
                    os.chmod(item, stat.S_IMODE(mode) | stat.S_IRWXU)
            except OSError:
                pass
        try:
            if function in (os.rmdir, os.unlink, os.remove):
                function(target)
            elif os.path.isdir(target) and not os.path.islink(target):
                # It could not be opened or listed; now it can.
                rmtree(target)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            shutil.rmtree(target, ignore_errors=True)

    def rmtree(target: str | Path) -> None:
        if sys.version_info >= (3, 12):
            shutil.rmtree(target, onexc=retry)
        else:
            shutil.rmtree(target, onerror=retry)

    rmtree(path)
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
