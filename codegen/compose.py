"""Calls added to an existing file: the imports and the client set-up once, one function per call.

`insert_call(source, method, lang, cursor_line, granted)` answers the text edits (LSP-like ranges,
characters in UTF-16 code units) that add a call of `method` to `source`:

- the set-up (the SDK client, between the marker comments `minicloud: alipay client` and
  `minicloud: end alipay client`) is written once, near the top of the file (in a Java class: a
  nested class at its end), and found again by its marker or by its names;
- imports are merged: only those the file does not already have are added, each once;
- one function per call, at the cursor when the cursor is where a declaration may go, else at the
  next such place after it (never inside another function, never before the imports or the set-up);
  a function already in the file is not added again.

It fits the file's module style: CommonJS (`module.exports.fn = fn`, placed after any
`module.exports = …` of the file so that it is not lost), ES modules (`export async function`), an
Egg service/controller class (a method in the class body), Python (a `def`), and a Java class (a
static method, before the class's closing brace). It is pure: text in, edits out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .generate import (
    JAVA_IMPORTS,
    PYTHON_SETUP_IMPORTS,
    generate,
    python_request_import,
    render,
    template_context,
)

SETUP_MARKER = "minicloud: alipay client"
SETUP_END_MARKER = "minicloud: end alipay client"
EGG_BASES = {"Service", "Controller", "Subscription", "BaseContextClass"}


@dataclass(frozen=True)
class Edit:
    """Replace the text from (line, character) to (end_line, end_character) by `new_text`; lines count
    from 0 and characters are UTF-16 code units, as in LSP. The edits of one answer never overlap."""

    line: int
    character: int
    end_line: int
    end_character: int
    new_text: str


def apply_edits(source: str, edits: list[Edit]) -> str:
    """`source` with `edits` applied (as an editor applies a WorkspaceEdit's text edits)."""
    lines = source.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)

    def offset(line: int, character: int) -> int:
        if line >= len(lines):
            return len(source)
        return starts[line] + _from_utf16(lines[line], character)

    out = source
    for edit in sorted(edits, key=lambda e: (e.line, e.character), reverse=True):
        out = out[:offset(edit.line, edit.character)] + edit.new_text + out[offset(edit.end_line, edit.end_character):]
    return out


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _from_utf16(text: str, units: int) -> int:
    count = 0
    for i, ch in enumerate(text):
        if count >= units:
            return i
        count += 2 if ord(ch) > 0xFFFF else 1
    return len(text)


# ---------------------------------------------------------------- scanning

@dataclass
class _Scan:
    lines: list[str]  # the source's lines (without "\r")
    masked: list[str]  # the same, with comments and the insides of strings blanked
    depth: list[int]  # bracket depth ((, [, {) where each line starts
    clean: list[bool]  # the line starts outside any comment or string

    def significant_before(self, line: int) -> int | None:
        """The last line before `line` holding code (not blank, not only a comment)."""
        for i in range(line - 1, -1, -1):
            if self.masked[i].strip():
                return i
        return None

    def is_comment(self, line: int) -> bool:
        return bool(self.lines[line].strip()) and not self.masked[line].strip()


