"""The capability catalog: product packages and the APIs they grant, read from `catalog/*.json`.

Standard library only: the sandbox gateway's image runs this module too.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CATALOG_DIR = Path(__file__).parent / "catalog"


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # string | price | number | array | object
    required: bool
    description: str
    max_length: int | None = None
    example: str | None = None
    enum: tuple[str, ...] = ()


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    description: str
    example: str | None = None


@dataclass(frozen=True)
class Api:
    method: str
    title: str
    description: str
    call: str  # exec (a request with a JSON answer) | page (a page form) | sdk (a signed order string)
    http_method: str
    v3_path: str | None
    biz_content: bool  # False: parameters are top-level (alipay.system.oauth.token)
    params: tuple[Param, ...]
    one_of: tuple[tuple[str, ...], ...]
    response: tuple[Field, ...]
    packages: tuple[str, ...] = ()  # names of the packages that grant it

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    @property
    def required(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.required)

    @property
    def response_key(self) -> str:
        return self.method.replace(".", "_") + "_response"


@dataclass(frozen=True)
class ProductPackage:
    name: str
    product_code: str | None
    description: str
    apis: tuple[str, ...]

    @property
    def label(self) -> str:
        """How users name it: the product code where it has one, else its Chinese name."""
        return self.product_code or self.name


@dataclass
class Catalog:
    packages: tuple[ProductPackage, ...]
    apis: tuple[Api, ...]
    _by_method: dict[str, Api] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_method = {a.method: a for a in self.apis}

    def api(self, method: str) -> Api | None:
        return self._by_method.get(method)

    def api_by_v3_path(self, path: str) -> Api | None:
        return next((a for a in self.apis if a.v3_path == path), None)

    def package(self, name: str) -> ProductPackage | None:
        """By product code (any case) or Chinese name."""
        for p in self.packages:
            if name == p.name or (p.product_code and name.upper() == p.product_code):
                return p
        return None

    def packages_granting(self, method: str) -> list[ProductPackage]:
        return [p for p in self.packages if method in p.apis]

    def missing_params(self, method: str, given: dict[str, Any] | set[str]) -> list[str]:
        """Required parameters not given; a one-of group missing entirely reads `a|b`."""
        api = self.api(method)
        if api is None:
            return []
        present = {k for k in given if (given[k] not in (None, "") if isinstance(given, dict) else True)}
        missing = [p.name for p in api.required if p.name not in present]
        missing += ["|".join(group) for group in api.one_of if not present & set(group)]
        return missing


def _load(data_apis: list[dict[str, Any]], data_packages: list[dict[str, Any]]) -> Catalog:
    packages = tuple(ProductPackage(p["name"], p.get("product_code"), p["description"], tuple(p["apis"]))
                     for p in data_packages)
    apis = []
    for a in data_apis:
        apis.append(Api(
            method=a["method"], title=a["title"], description=a["description"], call=a["call"],
            http_method=a["http_method"], v3_path=a.get("v3_path"), biz_content=a["biz_content"],
            params=tuple(Param(p["name"], p["type"], p["required"], p["description"], p.get("max_length"),
                               p.get("example"), tuple(p.get("enum", ()))) for p in a["params"]),
            one_of=tuple(tuple(g) for g in a.get("one_of", ())),
            response=tuple(Field(f["name"], f["type"], f["description"], f.get("example")) for f in a["response"]),
            packages=tuple(p.name for p in packages if a["method"] in p.apis),
        ))
    return Catalog(packages, tuple(apis))


@functools.cache
def load_catalog() -> Catalog:
    apis = json.loads((CATALOG_DIR / "apis.json").read_text(encoding="utf-8"))["apis"]
    packages = json.loads((CATALOG_DIR / "packages.json").read_text(encoding="utf-8"))["packages"]
    return _load(apis, packages)
