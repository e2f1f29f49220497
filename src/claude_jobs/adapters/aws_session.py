"""The boto3 session a :class:`~claude_jobs.wiring.Container` creates its clients with:
botocore's own, except for how its data loader finds a service's model (issue 28).

botocore's `Loader.load_service_model` first lists every service of every data path — a
directory read for each of the ~400 services and a `stat` for each of their API versions, ~900
reads and ~2,800 stats — only to check that the service asked for is among them, and does it
twice for a function's first client (its model and its endpoint rules). That is about half of
creating the first client: ~19 ms of ~40 ms with bytecode on the 2-core machine the benchmarks
run on (`make bench`), paid by every cold start. :class:`DirectLoader` answers that check from
the service's own directory (its API versions, which botocore reads next anyway); the full
list is still there for whoever iterates it, and an unknown service still raises botocore's
`UnknownServiceError` naming the known ones.

The loader holds only botocore's data files, read once: one per data path is shared by every
session of the process (the local stack's functions, the tests' containers); each session is
a container's own, so credentials and endpoints are read from the environment when the
container creates it, as boto3's default session reads them when it is created.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any, overload

from botocore.exceptions import DataNotFoundError
from botocore.loaders import Loader, create_loader

_loaders: dict[str | None, DirectLoader] = {}
_loaders_lock = threading.Lock()


class KnownServices(Sequence[str]):
    """What `Loader.list_available_services` answers, listed only when iterated: `name in`
    checks the one service's directory."""

    def __init__(self, loader: DirectLoader, type_name: str) -> None:
        self._loader = loader
        self._type_name = type_name
        self._listed: list[str] | None = None

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str) or not name or os.sep in name or name.startswith("."):
            return False
        try:
            return bool(self._loader.list_api_versions(name, self._type_name))
        except DataNotFoundError:
            return False

    def _all(self) -> list[str]:
        if self._listed is None:
            self._listed = Loader.list_available_services(self._loader, self._type_name)
        return self._listed

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._all()[index]

    def __len__(self) -> int:
        return len(self._all())

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())


class DirectLoader(Loader):
    """botocore's data loader, whose service lookup reads only the service's own directory."""

    # A sequence, not a list: botocore only tests membership, joins and sorts it.
    def list_available_services(self, type_name: str) -> KnownServices:  # type: ignore[override]
        return KnownServices(self, type_name)


def shared_loader(data_path: str | None) -> DirectLoader:
    """The process's loader for `data_path` (botocore's `data_path` setting, `AWS_DATA_PATH`:
    extra search paths before its own), as `botocore.loaders.create_loader` would make it."""
    with _loaders_lock:
        loader = _loaders.get(data_path)
        if loader is None:
            # botocore's own reading of the setting (and its default paths), on a loader of
            # this class: the throwaway loader reads no file.
            paths = create_loader(data_path).search_paths
            loader = DirectLoader(extra_search_paths=paths, include_default_search_paths=False)
            _loaders[data_path] = loader
        return loader


def new_session() -> Any:
    """A boto3 session of its own (credentials, region and endpoints from the environment now),
    whose clients load their models through the shared :class:`DirectLoader`."""
    import boto3.session
    import botocore.session

    core = botocore.session.get_session()
    loader = shared_loader(core.get_config_variable("data_path"))
    core.register_component("data_loader", loader)
    with _loaders_lock:
        # boto3's Session appends its own data directory to its loader's search paths; on a
        # shared loader that is once, not once a session
        paths = loader.search_paths
        known = len(paths)
        session = boto3.session.Session(botocore_session=core)
        if len(paths) > known and paths[-1] in paths[:known]:
            del paths[known:]
    return session
