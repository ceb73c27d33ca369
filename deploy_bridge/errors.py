"""Errors every verb can raise. Each carries a message a user can act on, and often a hint."""

from __future__ import annotations


class MinicloudError(Exception):
    """Base class: `str(err)` is the message shown to the user; `hint` says what to do."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, details: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        # e.g. the tail of a build log or of the app's own log
        self.details = details

    def render(self) -> str:
        parts = [f"error: {self.message}"]
        if self.details:
            parts.append(self.details.rstrip())
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "\n".join(parts)


class ManifestError(MinicloudError):
    """A problem in minicloud.toml, located by file, line and key."""

    exit_code = 2

    def __init__(self, file: str, line: int, key: str, problem: str, *, column: int = 1,
                 end_column: int | None = None) -> None:
        self.file = file
        self.line = line  # 1-based
        self.column = column  # 1-based
        self.end_column = end_column
        self.key = key
        self.problem = problem
        where = f"{file}:{line}"
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")


class ManifestNotFound(MinicloudError):
    exit_code = 2


class UnknownEnv(MinicloudError):
    exit_code = 2


class EngineUnavailable(MinicloudError):
    exit_code = 3


class PortInUse(MinicloudError):
    exit_code = 3


class BuildFailed(MinicloudError):
    pass


class ReleaseUnhealthy(MinicloudError):
    pass


class DeployBusy(MinicloudError):
    exit_code = 4


class NotBuilt(MinicloudError):
    """The environment has not been built (or was destroyed)."""

    exit_code = 2


class Cancelled(MinicloudError):
    exit_code = 130


class BadInput(MinicloudError):
    """A command-line value or a file that cannot be used as given."""

    exit_code = 2
