"""Figures as data, printed as one rich table and written as JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table


@dataclass
class Row:
    case: str
    metric: str
    value: float | None
    unit: str = ""
    target: str = ""  # the target, as text, e.g. "<= 30"
    ok: bool | None = None  # None: no target, or not measured
    note: str = ""

    def shown(self) -> str:
        if self.value is None:
            return "—"
        v = self.value
        if abs(v) >= 100 or float(v).is_integer():
            return f"{v:,.0f}"
        return f"{v:,.3g}" if abs(v) < 1 else f"{v:,.2f}"


@dataclass
class Figure:
    number: int
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # everything measured, for the JSON

    def add(self, *args: Any, **kw: Any) -> Row:
        row = Row(*args, **kw)
        self.rows.append(row)
        return row

    def skip(self, case: str, why: str) -> None:
        self.rows.append(Row(case, "skipped", None, note=why))


def check(value: float | None, *, at_most: float | None = None, at_least: float | None = None
          ) -> bool | None:  # fmt: skip
    if value is None:
        return None
    if at_most is not None and value > at_most:
        return False
    return not (at_least is not None and value < at_least)


def render(figures: list[Figure], meta: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"hashquarry bench stratum — {meta.get('pool', '')}", show_lines=False)
    for col, kw in (
        ("#", {"justify": "right"}), ("case", {}), ("measure", {}),
        ("value", {"justify": "right"}), ("unit", {}), ("target", {}), ("", {}), ("note", {}),
    ):  # fmt: skip
        table.add_column(col, **kw)  # type: ignore[arg-type]
    for fig in figures:
        table.add_section()
        for i, row in enumerate(fig.rows):
            mark = {True: "[green]ok[/]", False: "[red]MISS[/]", None: ""}[row.ok]
            table.add_row(
                str(fig.number) if i == 0 else "", row.case, row.metric, row.shown(), row.unit,
                row.target, mark, row.note,
            )  # fmt: skip
    console.print(table)
    for fig in figures:
        for note in fig.notes:
            console.print(f"[dim]{fig.number}. {fig.title}:[/] {note}")


def to_json(figures: list[Figure], meta: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {"meta": meta, "figures": [asdict(f) for f in figures]},
        option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS,
    )


def write_json(path: Path, figures: list[Figure], meta: dict[str, Any]) -> None:
    path.write_bytes(to_json(figures, meta))
