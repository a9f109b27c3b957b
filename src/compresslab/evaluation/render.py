"""Numbers in Markdown are generated from the files they come from, never typed.

A number in a committed Markdown file (README, docs/, experiments/**/README.md, reproduction reports) sits between
two HTML comments (invisible when rendered) that name its source::

    factorized: <!--v experiments/rd_cpu_proxy/summary.json :: rows[curve=factorized].bd_rate_vs_kodak/vtm :: {:+.1f} % -->+297.5 %<!--/v-->

- the source: a JSON file (rd.json, summary.json, per_lambda.json ...), a CSV file, a generated Markdown table
  (its first table; rows as ``rows``; a benchmark's .txt output reads the same way) or a YAML file (a paper's published values in conf/reproduce/<paper>.yaml),
  relative to the repository root;
- the selector: keys separated by ``.`` (a number picks a list element by position); ``name[key=value]`` picks the one list element whose ``key`` equals
  ``value`` (compared as text, and as numbers when both parse); a selector may end in a list when it starts with an
  aggregate, ``sum:`` ``mean:`` ``min:`` ``max:`` ``count:``; selectors combine with `` + - * / `` and parentheses
  (operators between spaces), e.g. side bits over all bits: ``sum:a.side / ( sum:a.side + sum:a.y )``;
- the format: Python's ``str.format`` with the value (``{:+.1f} %``, ``{:.2%}``); a negative number gets the
  typographic minus (−) the prose uses; ``None`` (a refused BD-rate) renders as ``refused``.

``compresslab results render`` rewrites the text between the markers from the sources; ``compresslab results check``
renders in memory and fails, naming file, line, expected and found, when a committed number differs from what its
source gives (CI runs it as a test), or when a source or key is missing. It also fails on a *typed* result number
in the hand-written result pages (README.md, experiments/**/README.md): a signed or decimal number with a unit
(%, dB, bpp) outside markers, code and comments; recipe settings ("cosine to 5 %", "≥ 1 dB") are unsigned integers
and pass.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

MARKER = re.compile(r"<!--v (?P<spec>.*?) -->(?P<text>.*?)<!--/v-->", re.S)
AGGREGATES = {"sum": sum, "mean": lambda v: sum(v) / len(v), "min": min, "max": max, "count": len}
DEFAULT_GLOBS = ("README.md", "docs/*.md", "experiments/**/README.md", "experiments/**/report.md",
                 "experiments/**/*.md")


TYPED_GLOBS = ("README.md", "experiments/**/README.md")  # hand-written pages (generated tables are written by code)
TYPED = re.compile(r"(?<![\w.\u2212+-])(?:[\u2212+-]\d[\d,]*(?:\.\d+)?|\d[\d,]*\.\d+)\s?(?:%|dB\b|bpp\b)")


class RenderError(ValueError):
    """A marker whose source, key or format cannot give a value (one line naming file, line and marker)."""


@dataclass
class Mismatch:
    file: str
    line: int
    spec: str
    found: str
    expected: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: `{self.found}` but {self.spec.split(' :: ')[0]} gives `{self.expected}`"


def read_md_table(path: Path) -> list[dict[str, str]]:
    """The first Markdown table of a file as rows of {column: cell} (our rd_table.md, per_lambda.md and benchmark tables)."""
    rows, header = [], None
    for line in path.read_text().splitlines():
        if not line.startswith("|"):
            if header is not None and rows:
                break
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif not set("".join(cells)) <= set("-: "):
            rows.append(dict(zip(header, cells)))
    return rows


def _load(root: Path, source: str, cache: dict[str, Any]) -> Any:
    if source not in cache:
        path = root / source
        if not path.is_file():
            raise RenderError(f"source {source} does not exist")
        if path.suffix in (".md", ".txt"):  # a generated table (per_lambda.md, a benchmark's .txt): its first table
            cache[source] = {"rows": read_md_table(path)}
        elif path.suffix in (".yaml", ".yml"):
            import yaml  # PyYAML comes with omegaconf

            cache[source] = yaml.safe_load(path.read_text())
        elif path.suffix == ".csv":
            with path.open(newline="") as f:
                cache[source] = {"rows": [dict(r) for r in csv.DictReader(f)]}
        else:
            cache[source] = json.loads(path.read_text())
    return cache[source]


def _number(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def _same(a: Any, b: str) -> bool:
    if str(a) == b:
        return True
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-12)
    except (TypeError, ValueError):
        return False


def _segments(selector: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in selector:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "." and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return out + [cur]


def select(doc: Any, selector: str, many: bool = False) -> Any:
    """The value at ``selector`` in ``doc`` (see the module docstring); a list when the path fans out. ``many``
    (under an aggregate): a [key=value] filter keeps every match, else it must match exactly one."""
    value = doc
    for seg in _segments(selector):
        m = re.fullmatch(r"(?P<key>[^\[]*)(?:\[(?P<fk>[^=\]]+)=(?P<fv>[^\]]*)\])?", seg)
        key, fk, fv = m.group("key"), m.group("fk"), m.group("fv")
        if key:
            if isinstance(value, list) and key.isdigit():  # a list element by position (parallel result lists)
                if int(key) >= len(value):
                    raise RenderError(f"index {key} is past the end of a list of {len(value)}")
                value = value[int(key)]
            elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                value = [v[key] for v in value if key in v]
            elif isinstance(value, dict) and key in value:
                value = value[key]
            else:
                have = sorted(value)[:12] if isinstance(value, dict) else type(value).__name__
                raise RenderError(f"no key {key!r} (have {have})")
        if fk is not None:
            if not isinstance(value, list):
                raise RenderError(f"[{fk}={fv}] needs a list, got {type(value).__name__}")
            hits = [v for v in value if isinstance(v, dict) and fk in v and _same(v[fk], fv)]
            if many:
                if not hits:
                    raise RenderError(f"[{fk}={fv}] matches nothing")
                value = hits
                continue
            if len(hits) != 1:
                raise RenderError(f"[{fk}={fv}] matches {len(hits)} elements, not one")
            value = hits[0]
    return value


def _term(root: Path, source: str, expr: str, cache: dict[str, Any]) -> Any:
    agg = None
    if ":" in expr.split("[", 1)[0]:
        agg, expr = expr.split(":", 1)
        if agg not in AGGREGATES:
            raise RenderError(f"unknown aggregate {agg!r} (use {', '.join(AGGREGATES)})")
    value = select(_load(root, source, cache), expr.strip(), many=agg is not None)
    if agg:
        if not isinstance(value, list):
            raise RenderError(f"{agg}: needs a list")
        values = [_number(v) for v in value if v not in ("", None)]  # a table's summary row leaves cells empty
        bad = [v for v in values if not isinstance(v, (int, float))]
        if bad or not values:
            raise RenderError(f"{agg}: needs numbers, got {bad[:3] or 'nothing'}")
        return AGGREGATES[agg](values)
    if isinstance(value, list):
        raise RenderError(f"{expr} is a list of {len(value)}: pick one ([key=value]) or aggregate (sum: mean: ...)")
    return _number(value)


def _tokens(expr: str) -> list[str]:
    """Selector terms and the operators + - * / ( ) between them (operators and parentheses stand apart, with
    spaces; spaces inside [key=value] belong to the term)."""
    out, cur, depth = [], "", 0
    for i, ch in enumerate(expr):
        depth += ch == "["
        depth -= ch == "]"
        standalone = (i == 0 or expr[i - 1] == " ") and (i + 1 == len(expr) or expr[i + 1] == " ")
        if depth == 0 and ch in "+-*/()" and standalone:
            out += [cur.strip()] if cur.strip() else []
            out.append(ch)
            cur = ""
        else:
            cur += ch
    return out + ([cur.strip()] if cur.strip() else [])


def _arith(tokens: list[str], terms: dict[str, Any]) -> Any:
    """Evaluate terms with + - * / and parentheses (standard precedence), no eval."""
    pos = [0]

    def atom():
        tok = tokens[pos[0]]
        pos[0] += 1
        if tok == "(":
            v = expr()
            pos[0] += 1  # ")"
            return v
        return terms[tok]

    def term():
        v = atom()
        while pos[0] < len(tokens) and tokens[pos[0]] in "*/":
            op = tokens[pos[0]]
            pos[0] += 1
            w = atom()
            v = v * w if op == "*" else v / w
        return v

    def expr():
        v = term()
        while pos[0] < len(tokens) and tokens[pos[0]] in "+-":
            op = tokens[pos[0]]
            pos[0] += 1
            w = term()
            v = v + w if op == "+" else v - w
        return v

    return expr()


def value_of(root: Path, spec: str, cache: dict[str, Any] | None = None) -> str:
    """The text a marker's spec renders to."""
    cache = {} if cache is None else cache
    parts = [p.strip() for p in spec.split(" :: ")]
    if len(parts) != 3:
        raise RenderError(f"a marker is `<!--v SOURCE :: SELECTOR :: FORMAT -->`, got {spec!r}")
    source, expr, fmt = parts
    tokens = _tokens(expr)
    terms = {tok: float(tok) if re.fullmatch(r"\d+(\.\d*)?", tok) else _term(root, source, tok, cache)
             for tok in tokens if tok not in ("+", "-", "*", "/", "(", ")")}  # a number is itself (x 100)
    if len(tokens) == 1:
        value = terms[tokens[0]]
    else:
        try:
            value = _arith(tokens, terms)
        except (TypeError, ZeroDivisionError, IndexError, KeyError) as e:
            raise RenderError(f"cannot compute {expr!r}: {e}") from None
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "refused"
    try:
        text = fmt.format(value)
    except (ValueError, TypeError) as e:
        raise RenderError(f"format {fmt!r} does not take {value!r}: {e}") from None
    return re.sub(r"(?<![\w.])-(?=\d)", "\u2212", text)