def _scan(source: str, kind: str) -> _Scan:
    """Masks comments and strings of `kind` ("js", "java", "python") and measures bracket depth."""
    text = source.replace("\r\n", "\n")
    out: list[str] = []
    depth = 0
    depths, clean = [0], [True]
    state = "code"  # code, line, block, str, template, triple
    quote = ""
    templates: list[int] = []  # JS: the depth at which each open `${` returns to its template
    last = ""  # the last significant code character (for JS regular expressions)
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if ch == "\n":
            out.append("\n")
            if state == "line":
                state = "code"
            if state == "str" and kind != "python":
                state = "code"  # an unterminated string ends at the line's end (broken code stays local)
            depths.append(depth)
            clean.append(state == "code")
            i += 1
            continue
        if state == "code":
            if kind == "python" and ch == "#" or kind != "python" and ch == "/" and nxt == "/":
                state = "line"
                out.append(" ")
            elif kind != "python" and ch == "/" and nxt == "*":
                state = "block"
                out.append("  ")
                i += 2
                continue
            elif kind == "js" and ch == "/" and (last == "" or last in "(,=:[!&|?{};+-*%<>~^"):
                j = i + 1  # a regular expression literal
                in_class = False
                while j < n and text[j] != "\n":
                    if text[j] == "\\":
                        j += 2
                        continue
                    if text[j] == "[":
                        in_class = True
                    elif text[j] == "]":
                        in_class = False
                    elif text[j] == "/" and not in_class:
                        break
                    j += 1
                closed = j < n and text[j] == "/"
                out.append("/" + " " * (j - i - 1) + ("/" if closed else ""))
                i = j + 1 if closed else j
                last = "/"
                continue
            elif ch in "\"'" or (ch == "`" and kind == "js"):
                if kind in ("python", "java") and text.startswith(ch * 3, i) and ch != "'" or (
                        kind == "python" and text.startswith(ch * 3, i)):
                    state, quote = "triple", ch * 3
                    out.append(quote)
                    i += 3
                    continue
                state, quote = ("template", "`") if ch == "`" else ("str", ch)
                out.append(ch)
            elif ch == "}" and templates and depth == templates[-1]:
                templates.pop()
                state, quote = "template", "`"
                out.append(" ")
            else:
                if ch in "([{":
                    depth += 1
                elif ch in ")]}":
                    depth = max(0, depth - 1)
                out.append(ch)
                if not ch.isspace():
                    last = ch
        elif state == "line":
            out.append(" ")
        elif state == "block":
            if ch == "*" and nxt == "/":
                state = "code"
                out.append("  ")
                i += 2
                continue
            out.append(" ")
        elif state in ("str", "template", "triple"):
            if ch == "\\":
                out.append(" " if nxt == "\n" else "  ")
                i += 1 if nxt == "\n" else 2
                continue
            if state == "template" and ch == "$" and nxt == "{":
                templates.append(depth)
                state = "code"
                out.append("  ")
                i += 2
                continue
            if text.startswith(quote, i):
                state = "code"
                out.append(quote)
                i += len(quote)
                last = quote[0]
                continue
            out.append(" ")
        i += 1
    masked = "".join(out).split("\n")
    return _Scan(text.split("\n"), masked, depths, clean)


def _statement_end(scan: _Scan, line: int) -> int:
    """The last line of the statement that starts on `line` (it goes on while brackets are open)."""
    end = line
    while end + 1 < len(scan.lines) and (scan.depth[end + 1] > 0 or not scan.clean[end + 1]
                                         or scan.masked[end].rstrip().endswith("\\")):
        end += 1
    return end


# ---------------------------------------------------------------- planning edits

@dataclass
class _Block:
    line: int  # inserted before this line (len(lines): at the end)
    text: str  # without a trailing newline
    gap: int  # blank lines wanted around it
    character: int | None = None  # inside a line (before a `}` that shares its line)


def _edits(source: str, blocks: list[_Block]) -> list[Edit]:
    """Blocks at the same place become one edit (in order), each set off by its blank lines."""
    lines = source.replace("\r\n", "\n").split("\n")
    eol = "\r\n" if "\r\n" in source else "\n"
    last = len(lines) - 1  # after a final newline, lines[last] is the empty rest
    merged: dict[tuple[int, int], list[_Block]] = {}
    for block in blocks:
        key = (min(block.line, len(lines)), -1 if block.character is None else block.character)
        merged.setdefault(key, []).append(block)
    out = []
    for (line, character), group in sorted(merged.items()):
        body = group[0].text
        for prev, block in zip(group, group[1:], strict=False):
            body += "\n" * (max(prev.gap, block.gap) + 1) + block.text
        gap, after = group[0].gap, group[-1].gap
        if character >= 0:  # before a `}` that follows code on its line
            row = lines[line]
            new = "\n" + body + "\n" + row[:len(row) - len(row.lstrip())]
            at = _utf16(row[:character])
            out.append(Edit(line, at, line, at, new.replace("\n", eol)))
            continue
        if line >= len(lines) and lines[last] != "":  # no newline at the end: a new line after the last
            at = _utf16(lines[last])
            new = "\n" + "\n" * gap + body + "\n"
            out.append(Edit(last, at, last, at, new.replace("\n", eol)))
            continue
        line = min(line, last)
        above, i = 0, line - 1
        while i >= 0 and not lines[i].strip():
            above, i = above + 1, i - 1
        below, j = 0, line
        while j < last and not lines[j].strip():
            below, j = below + 1, j + 1
        new = "\n" * (max(0, gap - above) if i >= 0 else 0) + body + "\n"
        if (j < last or lines[last].strip()) and not lines[j].strip().startswith("}"):
            new += "\n" * max(0, after - below)
        out.append(Edit(line, 0, line, 0, new.replace("\n", eol)))
    return out


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line if line.strip() else "" for line in text.split("\n"))


