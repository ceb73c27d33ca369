"""Signed ability packages: what the platform says an app may call.

A package file (`abilities/<PRODUCT_CODE or name>.json`) is JSON: package name, product code, app id,
the APIs it grants, issue and expiry time, the platform key id, and an RSA2 (SHA256withRSA)
signature over the canonical form (every other field, sorted keys, compact UTF-8 JSON).

Standard library + `cryptography` only: the sandbox gateway's image runs this module too.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from .catalog import load_catalog

FORMAT = "minicloud-ability/1"
FIELDS = ("format", "package", "product_code", "app_id", "apis", "issued_at", "expires_at", "key_id")
KINDS = ("tampered", "expired", "wrong_app", "unknown_key", "invalid")


class AbilityError(Exception):
    """A package file that must not be trusted; `kind` is one of KINDS, `line` where to look (1-based)."""

    def __init__(self, kind: str, message: str, file: str, line: int = 1) -> None:
        super().__init__(f"{file}: {message}")
        self.kind, self.message, self.file, self.line = kind, message, file, line


@dataclass(frozen=True)
class Ability:
    package: str
    product_code: str | None
    app_id: str
    apis: tuple[str, ...]
    issued_at: str
    expires_at: str
    key_id: str
    file: str

    @property
    def label(self) -> str:
        return self.product_code or self.package


def canonical(package: dict[str, Any]) -> bytes:
    body = {k: v for k, v in package.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def sign_package(package_name: str, app_id: str, platform_private_key: Path, key_id: str,
                 days: int = 365, now: dt.datetime | None = None) -> dict[str, Any]:
    """A signed package document granting what the catalog lists for `package_name`."""
    pkg = load_catalog().package(package_name)
    if pkg is None:
        raise KeyError(package_name)
    issued = now or _now()
    doc: dict[str, Any] = {
        "format": FORMAT, "package": pkg.name, "product_code": pkg.product_code, "app_id": app_id,
        "apis": list(pkg.apis), "issued_at": _iso(issued), "expires_at": _iso(issued + dt.timedelta(days=days)),
        "key_id": key_id,
    }
    key = serialization.load_pem_private_key(platform_private_key.read_bytes(), password=None)
    doc["signature"] = base64.b64encode(key.sign(canonical(doc), padding.PKCS1v15(), hashes.SHA256())).decode()
    return doc


def _line_of(text: str, key: str) -> int:
    m = re.search(rf'"{re.escape(key)}"\s*:', text)
    return text.count("\n", 0, m.start()) + 1 if m else 1


def _public_key(value: bytes | str | Path):
    data = Path(value).read_bytes() if isinstance(value, Path) else (value.encode() if isinstance(value, str) else value)
    return serialization.load_pem_public_key(data)


def verify_text(text: str, file: str, trusted_keys: dict[str, bytes | str | Path], app_id: str | None,
                now: dt.datetime | None = None) -> Ability:
    """Check one package document; raise AbilityError saying which check failed."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise AbilityError("invalid", f"not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})",
                           file, err.lineno) from None
    if not isinstance(doc, dict):
        raise AbilityError("invalid", "a package file holds one JSON object", file)
    missing = [k for k in (*FIELDS, "signature") if k not in doc]
    if missing:
        raise AbilityError("invalid", f"missing field(s): {', '.join(missing)}", file)
    if doc["format"] != FORMAT or not isinstance(doc["apis"], list):
        raise AbilityError("invalid", f"unknown format {doc['format']!r} (expected {FORMAT})", file,
                           _line_of(text, "format"))
    key = trusted_keys.get(doc["key_id"])
    if key is None:
        raise AbilityError("unknown_key", f"signed by an unknown key {doc['key_id']!r}; this cloud's platform key is "
                           f"{', '.join(trusted_keys) or 'not created yet'}", file, _line_of(text, "key_id"))
    try:
        signature = base64.b64decode(str(doc["signature"]), validate=True)
        _public_key(key).verify(signature, canonical(doc), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        raise AbilityError("tampered", "the signature does not match the content: the file was changed after "
                           "signing (grant it again)", file, _line_of(text, "signature")) from None
    if app_id is not None and doc["app_id"] != app_id:
        raise AbilityError("wrong_app", f"granted to app {doc['app_id']}, not to this app ({app_id})", file,
                           _line_of(text, "app_id"))
    try:
        expires = dt.datetime.strptime(doc["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except (TypeError, ValueError):
        raise AbilityError("invalid", f"expires_at {doc['expires_at']!r} is not a UTC time like "
                           "2027-01-31T00:00:00Z", file, _line_of(text, "expires_at")) from None
    if expires <= (now or _now()):
        raise AbilityError("expired", f"expired at {doc['expires_at']}", file, _line_of(text, "expires_at"))
    return Ability(doc["package"], doc["product_code"], doc["app_id"], tuple(doc["apis"]), doc["issued_at"],
                   doc["expires_at"], doc["key_id"], file)


def verify_package_file(path: Path, trusted_keys: dict[str, bytes | str | Path], app_id: str | None) -> Ability:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise AbilityError("invalid", f"cannot read: {err}", str(path)) from None
    return verify_text(text, str(path), trusted_keys, app_id)


def load_abilities(folder: Path, trusted_keys: dict[str, bytes | str | Path],
                   app_id: str | None) -> tuple[list[Ability], list[AbilityError]]:
    """Every valid package of `folder`, and an error per file that is not."""
    found: list[Ability] = []
    errors: list[AbilityError] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            found.append(verify_package_file(path, trusted_keys, app_id))
        except AbilityError as err:
            errors.append(err)
    return found, errors


def granted_methods(abilities: list[Ability]) -> set[str]:
    return {m for a in abilities for m in a.apis}


# ------------------------------------------------------------------ the workspace's view (not in the sandbox)
def workspace_trust(workspace: Path, env: str) -> tuple[dict[str, bytes | str | Path], str | None]:
    from .keys import env_keys

    keys = env_keys(workspace, env)
    if keys is None:
        return {}, None
    return {keys.key_id: keys.platform_public}, keys.app_id


def load_workspace_abilities(workspace: Path, env: str = "test") -> tuple[list[Ability], list[AbilityError]]:
    trusted, app_id = workspace_trust(workspace, env)
    return load_abilities(workspace / "abilities", trusted, app_id)


def grant(workspace: Path, env: str, names: list[str], days: int = 365) -> list[Path]:
    """Sign packages for the workspace's app with the local platform key; returns the files written."""
    from .keys import ensure_env_keys

    catalog = load_catalog()
    unknown = [n for n in names if catalog.package(n) is None]
    if unknown:
        known = ", ".join(p.label for p in catalog.packages)
        raise KeyError(f"unknown package(s): {', '.join(unknown)}; known: {known}")
    keys = ensure_env_keys(workspace, env)
    folder = workspace / "abilities"
    folder.mkdir(exist_ok=True)
    written = []
    for name in names:
        pkg = catalog.package(name)
        assert pkg is not None
        doc = sign_package(pkg.name, keys.app_id, keys.platform_private, keys.key_id, days)
        path = folder / f"{pkg.label}.json"
        path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written
