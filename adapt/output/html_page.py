"""Building blocks of the static HTML reports: one self-contained page, no script, no network.

Every user-provided string (class names, file names, reasons) goes through `esc`. Images are
relative links into the report's folder (plots, `thumbs/`); nothing points outside it.
"""
from __future__ import annotations

import html
import shlex
from pathlib import Path

from adapt.output.report import printable

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1320px;
padding:12px 20px;color:#222;background:#fff}
h1{font-size:22px;margin:8px 0}h2{font-size:18px;border-bottom:1px solid #ccc;margin-top:28px}
h3{font-size:15px;margin:18px 0 4px}nav a{margin-right:12px}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f4f4f4}td.num{text-align:right}
.gallery{display:flex;flex-wrap:wrap;gap:6px;margin:4px 0 10px}
.tile{margin:0;width:96px;border:2px solid #eee;padding:2px;font-size:11px;background:#fafafa}
.tile.wrong{border-color:#d33}.tile img{width:92px;height:92px;object-fit:contain;display:block;
background:#fff}.tile img.px{image-rendering:pixelated}
.tile figcaption{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.label{color:#555}.missing{width:92px;height:92px;display:flex;align-items:center;
font-size:10px;color:#a00;background:#fee}
.note{color:#555}.pair{margin-bottom:6px}code,pre{background:#f6f6f6;padding:1px 4px}
pre{padding:8px;overflow-x:auto;white-space:pre-wrap}.plots img{max-width:100%;margin:4px}
"""

_COMMAND: list[str] | None = None


def esc(value) -> str:
    """Any value as HTML text, quotes escaped too (safe inside attributes); bytes of a file name that
    are not UTF-8 become `\\xNN` escapes (`report.printable`), as in report.md."""
    return html.escape(printable(value), quote=True)


def pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def record_command(argv: list[str]) -> None:
    """Remembers the `adapt` command line of this process (called by the CLI) for the report."""
    global _COMMAND
    _COMMAND = list(argv)


def command_line() -> str | None:
    """The recorded command as a shell line (`python -m adapt.cli ...`), or None (Python API)."""
    return None if _COMMAND is None else shlex.join(["python", "-m", "adapt.cli", *_COMMAND])


def table(header: list[str], rows: list[list[str]], numeric: tuple[int, ...] = ()) -> str:
    """An HTML table; cells are HTML already (escape text with `esc` first)."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td class=num>{c}</td>" if j in numeric else f"<td>{c}</td>"
                                    for j, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def tile(thumbs, row: int, caption: str, item_id: str, wrong: bool = False, src: str | None = None) -> str:
    """One image with a caption (HTML) and its pool id; red border when `wrong`.

    thumbs: an `adapt.output.thumbnails.Thumbnails`; `src` overrides its thumbnail (e.g. an overlay).
    """
    error = None
    if src is None:
        src, error = thumbs.src(row)
    if src is None:
        img = f"<div class=missing>{esc(error)}</div>"
    else:
        px = " class=px" if thumbs.is_small(row) else ""
        img = f'<img src="{esc(src)}" alt="{esc(item_id)}"{px}>'
    cls = "tile wrong" if wrong else "tile"
    short = item_id if len(item_id) <= 13 else "\u2026" + item_id[-12:]  # the end tells items apart
    return (f'<figure class="{cls}" title="{esc(item_id)}">{img}<figcaption>{caption}</figcaption>'
            f"<figcaption class=label>{esc(short)}</figcaption></figure>")


def gallery(tiles: list[str]) -> str:
    return "<div class=gallery>" + "".join(tiles) + "</div>" if tiles else "<p class=note>None.</p>"


def plots_html(workdir: Path, plots: list[str]) -> str:
    """The run's plot files that exist, as relative images."""
    shown = [p for p in plots if (Path(workdir) / p).is_file()]
    if not shown:
        return "<p class=note>No plots.</p>"
    return "<div class=plots>" + "".join(f'<img src="{esc(p)}" alt="{esc(p)}">' for p in shown) + "</div>"


def skipped_html(skipped: list) -> str:
    """(item, reason) pairs as a table; every skipped file is listed."""
    if not skipped:
        return "<p>None.</p>"
    return table(["file", "reason"], [[f"<code>{esc(i)}</code>", esc(r)] for i, r in skipped])


def command_html(config_json: str | None) -> str:
    """The command line that reproduces the run, and the full resolved config."""
    line = command_line()
    if line is not None:
        out = f"<pre>{esc(line)}</pre>"
    else:
        out = ("<p class=note>Run from the Python API (<code>adapt.engine.run</code>): no command "
               "line. The resolved config below reproduces it.</p>")
    if config_json:
        out += f"<details><summary>resolved config (JSON)</summary><pre>{esc(config_json)}</pre></details>"
    return out


class Page:
    """A report page: a title, facts, then sections listed in a navigation bar."""

    def __init__(self, title: str, facts: list[str]):
        self.title = title
        self.facts = facts  # HTML list items
        self.sections: list[tuple[str, str, str]] = []

    def add(self, anchor: str, heading: str, body: str) -> None:
        self.sections.append((anchor, heading, body))

    def render(self) -> str:
        nav = "".join(f'<a href="#{a}">{esc(h)}</a>' for a, h, _ in self.sections)
        body = "".join(f'<section id="{a}"><h2>{esc(h)}</h2>{b}</section>' for a, h, b in self.sections)
        facts = "<ul>" + "".join(f"<li>{f}</li>" for f in self.facts) + "</ul>"
        return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{esc(self.title)}"
                f"</title><style>{CSS}</style></head><body><h1>{esc(self.title)}</h1>{facts}"
                f"<nav>{nav}</nav>{body}</body></html>\n")

    def write(self, path: Path) -> Path:
        path = Path(path)
        tmp = path.with_suffix(".html.tmp")
        tmp.write_text(self.render(), encoding="utf-8")
        tmp.replace(path)
        return path