# ---------------------------------------------------------------- JavaScript

JS_IMPORT = re.compile(r"^\s*import\b(?!\s*[.(])")
JS_EXPORT = re.compile(r"^\s*export\b")
JS_REQUIRE = re.compile(r"^\s*(?:const|let|var)\b.*\brequire\s*\(")
JS_STRICT = re.compile(r"""^\s*(['"])use strict\1;?\s*$""")
JS_NODE_FS = re.compile(r"""^\s*(?:(?:const|let|var)\s+(?P<a>[\w$]+)\s*=\s*require\(\s*['"](?:node:)?fs['"]\s*\)"""
                        r"""|import\s+(?:\*\s+as\s+)?(?P<b>[\w$]+)\s+from\s+['"](?:node:)?fs['"])\s*;?\s*(?://.*)?$""")
JS_SDK = re.compile(r"""\bAlipaySdk\b[^;\n]*(?:require\(\s*|from\s+)['"]alipay-sdk['"]""")
JS_CONTINUES = tuple(".)]}?:,+-*/%&|^=<>")
JS_OPEN_ENDS = tuple("=+-*/%&|^!?:,.<>([")
JS_CONTROL = re.compile(r"^\s*(?:}\s*)?(?:if|for|while|else|do|switch|with)\b")
EGG_CLASS = re.compile(r"\bclass\s+([A-Za-z_$][\w$]*)\s+extends\s+((?:[\w$]+\.)*([\w$]+))\s*\{")


def _js_boundary(scan: _Scan, line: int, depth: int) -> bool:
    """May a declaration start on `line`, at bracket depth `depth`?"""
    if line >= len(scan.lines):
        return True
    if not scan.clean[line] or scan.depth[line] != depth:
        return False
    code = scan.masked[line].strip()
    if code and (code.startswith(JS_CONTINUES) or re.match(r"(?:else|catch|finally)\b", code)):
        return False
    prev = scan.significant_before(line)
    if prev is None:
        return True
    before = scan.masked[prev].rstrip()
    if before.endswith(("{", ";", "}")):
        return True
    return not before.endswith(JS_OPEN_ENDS) and not JS_CONTROL.match(scan.masked[prev])


def _attach_comments(scan: _Scan, line: int, floor: int) -> int:
    """Before the comment lines directly above `line` (they document what follows them)."""
    while line - 1 >= floor and line - 1 < len(scan.lines) and scan.is_comment(line - 1):
        line -= 1
    return line


def _place(scan: _Scan, cursor: int, floor: int, stop: int, ok) -> int:
    """The first line at or after the cursor (not before `floor`, at most `stop`) where `ok` holds."""
    line = max(cursor, floor)
    while line < stop and not ok(line):
        line += 1
    line = min(line, stop)
    if line < len(scan.lines) and scan.masked[line].strip():
        line = _attach_comments(scan, line, floor)
    return line


def _js_header_end(scan: _Scan) -> int:
    """The line after the shebang, the 'use strict' directive and the imports/requires at the top."""
    end, i = 0, 0
    while i < len(scan.lines):
        line, code = scan.lines[i], scan.masked[i]
        if i == 0 and line.startswith("#!"):
            end = i = 1
            continue
        if not code.strip():
            i += 1
            continue
        if scan.depth[i] == 0 and (JS_STRICT.match(line) or JS_IMPORT.match(code) or JS_REQUIRE.match(code)):
            i = end = _statement_end(scan, i) + 1
            continue
        break
    return end


