"""Citations of the standards reference: the repository and the seeded reference texts cite
docs/domain.md (which ships with the code), never a reference file that does not, and every
cited section exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import asyncpg
import pytest

ROOT = Path(__file__).resolve().parent.parent
STANDARDS = ROOT / "docs" / "domain.md"
MIGRATION = ROOT / "migrations" / "0009_domain_citations.sql"

# The old reference's name, spelled so that this file does not contain it.
OLD_NAME = "DOMAIN" + ".md"
NEW_NAME = "docs/domain.md"

# Allowed to name the old reference: CI machinery (the migration that rewrites it matches the
# name with a regular expression, so it does not spell it).
_EXEMPT_DIRS = (".ci/",)
_EXEMPT_FILES: set[str] = set()
_SKIP_WALK = {".git", ".venv", "venv", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache"}

# "docs/domain.md §3.1/§3.4", "docs/domain.md §4.3", "docs/domain.md (§3.2)", ...
_CITATION = re.compile(
    r"docs/domain\.md\s*\(?\s*(§\d+(?:\.\d+)*(?:\s*(?:/|,|and|or|to|–|-)\s*§\d+(?:\.\d+)*)*)"
)
_SECTION = re.compile(r"§(\d+(?:\.\d+)*)")
_HEADING = re.compile(r"^#{2,6}\s+(\d+(?:\.\d+)*)\.?\s+\S", re.MULTILINE)


def _repository_files() -> list[str]:
    """Tracked files plus new ones not ignored (a file about to be committed counts too)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
        names = [n.decode("utf-8", "surrogateescape") for n in out.split(b"\0") if n]
    except (OSError, subprocess.SubprocessError):
        names = [
            path.relative_to(ROOT).as_posix()
            for path in ROOT.rglob("*")
            if path.is_file()
            and not _SKIP_WALK.intersection(path.relative_to(ROOT).parts)
            and not any(part.endswith(".egg-info") for part in path.relative_to(ROOT).parts)
        ]
    return sorted(set(names))


def _text_files() -> dict[str, str]:
    """Every repository file that is text, by its path relative to the root."""
    texts = {}
    for name in _repository_files():
        path = ROOT / name
        if not path.is_file():  # deleted in the working tree, still in the index
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue
        texts[name] = data.decode("utf-8", "replace")
    return texts


def _sections() -> set[str]:
    return set(_HEADING.findall(STANDARDS.read_text(encoding="utf-8")))


def _cited(text: str) -> list[str]:
    return [s for chain in _CITATION.findall(text) for s in _SECTION.findall(chain)]


def test_no_repository_file_cites_the_old_reference() -> None:
    offenders = [
        f"{name}:{number}"
        for name, text in _text_files().items()
        if not name.startswith(_EXEMPT_DIRS) and name not in _EXEMPT_FILES
        for number, line in enumerate(text.splitlines(), 1)
        if OLD_NAME in line
    ]
    assert offenders == []


def test_the_reference_has_numbered_sections_and_names_no_outside_file() -> None:
    text = STANDARDS.read_text(encoding="utf-8")
    sections = _sections()
    assert {"0", "1", "2", "3", "4", "5"} <= sections
    assert {"2.1", "2.2", "3.2", "3.3", "3.4", "4.3", "5.1", "5.2"} <= sections
    assert OLD_NAME not in text
    assert "/work/" not in text


def test_every_citation_in_the_repository_points_at_an_existing_section() -> None:
    sections = _sections()
    cited: dict[str, list[str]] = {}
    for name, text in _text_files().items():
        # Over the whole text: a citation may wrap ("docs/domain.md" at a line's end).
        for match in _CITATION.finditer(text):
            number = text.count("\n", 0, match.start()) + 1
            for section in _SECTION.findall(match.group(1)):
                cited.setdefault(section, []).append(f"{name}:{number}")
    missing = {s: where for s, where in cited.items() if s not in sections}
    assert missing == {}
    # The seeds, the code and the README all cite it.
    places = {where.split(":")[0] for wheres in cited.values() for where in wheres}
    assert {
        "README.md",
        "migrations/0001_core.sql",
        "migrations/0003_remote_sensing.sql",
        "migrations/0004_emergency.sql",
        "telemetry/kinds/remote_sensing/detection.py",
        "simulators/emergency.py",
    } <= places


