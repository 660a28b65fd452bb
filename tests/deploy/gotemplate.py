"""Static reading of Helm (Go text/template) files, without rendering them.

No Helm binary can be installed where the suite runs, and a home-made renderer
would test itself rather than Helm. What *can* be checked for real without
rendering is read here: the actions of each template (`{{ ... }}`), so that the
tests can verify block structure, the functions called, the named templates
included, and every `.Values` path the chart reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ACTION = re.compile(r"\{\{(-?)(.*?)(-?)\}\}", re.DOTALL)
TOKEN = re.compile(
    r"""
      (?P<string>"(?:\\.|[^"\\])*")
    | (?P<raw>`[^`]*`)
    | (?P<char>'(?:\\.|[^'\\])+')
    | (?P<number>-?\d+(?:\.\d+)?)
    | (?P<field>(?:\$[A-Za-z0-9_]*|)(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\$[A-Za-z0-9_]*|\.)
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<punct>:=|=|\||\(|\)|,)
    | (?P<space>\s+)
    """,
    re.VERBOSE,
)

BLOCK_OPENERS = {"if", "range", "with", "define", "block"}
KEYWORDS = BLOCK_OPENERS | {"else", "end", "template", "break", "continue"}
CONSTANTS = {"true", "false", "nil"}

# Go's text/template built-ins, Helm's own functions, and the Sprig functions
# (https://masterminds.github.io/sprig/) that Helm ships. A call to a name not
# listed here is a typo or a function Helm does not have.
GO_BUILTINS = {
    "and", "or", "not", "len", "index", "slice", "print", "printf", "println",
    "eq", "ne", "lt", "le", "gt", "ge", "call", "html", "js", "urlquery",
}  # fmt: skip
HELM_FUNCTIONS = {
    "include", "tpl", "required", "lookup", "toYaml", "fromYaml", "fromYamlArray",
    "toJson", "fromJson", "fromJsonArray", "toToml", "mustToYaml",
}  # fmt: skip
SPRIG_FUNCTIONS = {
    "default", "empty", "coalesce", "ternary", "fail", "trunc", "trim", "trimAll",
    "trimPrefix", "trimSuffix", "upper", "lower", "title", "replace", "contains",
    "hasPrefix", "hasSuffix", "quote", "squote", "cat", "indent", "nindent",
    "nospace", "repeat", "substr", "b64enc", "b64dec", "sha256sum", "sha1sum",
    "randAlphaNum", "randAlpha", "randNumeric", "randAscii", "list", "append",
    "prepend", "first", "last", "rest", "initial", "uniq", "without", "has",
    "compact", "concat", "join", "split", "splitList", "splitn", "until",
    "untilStep", "seq", "int", "int64", "float64", "toString", "toStrings",
    "atoi", "dict", "get", "set", "unset", "hasKey", "keys", "values", "pick",
    "omit", "merge", "mergeOverwrite", "deepCopy", "kindIs", "typeOf", "kindOf",
    "urlParse", "urlJoin", "base", "dir", "ext", "clean", "regexMatch",
    "regexReplaceAll", "regexFind", "add", "add1", "sub", "div", "mod", "mul",
    "max", "min", "floor", "ceil", "round", "now", "date", "toDate", "semver",
    "semverCompare", "genCA", "genSignedCert", "htpasswd", "derivePassword",
    "sortAlpha", "reverse", "len", "kebabcase", "snakecase", "camelcase",
    "abbrev", "wrap", "plural", "toDecimal", "durationRound", "b32enc", "b32dec",
}  # fmt: skip
KNOWN_FUNCTIONS = GO_BUILTINS | HELM_FUNCTIONS | SPRIG_FUNCTIONS


class TemplateSyntaxError(ValueError):
    """A template whose actions cannot be read or whose blocks do not balance."""


@dataclass(frozen=True)
class Action:
    """One `{{ ... }}` action: its body (trim markers removed) and where it starts."""

    body: str
    line: int

    @property
    def is_comment(self) -> bool:
        return self.body.startswith("/*")

    def tokens(self) -> list[tuple[str, str]]:
        """(kind, text) pairs, spaces dropped; raises on a character Go would reject."""
        out: list[tuple[str, str]] = []
        pos = 0
        while pos < len(self.body):
            match = TOKEN.match(self.body, pos)
            if match is None:
                raise TemplateSyntaxError(
                    f"line {self.line}: cannot read {self.body[pos : pos + 20]!r}"
                )
            kind = match.lastgroup or ""
            if kind != "space":
                out.append((kind, match.group()))
            pos = match.end()
        return out


def actions(text: str) -> list[Action]:
    """Every action of a template, in order, comments included."""
    found = []
    for match in ACTION.finditer(text):
        body = match.group(2).strip()
        if body.startswith("/*") and not body.endswith("*/"):
            raise TemplateSyntaxError(f"unterminated comment at offset {match.start()}")
        found.append(Action(body=body, line=text.count("\n", 0, match.start()) + 1))
    leftover = ACTION.sub("", text)
    if "{{" in leftover or "}}" in leftover:
        line = leftover.split("{{")[0].count("\n") + 1 if "{{" in leftover else 0
        raise TemplateSyntaxError(f"unbalanced braces near line {line}")
    return found


def check_blocks(text: str) -> None:
    """Raise unless if/range/with/define blocks open and close like Go requires."""
    stack: list[tuple[str, int]] = []
    for action in actions(text):
        if action.is_comment:
            continue
        tokens = action.tokens()
        if not tokens or tokens[0][0] != "word":
            continue
        keyword = tokens[0][1]
        if keyword in BLOCK_OPENERS:
            stack.append((keyword, action.line))
        elif keyword == "else":
            if not stack or stack[-1][0] not in {"if", "with", "range"}:
                raise TemplateSyntaxError(f"line {action.line}: else outside if/with/range")
        elif keyword == "end":
            if not stack:
                raise TemplateSyntaxError(f"line {action.line}: end without a block")
            stack.pop()
        elif keyword in {"break", "continue"} and not any(k == "range" for k, _ in stack):
            raise TemplateSyntaxError(f"line {action.line}: {keyword} outside range")
    if stack:
        keyword, line = stack[-1]
        raise TemplateSyntaxError(f"{keyword} opened on line {line} is never closed")


def functions_called(text: str) -> set[str]:
    """Bare identifiers in call position: everything that is not a keyword or constant."""
    names: set[str] = set()
    for action in actions(text):
        if action.is_comment:
            continue
        for kind, value in action.tokens():
            if kind == "word" and value not in KEYWORDS and value not in CONSTANTS:
                names.add(value)
    return names


def defined_templates(text: str) -> set[str]:
    return set(re.findall(r'\{\{-?\s*define\s+"([^"]+)"', text))


def included_templates(text: str) -> set[str]:
    return set(re.findall(r'\b(?:include|template)\s+"([^"]+)"', text))


def values_paths(text: str) -> set[tuple[str, ...]]:
    """Every `.Values.a.b` chain (also `$.Values...` and `.root.Values...`)."""
    paths = set()
    for action in actions(text):
        if action.is_comment:
            continue
        for match in re.finditer(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", action.body):
            paths.add(tuple(match.group(1).lstrip(".").split(".")))
    return paths


def range_bindings(text: str) -> list[tuple[str, tuple[str, ...]]]:
    """(`$var`, values path) for every `range $key, $var := .Values.x` (var = each child)."""
    pattern = re.compile(
        r"range\s+\$[A-Za-z0-9_]+\s*,\s*(\$[A-Za-z0-9_]+)\s*:=\s*\$?\.Values((?:\.[A-Za-z_]\w*)+)"
    )
    return [
        (m.group(1), tuple(m.group(2).lstrip(".").split(".")))
        for action in actions(text)
        if not action.is_comment
        for m in [pattern.search(action.body)]
        if m
    ]


def variable_paths(text: str, variable: str) -> set[tuple[str, ...]]:
    """Every `$var.a.b` chain read from a given variable."""
    pattern = re.compile(re.escape(variable) + r"((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
    found = set()
    for action in actions(text):
        if action.is_comment:
            continue
        for match in pattern.finditer(action.body):
            found.add(tuple(match.group(1).lstrip(".").split(".")))
    return found


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")