def _insert_js(source: str, ctx: dict, cursor: int) -> list[Edit]:
    scan = _scan(source, "js")
    text = "\n".join(scan.lines)
    fn = ctx["fn"]
    top = [i for i in range(len(scan.lines)) if scan.depth[i] == 0 and scan.clean[i]]
    esm = any(JS_IMPORT.match(scan.masked[i]) or JS_EXPORT.match(scan.masked[i]) for i in top)
    style = "esm" if esm else "cjs"
    masked = "\n".join(scan.masked)
    egg = next((m for m in EGG_CLASS.finditer(masked) if m.group(3) in EGG_BASES), None)
    blocks: list[_Block] = []

    header = _js_header_end(scan)
    has_setup = SETUP_MARKER in text or re.search(r"\bfunction\s+alipayClient\s*\(", masked) is not None
    floor = header
    if has_setup:
        ends = [i for i, line in enumerate(scan.lines) if SETUP_END_MARKER in line]
        if ends:
            floor = max(floor, ends[0] + 1)
    else:
        fs_name, need_fs = "fs", True
        for i in top:
            m = JS_NODE_FS.match(scan.lines[i])
            if m:
                fs_name, need_fs = m.group("a") or m.group("b"), False
                break
        else:
            taken = any(re.match(r"\s*(?:const|let|var|function|class|import)\b[^;]*(?<![\w$.])fs\b",
                                 scan.masked[i]) for i in top)
            if taken:
                fs_name = "alipayFs"
        need_sdk = not any(JS_SDK.search(scan.lines[i]) for i in top)
        blocks.append(_Block(header, render("node/setup.j2", ctx, style=style, fs_name=fs_name, need_fs=need_fs,
                                            need_sdk=need_sdk).rstrip("\n"), 1))

    name = re.escape(fn)
    exists = re.search(rf"\bfunction\s*\*?\s*{name}\s*\(|^[ \t]*(?:static\s+)?(?:async\s+)?{name}\s*\([^)]*\)\s*\{{",
                       masked, re.MULTILINE)
    if exists:
        return _edits(source, blocks)

    if egg is not None:
        open_at = egg.end() - 1
        open_line = masked.count("\n", 0, open_at)
        body_depth = scan.depth[open_line] + masked.split("\n")[open_line][:open_at - masked.rfind("\n", 0, open_at) - 1] \
            .count("{") - masked.split("\n")[open_line][:open_at - masked.rfind("\n", 0, open_at) - 1].count("}") + 1
        close_line, close_col = _matching_close(scan, open_line, open_at - masked.rfind("\n", 0, open_at) - 1)
        member = _member_indent(scan, open_line, close_line, body_depth, default="  ")
        method = _indent(render("node/function.j2", ctx, style="class").rstrip("\n"), member)
        if open_line < cursor <= close_line:
            line = _place(scan, cursor, max(floor, open_line + 1), close_line,
                          lambda i: i == close_line or _js_boundary(scan, i, body_depth))
        else:
            line = close_line
        if line == close_line and scan.masked[close_line][:close_col].strip():
            blocks.append(_Block(close_line, method, 1, character=close_col))
        else:
            blocks.append(_Block(line, method, 1))
        return _edits(source, blocks)

    function = render("node/function.j2", ctx, style=style).rstrip("\n")
    line = _place(scan, cursor, floor, len(scan.lines), lambda i: _js_boundary(scan, i, 0))
    if style == "cjs":
        # a `module.exports = …` of the file after the function would drop the added property:
        # the export then goes after the file's own
        later = [i for i in top if i >= line and re.match(r"\s*(?:module\.)?exports\s*=(?!=)", scan.masked[i])]
        if later:
            function, export = function.rsplit("\n", 1)
            blocks.append(_Block(line, function, 1))
            blocks.append(_Block(_statement_end(scan, later[-1]) + 1, export, 0))
            return _edits(source, blocks)
    blocks.append(_Block(line, function, 1))
    return _edits(source, blocks)


def _matching_close(scan: _Scan, line: int, col: int) -> tuple[int, int]:
    """The (line, column) of the bracket closing the one at (line, col)."""
    level = 0
    for i in range(line, len(scan.masked)):
        row = scan.masked[i]
        for j in range(col if i == line else 0, len(row)):
            if row[j] in "([{":
                level += 1
            elif row[j] in ")]}":
                level -= 1
                if level == 0:
                    return i, j
    return len(scan.masked) - 1, len(scan.masked[-1])


