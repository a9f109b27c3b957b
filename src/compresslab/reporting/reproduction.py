"""A reproduction folder (`compresslab reproduce` writes report.md there): the paper's published table beside ours,
the profile, the machine and the commit, as that report states them, with its figures inlined. The page shows the
Markdown `reproduce` wrote (tables, headings, lists, images); it computes nothing, so the two cannot disagree."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

MARK = "# Reproduction"  # the first line of every report.md that `compresslab reproduce` writes


def is_reproduction(folder: Path) -> bool:
    report = folder / "report.md"
    try:
        return report.is_file() and report.read_text(errors="replace").startswith(MARK)
    except OSError:
        return False


def _inline(text: str, folder: Path) -> str:
    """Escaped text with `code`, **bold**, images (inlined as data URIs when the file is in the folder) and links
    (their text only: a relative link from a committed report does not resolve from wherever the page is opened)."""
    out, pos = [], 0
    for m in re.finditer(r"!\[([^\]]*)\]\(([^)]+)\)|\[([^\]]*)\]\(([^)]+)\)|`([^`]+)`|\*\*([^*]+)\*\*", text):
        out.append(html.escape(text[pos:m.start()]))
        alt, src, link_text, _, code, bold = m.groups()
        if src is not None:
            f = folder / src
            if f.suffix.lower() == ".png" and f.is_file():
                uri = "data:image/png;base64," + base64.b64encode(f.read_bytes()).decode()
                out.append(f'<img class="repro" src="{uri}" alt="{html.escape(alt)}">')
            else:
                out.append(html.escape(f"[{alt}: {src}]"))
        elif link_text is not None:
            out.append(html.escape(link_text))
        elif code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        else:
            out.append(f"<b>{html.escape(bold)}</b>")
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def reproduction_html(folder: Path) -> tuple[str, str]:
    """(title, HTML) of the folder's report.md."""
    lines = (folder / "report.md").read_text(errors="replace").splitlines()
    title = lines[0].lstrip("# ").strip()
    parts, i = [], 1
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                if not re.fullmatch(r"\|?[\s:|-]+\|?", lines[i]):  # the |---| rule under the header
                    rows.append(_cells(lines[i]))
                i += 1
            head = "".join(f"<th>{_inline(c, folder)}</th>" for c in rows[0])
            body = "".join("<tr>" + "".join(f"<td>{_inline(c, folder)}</td>" for c in r) + "</tr>" for r in rows[1:])
            parts.append(f'<table class="reproduction"><tr>{head}</tr>{body}</table>')
            continue
        if line.startswith("#"):
            parts.append(f"<h4>{_inline(line.lstrip('#').strip(), folder)}</h4>")
        elif line.startswith("- "):
            parts.append(f"<li>{_inline(line[2:], folder)}</li>")
        elif line.strip():
            parts.append(f"<p>{_inline(line, folder)}</p>")
        i += 1
    style = "<style>img.repro{max-width:100%;display:block}table.reproduction td{text-align:left}</style>"
    return title, style + f'<p class="note">From <code>{html.escape(str(folder / "report.md"))}</code></p>' + \
        "\n".join(parts)
