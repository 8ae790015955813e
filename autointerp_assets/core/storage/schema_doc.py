"""docs/tables.md, generated from the schema module so it cannot drift from it.

    python -m autointerp_assets.core.storage.schema_doc > docs/tables.md

Each table and view is listed in declaration order with the comment written above it in ``schema.py`` and
its columns and types, as DuckDB reports them for a fresh warehouse (a test checks the page is current).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import duckdb

from . import schema

HEADER = """# Tables and views

Generated from `autointerp_assets/core/storage/schema.py` by
`python -m autointerp_assets.core.storage.schema_doc > docs/tables.md` (a test fails when this page is
stale). Partitioned tables ({partitioned}) are rewritten one partition (layer, latent range) at a time in
one transaction; rows carry the fingerprints of what they were made from and `fingerprints` holds the
JSON each fingerprint hashes ([sql.md](sql.md) has the views to start from and example SQL; the
named queries are in `autointerp_assets/core/storage/queries.py`).
"""


def comments() -> dict[str, str]:
    """{table or view name: the comment lines written just above its entry in schema.py, joined}."""
    path = Path(schema.__file__)
    lines = path.read_text().splitlines()
    out = {}
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Dict) and \
                getattr(node.target, "id", None) in ("TABLES", "VIEWS"):
            for key in node.value.keys:
                text, i = [], key.lineno - 2
                while i >= 0 and lines[i].strip().startswith("#"):
                    text.insert(0, lines[i].strip().lstrip("#").strip())
                    i -= 1
                out[key.value] = " ".join(text)
    return out


def render() -> str:
    con = duckdb.connect()
    for stmt in schema.create_statements():
        con.execute(stmt)
    notes = comments()
    parts = [HEADER.format(partitioned=", ".join(f"`{t}`" for t in schema.PARTITIONED))]
    for kind, names in (("Tables", schema.TABLES), ("Views", schema.VIEWS)):
        parts.append(f"## {kind}\n")
        parts.append(" · ".join(f"[`{n}`](#{n})" for n in names) + "\n")
        for name in names:
            cols = con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? "
                               "ORDER BY column_index", [name]).fetchall()
            parts.append(f"### {name}\n")
            if notes.get(name):
                parts.append(notes[name] + "\n")
            parts.append("| column | type |\n|---|---|\n" + "".join(f"| `{c}` | {t} |\n" for c, t in cols))
    return "\n".join(parts)


if __name__ == "__main__":
    sys.stdout.write(render())
