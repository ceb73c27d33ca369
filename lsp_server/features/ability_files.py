"""Ability package files (`abilities/*.json`): invalid, expired, tampered or foreign ones, flagged."""

from __future__ import annotations

from lsprotocol import types

from ..index import Snapshot
from .base import Feature


class AbilityFileFeature(Feature):
    name = "ability-files"

    def accepts(self, uri: str, language: str) -> bool:
        return "/abilities/" in uri and uri.endswith(".json")

    def diagnostics(self, uri: str, language: str, text: str, snapshot: Snapshot) -> list[types.Diagnostic]:
        from codegen.abilities import AbilityError, verify_text

        trusted, app_id = snapshot.trust  # computed with the snapshot by the index refresh
        try:
            verify_text(text, uri.rsplit("/", 1)[-1], trusted, app_id)
        except AbilityError as err:
            lines = text.split("\n")
            line = max(0, min(err.line - 1, len(lines) - 1))
            return [types.Diagnostic(
                range=types.Range(types.Position(line, 0), types.Position(line, len(lines[line]) if lines else 0)),
                message=f"{err.kind}: {err.message}", severity=types.DiagnosticSeverity.Error,
                source="minicloud", code=err.kind)]
        return []
