"""The apps of the workspace, each with its own `Index`: one server answers many apps.

A document belongs to the app whose `minicloud.toml` is nearest above it, found as the CLI finds it
(`deploy_bridge.manifest.find_workspace`), whatever the workspace folders are: multi-root
workspaces and monorepos (apps nested in one folder) alike. A document with no app above it gets no
app (the server answers it from an empty snapshot: the schema and catalog features still work).

Lifetime, kept simple. An app is *in use* while it is the app of a workspace folder (the folder's
own manifest, or the nearest above the folder) or while one of its documents is open:

- its Index starts when the app comes into use: a folder's at `initialize` or when the folder is
  added (`workspace/didChangeWorkspaceFolders`), a nested app's when its first document opens. At
  `initialize` only the engine-free part runs (variables, packages: known from the first request);
  the index threads start at `initialized` (or the app's first document), so that several apps do
  not slow the answer to `initialize` down;
- its Index stops when the app goes out of use: its last document closed and it is no folder's
  app, or its folder removed and none of its documents open.

Commands may name an app that is not in use (the editor's Environments tree lists every app of the
workspace): they get a `Cloud` of its own, and no Index (no thread, no snapshot kept in memory).
Everything here runs on the server's event loop; indexes call back from their own threads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote

from pygls.uris import to_fs_path

from .index import Index, Snapshot

log = logging.getLogger(__name__)
NO_APP_MESSAGE = "no minicloud.toml in this workspace (create one to use the cloud commands)"


class NoApp(LookupError):
    """No app where one was looked for."""


class AmbiguousApp(LookupError):
    """Several apps, and nothing said which one."""


def root_of(path: Path) -> Path | None:
    """The folder of the minicloud.toml nearest above `path` (a file or a folder), or None."""
    from deploy_bridge.errors import MinicloudError
    from deploy_bridge.manifest import find_workspace

    start = path if path.is_dir() else path.parent
    try:
        return find_workspace(start)
    except (MinicloudError, OSError):
        return None


def path_of(uri: str) -> Path | None:
    """The file system path of a `file:` URI, else None (e.g. an `untitled:` document)."""
    if not uri.startswith("file:"):
        return None
    path = to_fs_path(uri)
    return Path(path) if path else None


class App:
    """One app: its root (the folder of its minicloud.toml), its Index, and what keeps it in use."""

    def __init__(self, root: Path, make_index: Callable[[Path], Index]) -> None:
        self.root = root
        self._make_index = make_index
        self._index: Index | None = None  # made when the app comes into use, dropped when it goes out
        self._cloud = None  # the Cloud of an app not in use (its commands)
        self._name: str | None = None
        self.running = False
        self.threads = False  # the index's threads started (a running app may wait for `initialized`)
        self.folders: set[str] = set()  # the workspace folders (URIs) whose app this is
        self.documents: dict[str, str] = {}  # its open documents: unquoted URI -> the URI as the editor sent it

    @property
    def in_use(self) -> bool:
        return bool(self.folders or self.documents)

    @property
    def index(self) -> Index:
        """The app's Index (made now if the app is not in use: its persisted snapshot, no thread)."""
        if self._index is None:
            self._index = self._make_index(self.root)
        return self._index

    def snapshot(self) -> Snapshot:
        """The running index's snapshot; for an app not in use, the persisted one (read now, not kept)."""
        return (self._index or self._make_index(self.root)).snapshot

    def cloud(self):
        """The app's Cloud: the running index's, else one of its own (no index made, nothing refreshed)."""
        if self._index is not None:
            return self._index.cloud()
        if self._cloud is None:
            from deploy_bridge.cloud import Cloud

            self._cloud = Cloud(self.root)
        return self._cloud

    def refresh_soon(self) -> None:
        if self._index is not None:
            self._index.refresh_soon()

    @property
    def name(self) -> str:
        """The app's name (`[app] name` of its manifest); the folder's name while it cannot be read."""
        if self._index is not None and self._index.snapshot.app:
            return self._index.snapshot.app
        if self._name is None:
            try:
                from deploy_bridge.workspace import Workspace

                self._name = Workspace(self.root).app
            except Exception:  # noqa: BLE001 - a broken manifest: the folder names the app meanwhile
                return self.root.name
        return self._name

    def describe(self) -> str:
        return f"{self.name} ({self.root})"

    def start(self, threads: bool = True) -> None:
        """In use: what needs no engine at once; the refresh and events threads too unless deferred."""
        if not self.running:
            self.running = True
            self._cloud = None
            self.index.refresh_local()  # variables and packages are known from the first request
        if threads and not self.threads:
            self.threads = True
            self.index.start()

    def stop(self) -> None:
        """Out of use: the index stops, and goes (its snapshot with it)."""
        if self._index is not None:
            self._index.stop()
        self._index = None
        self.running = self.threads = False

    def restart(self, make_index: Callable[[Path], Index]) -> None:
        """A new index (e.g. for another env), started if the app is in use."""
        self._make_index = make_index
        was_running, had_threads = self.running, self.threads
        self.stop()
        self._name = None
        if was_running:
            self.start(threads=had_threads)


