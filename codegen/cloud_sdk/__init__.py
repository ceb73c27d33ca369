"""The data API's client SDKs (docs/data-api.md): one self-contained file per language, which a workspace
gets a copy of (`minicloud codegen cloud-sdk --lang js|python`): a mini-program front end has no package
manager to fetch it with, and a function's folder ships what it imports."""

from __future__ import annotations

from importlib import resources

FILES = {"js": "minicloud-cloud.js", "python": "minicloud_cloud.py"}
ALIASES = {"node": "js", "javascript": "js", "js": "js", "python": "python", "py": "python"}


def sdk_file(lang: str) -> tuple[str, str]:
    """(file name, source) of the SDK for `lang` (js, node, python); ValueError for another."""
    key = ALIASES.get(lang.lower())
    if key is None:
        raise ValueError(f"--lang {lang}: the cloud SDK exists for js (front ends, Node) and python")
    name = FILES[key]
    return name, (resources.files(__package__) / name).read_text(encoding="utf-8")
