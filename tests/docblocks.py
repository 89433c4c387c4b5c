"""The fenced blocks of a Markdown page, as the tests of the docs read and run them.

A block tagged ``sql`` runs on both engines, ``sql sqlite`` on SQLite only and
``sql postgresql`` on PostgreSQL only; the latter two come as twins, the SQLite
one first, under the same heading. A block runs verbatim through the driver, as
an analyst's ``sqlite3`` or ``psql`` would.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import pytest

from tracker.store.store import Store

ENGINES_FOR_TAG = {
    "sql": ("sqlite", "postgresql"),
    "sql sqlite": ("sqlite",),
    "sql postgresql": ("postgresql",),
}
#: a PostgreSQL session zone far from UTC, so a query that forgets about zones shows it
PG_SESSION_ZONE = "Asia/Kolkata"

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*(.*?)\s*$")
#: a Markdown heading: group 1 its ``#`` marks, group 2 its text
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


@dataclass(frozen=True)
class Block:
    section: str  #: the nearest level-2 heading above the block
    heading: str  #: the nearest heading above the block
    tag: str  #: the fence's info string, white space normalised
    body: str
    line: int


class Heading(NamedTuple):
    level: int
    text: str
    section: str  #: the nearest level-2 heading, this one included


def parse(markdown: str, source: str) -> tuple[list[Block], list[Heading]]:
    """Every fenced block with its tag and headings, and every heading outside blocks;
    ``source`` names the page in errors."""
    blocks: list[Block] = []
    headings: list[Heading] = []
    section = heading = ""
    open_fence: tuple[str, str, int, list[str]] | None = None
    for number, line in enumerate(markdown.splitlines(), start=1):
        if open_fence is None:
            if fence := FENCE.match(line):
                open_fence = (fence[1], " ".join(fence[2].split()), number, [])
            elif title := HEADING.match(line):
                heading = title[2]
                if len(title[1]) == 2:
                    section = heading
                headings.append(Heading(len(title[1]), heading, section))
            continue
        marker, tag, start, lines = open_fence
        closing = line.strip()
        if closing.startswith(marker) and set(closing) == {marker[0]}:
            blocks.append(Block(section, heading, tag, "\n".join(lines), start))
            open_fence = None
        else:
            lines.append(line)
    if open_fence is not None:
        raise ValueError(f"{source}:{open_fence[2]}: code block is never closed")
    return blocks, headings


# -- the checks on tags ----------------------------------------------------------


def untagged(blocks: Sequence[Block], other_tags: Collection[str] = ()) -> list[str]:
    """``line N: tag`` for every block tagged neither for SQL nor one of ``other_tags``."""
    return [
        f"line {b.line}: {b.tag or '(no tag)'}"
        for b in blocks
        if b.tag not in ENGINES_FOR_TAG and b.tag not in other_tags
    ]


def check_twins(blocks: Sequence[Block], i: int) -> None:
    """Block ``i``, if tagged for one engine, stands next to its twin for the other."""
    block = blocks[i]
    if block.tag == "sql sqlite":
        after = blocks[i + 1] if i + 1 < len(blocks) else None
        assert after is not None and after.tag == "sql postgresql", (
            f"line {block.line}: a `sql sqlite` block needs its `sql postgresql` twin next"
        )
        assert after.heading == block.heading
    if block.tag == "sql postgresql":
        assert i > 0 and blocks[i - 1].tag == "sql sqlite", (
            f"line {block.line}: a `sql postgresql` block follows its `sql sqlite` twin"
        )


def statement(block: Block) -> str:
    """The block's text without white space around it and its final semicolon."""
    return block.body.strip().removesuffix(";")


# -- running the blocks ------------------------------------------------------------


def _slug(text_: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text_.lower()).strip("-")[:40]


def cases(blocks: Sequence[Block]) -> list[Any]:
    """``pytest.param(block, engine)`` per SQL block and engine it is tagged for, named
    after the block's heading and engine (``-2``, ``-3``... on repeats)."""
    params, seen = [], Counter[str]()
    for block in blocks:
        for engine in ENGINES_FOR_TAG.get(block.tag, ()):
            name = f"{_slug(block.heading)}-{engine}"
            seen[name] += 1
            suffix = f"-{seen[name]}" if seen[name] > 1 else ""
            params.append(pytest.param(block, engine, id=name + suffix))
    return params


def run_verbatim(
    store: Store, sql: str, normal: Callable[[str, Any], Any]
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Send the text unchanged through the driver (no bind-parameter processing), in
    the session zone :data:`PG_SESSION_ZONE` on PostgreSQL; the result's column names,
    and its rows with each value passed through ``normal(column, value)``."""
    raw = store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if store.dialect == "postgresql":
            cursor.execute(f"SET TIME ZONE '{PG_SESSION_ZONE}'")
        cursor.execute(sql)
        assert cursor.description is not None, "the query returns no result set"
        columns = [str(d[0]) for d in cursor.description]
        rows = [
            tuple(normal(c, v) for c, v in zip(columns, row, strict=True))
            for row in cursor.fetchall()
        ]
        cursor.close()
    finally:
        raw.close()
    return columns, rows