def markdown_files(root: Path, paths: Iterable[str] = ()) -> list[Path]:
    files: set[Path] = set()
    for pattern in (list(paths) or DEFAULT_GLOBS):
        p = root / pattern
        files |= {p} if p.is_file() else set(root.glob(pattern))
    return sorted(f for f in files if f.is_file() and "<!--v " in f.read_text())


def render_text(root: Path, text: str, where: str) -> tuple[str, list[Mismatch]]:
    """(the text with every marker rendered, the markers whose text differed)."""
    cache: dict[str, Any] = {}
    mismatches: list[Mismatch] = []

    def sub(m: re.Match) -> str:
        line = text.count("\n", 0, m.start()) + 1
        try:
            expected = value_of(root, m.group("spec"), cache)
        except RenderError as e:
            raise RenderError(f"{where}:{line}: {e} (marker: {m.group('spec')})") from None
        if expected != m.group("text"):
            mismatches.append(Mismatch(where, line, m.group("spec"), m.group("text"), expected))
        return f"<!--v {m.group('spec')} -->{expected}<!--/v-->"

    return MARKER.sub(sub, text), mismatches


def render(root: Path, paths: Iterable[str] = (), write: bool = True) -> tuple[list[Path], list[Mismatch], int]:
    """Render (or, with write=False, only compare) every marked file: (files, mismatches, markers)."""
    files, mismatches, count = markdown_files(root, paths), [], 0
    for f in files:
        text = f.read_text()
        new, bad = render_text(root, text, str(f.relative_to(root)))
        count += len(MARKER.findall(text))
        mismatches += bad
        if write and new != text:
            f.write_text(new)
    return files, mismatches, count


@dataclass
class Typed:
    file: str
    line: int
    number: str

    def __str__(self) -> str:
        return (f"{self.file}:{self.line}: typed number `{self.number}`: put it between markers over the file it "
                f"comes from, or remove it")


def typed_numbers(text: str, where: str) -> list[Typed]:
    """Result-like numbers typed by hand: outside markers, HTML comments, fenced and inline code."""
    blank = lambda m: re.sub(r"[^\n]", " ", m.group(0))  # keep line numbers and columns
    for pattern in (r"```.*?```", MARKER.pattern, r"<!--.*?-->", r"`[^`\n]*`"):
        text = re.sub(pattern, blank, text, flags=re.S)
    return [Typed(where, i, m.group(0)) for i, line in enumerate(text.splitlines(), 1) for m in TYPED.finditer(line)]


def typed_in(root: Path) -> list[Typed]:
    files = sorted({f for g in TYPED_GLOBS for f in root.glob(g) if f.is_file()})
    return [t for f in files for t in typed_numbers(f.read_text(), str(f.relative_to(root)))]


__all__ = ["Typed", "typed_in", "typed_numbers", "Mismatch", "RenderError", "markdown_files", "read_md_table", "render", "render_text", "select", "value_of"]