def _member_indent(scan: _Scan, open_line: int, close_line: int, body_depth: int, default: str) -> str:
    for i in range(open_line + 1, close_line):
        if scan.clean[i] and scan.depth[i] == body_depth and scan.masked[i].strip():
            line = scan.lines[i]
            return line[:len(line) - len(line.lstrip())]
    line = scan.lines[open_line]
    return line[:len(line) - len(line.lstrip())] + default


# ---------------------------------------------------------------- Python

PY_IMPORT = re.compile(r"^(?:import|from)\s")
PY_NOT_START = re.compile(r"(?:else|elif|except|finally|case)\b|[)\]}]")


def _py_statements(scan: _Scan):
    """(first line, last line, text) of each top-level statement."""
    i = 0
    while i < len(scan.lines):
        if scan.clean[i] and scan.depth[i] == 0 and scan.masked[i][:1].strip():
            end = _statement_end(scan, i)
            yield i, end, " ".join(scan.lines[i:end + 1])
            i = end + 1
        else:
            i += 1


def _py_imported(scan: _Scan) -> set[str]:
    """Each top-level import, normalised to one `import x` / `from m import n` line per name."""
    have = set()
    for _, _, stmt in _py_statements(scan):
        stmt = re.sub(r"#.*", "", stmt).replace("\\", " ")
        m = re.match(r"from\s+([\w.]+)\s+import\s+\(?([^)]*)\)?", stmt)
        if m:
            for part in m.group(2).split(","):
                words = part.split()
                if words and (len(words) == 1 or words[-1] == words[0]):
                    have.add(f"from {m.group(1)} import {words[0]}")
            continue
        m = re.match(r"import\s+(.+)", stmt)
        if m:
            for part in m.group(1).split(","):
                words = part.split()
                if len(words) == 1:
                    have.add(f"import {words[0]}")
    return have


def _py_boundary(scan: _Scan, line: int) -> bool:
    if line >= len(scan.lines):
        return True
    if not scan.clean[line] or scan.depth[line] != 0:
        return False
    code = scan.masked[line]
    if code.strip():
        if code[:1].isspace() or PY_NOT_START.match(code):
            return False
    else:  # a blank (or comment) line: where the next code line is a top-level statement
        nxt = next((i for i in range(line + 1, len(scan.lines)) if scan.masked[i].strip()), None)
        if nxt is not None and not _py_boundary(scan, nxt):
            return False
    prev = scan.significant_before(line)
    if prev is None:
        return True
    before = scan.masked[prev].strip()
    return not before.startswith("@") and not before.endswith((":", "\\"))


def _insert_python(source: str, ctx: dict, cursor: int) -> list[Edit]:
    scan = _scan(source, "python")
    text = "\n".join(scan.lines)
    statements = list(_py_statements(scan))
    header = 0
    for index, (_first, last, stmt) in enumerate(statements):
        docstring = index == 0 and re.match(r"[rRbBuU]?['\"]", stmt)
        if docstring or PY_IMPORT.match(stmt):
            header = last + 1
            continue
        break
    have = _py_imported(scan)
    wanted = [*PYTHON_SETUP_IMPORTS, python_request_import(ctx["api"].method)]
    missing = [imp for imp in wanted if imp not in have]
    blocks: list[_Block] = []
    if missing:
        blocks.append(_Block(header, "\n".join(missing), 0 if any(PY_IMPORT.match(s) for _, _, s in statements)
                             else 1))
    has_setup = SETUP_MARKER in text or re.search(r"^def _alipay_send\(", text, re.MULTILINE) is not None
    floor = header
    if has_setup:
        ends = [i for i, line in enumerate(scan.lines) if SETUP_END_MARKER in line]
        floor = max(floor, ends[0] + 1) if ends else floor
    else:
        blocks.append(_Block(header, render("python/setup.j2", ctx).rstrip("\n"), 2))
    if re.search(rf"^(?:async\s+)?def\s+{re.escape(ctx['fn'])}\s*\(", text, re.MULTILINE) is None:
        line = _place(scan, cursor, floor, len(scan.lines), lambda i: _py_boundary(scan, i))
        blocks.append(_Block(line, render("python/function.j2", ctx).rstrip("\n"), 2))
    return _edits(source, blocks)


# ---------------------------------------------------------------- Java

JAVA_CLASS = re.compile(r"\b(?:(?:public|final|abstract|sealed|non-sealed|strictfp)\s+)*class\s+(\w+)[^{;]*\{")


