"""The key pairs of the local open platform: the platform's (signs ability packages and responses)
and the app's (signs requests, RSA2). One set per workspace, shared by its environments, so that a
package granted once is valid in every env, as one merchant app is on the real platform.

Private keys are written 0600 in a 0700 folder under `.minicloud/`, never printed, never copied into
an image (the sandbox container and the app mount them read-only).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

KEYS_FOLDER = Path(".minicloud") / "sandbox"


@dataclass(frozen=True)
class EnvKeys:
    env: str
    app_id: str
    key_id: str  # names the platform key that signs packages
    folder: Path
    platform_private: Path
    platform_public: Path
    app_private: Path  # PKCS#1 PEM: what the Node SDK reads by default
    app_public: Path


def _paths(workspace: Path, env: str, app_id: str, key_id: str) -> EnvKeys:
    folder = workspace / KEYS_FOLDER
    return EnvKeys(env, app_id, key_id, folder, folder / "platform_private.pem", folder / "platform_public.pem",
                   folder / "app_private.pem", folder / "app_public.pem")


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _new_pair(private_path: Path, public_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_private(private_path, key.private_bytes(serialization.Encoding.PEM,
                                                   serialization.PrivateFormat.TraditionalOpenSSL,
                                                   serialization.NoEncryption()))
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))


def key_id_of(public_pem: bytes) -> str:
    """A short, stable name for a public key (its SHA-256 fingerprint)."""
    return "mc-" + hashlib.sha256(public_pem).hexdigest()[:16]


def env_keys(workspace: Path, env: str) -> EnvKeys | None:
    """The keys when they exist (None before the first `env build`)."""
    meta = workspace / KEYS_FOLDER / "keys.json"
    if not meta.is_file():
        return None
    data = json.loads(meta.read_text())
    keys = _paths(workspace, env, data["app_id"], data["key_id"])
    if not all(p.is_file() for p in (keys.platform_private, keys.platform_public, keys.app_private, keys.app_public)):
        return None
    return keys


def ensure_env_keys(workspace: Path, env: str) -> EnvKeys:
    """Create the key pairs once; later calls return the same ones."""
    found = env_keys(workspace, env)
    if found is not None:
        return found
    folder = workspace / KEYS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    ignore = folder.parent / ".gitignore"  # the state folder ignores itself: keys never reach git
    if not ignore.is_file():
        ignore.write_text("# minicloud's state (keys, database credentials): never commit it\n*\n")
    _new_pair(folder / "platform_private.pem", folder / "platform_public.pem")
    _new_pair(folder / "app_private.pem", folder / "app_public.pem")
    # a sandbox app id in the platform's 16-digit shape, stable for this workspace
    digest = int(hashlib.sha256(str(workspace.resolve()).encode()).hexdigest(), 16)
    app_id = "9021" + str(digest)[-12:]
    key_id = key_id_of((folder / "platform_public.pem").read_bytes())
    (folder / "keys.json").write_text(json.dumps({"app_id": app_id, "key_id": key_id}, indent=2) + "\n")
    return _paths(workspace, env, app_id, key_id)
