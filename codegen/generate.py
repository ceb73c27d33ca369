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


ENV_PLACEHOLDER = "ENV"  # in hints; the caller, who knows the environment, names it (`hint_for`)


class CodegenError(Exception):
    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint

    def hint_for(self, env: str) -> str | None:
        """The hint with the environment's own name, as the editor's diagnostics say it."""
        return self.hint.replace(f" {ENV_PLACEHOLDER} ", f" {env} ") if self.hint else None


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
                       hint=f"sign one of {', '.join(labels)}: minicloud abilities grant {ENV_PLACEHOLDER} {labels[0]}")


JAVA_IMPORTS = tuple(f"import {name};" for name in (
    "java.io.ByteArrayInputStream", "java.net.URI", "java.net.URLEncoder", "java.net.http.HttpClient",
    "java.net.http.HttpRequest", "java.net.http.HttpResponse", "java.nio.charset.StandardCharsets",
    "java.nio.file.Files", "java.nio.file.Path", "java.security.KeyFactory", "java.security.KeyStore",
    "java.security.PrivateKey", "java.security.PublicKey", "java.security.Signature",
    "java.security.cert.CertificateFactory", "java.security.spec.PKCS8EncodedKeySpec",
    "java.security.spec.X509EncodedKeySpec", "java.time.LocalDateTime", "java.time.format.DateTimeFormatter",
    "java.util.Base64", "java.util.LinkedHashMap", "java.util.Map", "java.util.TreeMap",
    "java.util.stream.Collectors", "javax.net.ssl.SSLContext", "javax.net.ssl.TrustManagerFactory"))
# what the client set-up of a Python file imports; each call adds the import of its request class
PYTHON_SETUP_IMPORTS = ("import json", "import os", "import re", "import ssl", "import urllib.request",
                        "from alipay.aop.api.AlipayClientConfig import AlipayClientConfig",
                        "from alipay.aop.api.DefaultAlipayClient import DefaultAlipayClient",
                        "from alipay.aop.api.util.SignatureUtils import verify_with_rsa")


def python_request_import(method: str) -> str:
    cls = python_request_class(method)
    return f"from alipay.aop.api.request.{cls} import {cls}"


def template_context(method: str, lang: str, granted: set[str] | None) -> dict:
    """What every template of `method` in `lang` reads (checked: known, granted); see `render`."""
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
    py_imports = ["from __future__ import annotations", "", *PYTHON_SETUP_IMPORTS[:4], "import sys",
                  PYTHON_SETUP_IMPORTS[4], "",
                  *PYTHON_SETUP_IMPORTS[5:7], python_request_import(method), PYTHON_SETUP_IMPORTS[7]]
    return dict(api=api, required=required, optional=optional, fn=fn, filename=filename, package=package,
                java_class=java_class, py_request=python_request_class(method), lang=lang,
                py_imports=py_imports, java_imports=JAVA_IMPORTS)


def render(template: str, context: dict, **extra) -> str:
    """One template (a whole file, or a part under `node/`, `python/`, `java/`) with `context`."""
    return _environment().get_template(template).render(**context, **extra)


def generate(method: str, lang: str, granted: set[str] | None) -> GeneratedCode:
    """A whole standalone file calling `method` in `lang`; `granted` None means: do not check signing
    (tests, docs). To add a call to an existing file, see `codegen.compose.insert_call`."""
    ctx = template_context(method, lang, granted)
    code = render(LANGUAGES[ctx["lang"]], ctx)
    return GeneratedCode(method, ctx["lang"], code, ctx["filename"], ctx["fn"])
