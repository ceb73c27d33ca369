"""Calling code for a capability, written by Jinja2 templates (one per language).

Only APIs granted by a signed package are generated: an unsigned one gets a message naming the
package to sign. Keys and gateway settings are read from the environment by the generated code,
never written into it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from jinja2 import Environment, PackageLoader, StrictUndefined

from .catalog import Api, Param, load_catalog

LANGUAGES = {"node": "node.js.j2", "python": "python.py.j2", "java": "java.java.j2"}
LANGUAGE_ALIASES = {"javascript": "node", "js": "node", "typescript": "node", "ts": "node", "py": "python"}


class CodegenError(Exception):
    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


@dataclass(frozen=True)
class GeneratedCode:
    method: str
    lang: str
    code: str
    filename: str  # a good file name for it (Java needs the class name)
    function: str


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def function_name(method: str) -> str:
    """alipay.trade.precreate → tradePrecreate (the `alipay.` prefix adds nothing)."""
    parts = method.split(".")
    if parts[0] == "alipay":
        parts = parts[1:]
    return _camel("_".join(parts))


def python_request_class(method: str) -> str:
    """The official Python SDK's request class: alipay.trade.precreate → AlipayTradePrecreateRequest."""
    return "".join(part.capitalize() for part in method.split(".")) + "Request"


def _js_type(p: Param) -> str:
    return {"number": "number", "array": "Array", "object": "object"}.get(p.type, "string")


def _py_type(p: Param) -> str:
    return {"number": "int", "array": "list", "object": "dict"}.get(p.type, "str")


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("codegen", "templates"), undefined=StrictUndefined,
                      keep_trailing_newline=True, autoescape=False)  # noqa: S701 - source code, not HTML
    env.globals.update(js_name=_camel, js_type=_js_type, py_type=_py_type)
    return env


def normalise_lang(lang: str) -> str:
    lang = LANGUAGE_ALIASES.get(lang.lower(), lang.lower())
    if lang not in LANGUAGES:
        raise CodegenError(f"unknown language {lang!r}; expected one of {', '.join(LANGUAGES)}")
    return lang


def check_granted(api: Api, granted: set[str] | None) -> None:
    if granted is None or api.method in granted:
        return
    catalog = load_catalog()
    labels = [p.label for p in catalog.packages_granting(api.method)]
    raise CodegenError(f"{api.method} is not granted by any signed package of this app",
                       hint=f"sign one of {', '.join(labels)}: minicloud abilities grant ENV {labels[0]}")


def generate(method: str, lang: str, granted: set[str] | None) -> GeneratedCode:
    """Code calling `method` in `lang`; `granted` None means: do not check signing (tests, docs)."""
    catalog = load_catalog()
    api = catalog.api(method)
    if api is None:
        close = [a.method for a in catalog.apis if method.split(".")[-1] in a.method]
        raise CodegenError(f"unknown capability {method!r}",
                           hint=f"did you mean {', '.join(close)}?" if close else "minicloud abilities list")
    lang = normalise_lang(lang)
    check_granted(api, granted)
    fn = function_name(method)
    java_class = fn[0].upper() + fn[1:]
    filename = {"node": f"{fn}.js", "python": f"{re.sub(r'(?<!^)(?=[A-Z])', '_', fn).lower()}.py",
                "java": f"{java_class}.java"}[lang]
    # a one-of group is not "required" per parameter; its members go with the optional ones
    required = [p for p in api.params if p.required]
    optional = [p for p in api.params if not p.required]
    granting = [p for p in catalog.packages_granting(method)
                if granted is None or any(m in (granted or set()) for m in p.apis)]
    package = ", ".join(f"{p.name} ({p.product_code})" if p.product_code else p.name for p in granting[:1]) or "-"
    code = _environment().get_template(LANGUAGES[lang]).render(
        api=api, required=required, optional=optional, fn=fn, filename=filename, package=package,
        java_class=java_class, py_request=python_request_class(method))
    return GeneratedCode(method, lang, code, filename, fn)