class Apps:
    """Every app the server has met, by root; the app of each open document."""

    def __init__(self, make_index: Callable[[Path], Index]) -> None:
        self._make_index = make_index
        self.defer_threads = False  # between `initialize` and `initialized`: see the module's doc
        self._apps: dict[Path, App] = {}
        self._documents: dict[str, Path | None] = {}  # open document (unquoted URI) -> its app's root
        self._folders: dict[str, Path | None] = {}  # workspace folder (URI) -> its app's root

    # ---- finding
    def get(self, root: Path) -> App:
        """The app rooted at `root` (created idle if new)."""
        app = self._apps.get(root)
        if app is None:
            app = self._apps[root] = App(root, self._make_index)
        return app

    def __iter__(self) -> Iterator[App]:
        """The apps in use."""
        return (app for app in list(self._apps.values()) if app.in_use)

    def of_document(self, uri: str) -> App | None:
        """The app of a document: the one found when it was opened, else found now. A document with
        no path (e.g. `untitled:`) belongs to the only app in use, if there is exactly one."""
        key = unquote(uri)
        if key in self._documents:
            root = self._documents[key]
            return self._apps.get(root) if root is not None else None
        path = path_of(key)
        if path is None:
            in_use = list(self)
            return in_use[0] if len(in_use) == 1 else None
        root = root_of(path)
        return self.get(root) if root is not None else None

    # ---- lifetime
    def open_document(self, uri: str) -> App | None:
        key = unquote(uri)
        path = path_of(key)
        root = root_of(path) if path is not None else None
        if path is None:
            app = self.of_document(key)
            root = app.root if app is not None else None
        self._documents[key] = root
        if root is None:
            return None
        app = self.get(root)
        app.documents[key] = uri
        app.start()
        return app

    def close_document(self, uri: str) -> None:
        key = unquote(uri)
        root = self._documents.pop(key, None)
        app = self._apps.get(root) if root is not None else None
        if app is not None:
            app.documents.pop(key, None)
            self._stop_if_unused(app)

    def add_folder(self, uri: str) -> App | None:
        path = path_of(uri)
        root = root_of(path) if path is not None else None
        self._folders[uri] = root
        if root is None:
            return None  # e.g. the root of a monorepo: its apps come into use with their documents
        app = self.get(root)
        app.folders.add(uri)
        app.start(threads=not self.defer_threads)
        return app

    def start_deferred(self) -> None:
        """`initialized`: the threads of the apps in use start."""
        self.defer_threads = False
        for app in self:
            app.start()

    def remove_folder(self, uri: str) -> None:
        self._folders.pop(uri, None)
        for app in list(self._apps.values()):
            if uri in app.folders:
                app.folders.discard(uri)
                self._stop_if_unused(app)

    def rescan(self) -> list[str]:
        """Find the app of every open document again (a minicloud.toml was created or removed);
        the documents whose app changed."""
        for uri, old in list(self._folders.items()):
            path = path_of(uri)
            if path is not None and root_of(path) != old:
                self.remove_folder(uri)
                self.add_folder(uri)
        moved = []
        for key, old in list(self._documents.items()):
            path = path_of(key)
            new = root_of(path) if path is not None else old
            if new == old:
                continue
            moved.append(key)
            self._documents[key] = new
            uri = key
            if old is not None and old in self._apps:
                uri = self._apps[old].documents.pop(key, key)
            if new is not None:
                app = self.get(new)
                app.documents[key] = uri
                app.start()
        for app in list(self._apps.values()):
            self._stop_if_unused(app)
        return moved

    def _stop_if_unused(self, app: App) -> None:
        if not app.in_use:
            app.stop()

    def restart(self, make_index: Callable[[Path], Index]) -> None:
        """Every app gets a new index (the env changed); those in use start it."""
        self._make_index = make_index
        for app in list(self._apps.values()):
            app.restart(make_index)

    def stop_all(self) -> None:
        for app in list(self._apps.values()):
            app.stop()

    # ---- commands
    def resolve(self, app: str | None = None, uri: str | None = None) -> App:
        """The app a command acts on: `app` (its root, a path inside it, or its name), else the app
        of the document `uri`, else the only app in use. NoApp or AmbiguousApp say why not."""
        if app:
            return self._by_path_or_name(str(app))
        if uri:
            found = self.of_document(str(uri))
            if found is None:
                raise NoApp(f"no minicloud.toml at or above {path_of(unquote(str(uri))) or uri}")
            return found
        in_use = sorted(self, key=lambda a: str(a.root))
        if len(in_use) == 1:
            return in_use[0]
        if not in_use:
            raise NoApp(NO_APP_MESSAGE)
        raise AmbiguousApp("several apps in this workspace; say which one with {\"app\": ...}: "
                           + ", ".join(a.describe() for a in in_use))

    def _by_path_or_name(self, wanted: str) -> App:
        if "/" in wanted or "\\" in wanted or wanted.startswith("file:"):
            path = path_of(wanted) if wanted.startswith("file:") else Path(wanted).expanduser()
            root = root_of(path) if path is not None else None
            if root is None:
                raise NoApp(f"no minicloud.toml at or above {wanted}")
            return self.get(root)
        known = sorted(self._apps.values(), key=lambda a: (not a.in_use, str(a.root)))
        named = [a for a in known if a.name == wanted]
        in_use_named = [a for a in named if a.in_use]
        if len(in_use_named) == 1 or (len(named) == 1 and not in_use_named):
            return (in_use_named or named)[0]
        if named:
            raise AmbiguousApp(f"several apps are named {wanted}; give its folder instead: "
                               + ", ".join(a.describe() for a in named))
        listed = ", ".join(a.describe() for a in known if a.in_use) or "none open"
        raise NoApp(f"no app named {wanted} (apps: {listed})")