def _insert_java(source: str, ctx: dict, cursor: int) -> list[Edit]:
    scan = _scan(source, "java")
    text = "\n".join(scan.lines)
    masked = "\n".join(scan.masked)
    classes = [m for m in JAVA_CLASS.finditer(masked)
               if scan.depth[masked.count("\n", 0, m.start())] == 0]
    if not classes:  # no class yet: the whole standalone class
        code = generate(ctx["api"].method, "java", None).code.rstrip("\n")
        return _edits(source, [_Block(len(scan.lines), code, 1)])
    cls = next((m for m in classes if "public" in m.group(0).split("class")[0]), classes[0])
    open_at = cls.end() - 1
    open_line = masked.count("\n", 0, open_at)
    open_col = open_at - (masked.rfind("\n", 0, open_at) + 1)
    close_line, close_col = _matching_close(scan, open_line, open_col)
    body_depth = scan.depth[open_line] + 1 + scan.masked[open_line][:open_col].count("{") \
        - scan.masked[open_line][:open_col].count("}")
    blocks: list[_Block] = []

    # imports: after the last import, else after the package line, each once (a wildcard covers its package)
    imports = {m.group(1) for m in re.finditer(r"^\s*import\s+([\w.*]+)\s*;", text, re.MULTILINE)}
    missing = []
    for line in JAVA_IMPORTS:
        name = line[len("import "):-1]
        if name not in imports and name.rsplit(".", 1)[0] + ".*" not in imports:
            missing.append(line)
    import_lines = [i for i in range(open_line) if re.match(r"\s*import\s", scan.masked[i])]
    package = next((i for i in range(open_line) if re.match(r"\s*package\s", scan.masked[i])), None)
    if missing:
        if import_lines:
            blocks.append(_Block(_statement_end(scan, import_lines[-1]) + 1, "\n".join(missing), 0))
        else:
            at = _statement_end(scan, package) + 1 if package is not None else 0
            blocks.append(_Block(at, "\n".join(missing), 1))

    setup_start = next((i for i in range(open_line, close_line) if SETUP_MARKER in scan.lines[i]
                        and SETUP_END_MARKER not in scan.lines[i]), None)
    has_setup = setup_start is not None or re.search(r"\bclass\s+MinicloudAlipay\b", masked) is not None
    fn = ctx["fn"]
    exists = re.search(rf"[\w>\]]\s+{re.escape(fn)}\s*\(", masked) is not None
    end_line = setup_start if setup_start is not None else close_line
    inline_close = scan.masked[close_line][:close_col].strip() != ""
    if not exists:
        method = render("java/method.j2", ctx).rstrip("\n")
        if open_line < cursor < end_line:
            line = _place(scan, cursor, open_line + 1, end_line,
                          lambda i: i == end_line or _java_boundary(scan, i, body_depth))
        else:
            line = end_line
        if line == close_line and inline_close:
            blocks.append(_Block(close_line, method, 1, character=close_col))
        else:
            blocks.append(_Block(line, method, 1))
    if not has_setup:
        setup = render("java/setup.j2", ctx).rstrip("\n")
        if inline_close:
            blocks.append(_Block(close_line, setup, 1, character=close_col))
        else:
            blocks.append(_Block(close_line, setup, 1))
    return _edits(source, blocks)


def _java_boundary(scan: _Scan, line: int, depth: int) -> bool:
    if not scan.clean[line] or scan.depth[line] != depth:
        return False
    code = scan.masked[line].strip()
    if code.startswith(tuple(".)]}?:,+-*/%&|^=<>")):
        return False
    prev = scan.significant_before(line)
    if prev is None:
        return True
    before = scan.masked[prev].strip()
    return before.endswith((";", "}", "{")) and not before.startswith("@")


# ---------------------------------------------------------------- entry point

def insert_call(source: str, method: str, lang: str, cursor_line: int, granted: set[str] | None) -> list[Edit]:
    """The edits that add a call of `method` to `source` (a whole file in `lang`) at `cursor_line`;
    `granted` None means: do not check signing. Raises `CodegenError` like `generate`."""
    ctx = template_context(method, lang, granted)
    cursor = max(0, cursor_line)
    return {"node": _insert_js, "python": _insert_python, "java": _insert_java}[ctx["lang"]](source, ctx, cursor)