async def _reference_texts(conn: asyncpg.Connection) -> dict[tuple[str, str], list[str]]:
    """Every text column of every table in the public schema: (table, column) -> values."""
    columns = await conn.fetch(
        """
        SELECT c.table_name, c.column_name
        FROM information_schema.columns c
        JOIN information_schema.tables t USING (table_schema, table_name)
        WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
          AND c.data_type IN ('text', 'character varying', 'character')
        ORDER BY 1, 2
        """
    )
    texts = {}
    for row in columns:
        table, column = row["table_name"], row["column_name"]
        values = await conn.fetch(
            f'SELECT "{column}" AS v FROM "{table}" WHERE "{column}" IS NOT NULL ORDER BY 1'
        )
        texts[(table, column)] = [r["v"] for r in values]
    return texts


async def test_a_fresh_database_seeds_no_citation_of_the_old_reference(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        texts = await _reference_texts(conn)
    stale = {
        key: [v for v in values if OLD_NAME in v]
        for key, values in texts.items()
        if any(OLD_NAME in v for v in values)
    }
    assert stale == {}
    # The seeds still cite their sources, now by the shipped reference's sections.
    sections = _sections()
    seeded = [s for values in texts.values() for v in values for s in _cited(v)]
    for key in [
        ("plate_colors", "source"),
        ("rs_limits", "source"),
        ("rs_gates", "source"),
        ("rs_rule_params", "source"),
        ("substances", "source"),
        ("emergency_tiers", "note"),
    ]:
        assert any(NEW_NAME in v for v in texts[key]), key
    assert seeded
    assert set(seeded) <= sections


# The tables and columns whose seeded or copied texts 0009 rewrites.
_REWRITTEN = [
    ("thresholds", "source"),
    ("thresholds", "note"),
    ("plate_colors", "source"),
    ("rs_limits", "source"),
    ("rs_limits", "note"),
    ("rs_gates", "source"),
    ("rs_gates", "note"),
    ("rs_rule_params", "source"),
    ("substances", "source"),
    ("substances", "note"),
    ("emergency_tiers", "source"),
    ("emergency_tiers", "note"),
    ("rs_high_emitters", "source"),
    ("alerts", "source"),
]


async def test_0009_rewrites_an_existing_installation_and_is_idempotent(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        # An alert raised before the upgrade, its source copied from the old texts.
        await conn.execute(
            """
            INSERT INTO alerts (kind, subject, pollutant, rule, limit_value, unit, source,
                                first_seen, last_seen, last_value, peak_value, peak_multiple)
            VALUES ('remote_sensing', 'plate:TEST', 'no', 'high_emitter', 1500, 'ppm',
                    $1, now(), now(), 1600, 1600, 0.0667)
            """,
            f"national rule ({NEW_NAME} §3.2); limit: HJ 845-2017 ({NEW_NAME} §3.3 UNCONFIRMED)",
        )
        expected = await _reference_texts(conn)
        # Put the texts back the way migrations 0001-0008 seeded them before this change.
        for table, column in _REWRITTEN:
            await conn.execute(
                f'UPDATE "{table}" SET "{column}" = replace("{column}", $1, $2)',
                NEW_NAME,
                OLD_NAME,
            )
        before = await _reference_texts(conn)
        assert any(OLD_NAME in v for values in before.values() for v in values)

        sql = MIGRATION.read_text(encoding="utf-8")
        await conn.execute(sql)
        once = await _reference_texts(conn)
        await conn.execute(sql)
        twice = await _reference_texts(conn)

    assert once == expected
    assert twice == once
    assert not any(OLD_NAME in v for values in once.values() for v in values)


@pytest.mark.parametrize(
    ("text", "sections"),
    [
        ("(docs/domain.md §3.1/§3.4, SECONDARY)", ["3.1", "3.4"]),
        ("UNCONFIRMED (docs/domain.md §4.3): from memory", ["4.3"]),
        ("Figures: docs/domain.md §2.", ["2"]),
        ("docs/domain.md §5.1 and §5.3", ["5.1", "5.3"]),
    ],
)
def test_citations_are_parsed_with_every_section_they_name(text: str, sections: list[str]) -> None:
    assert _cited(text) == sections
