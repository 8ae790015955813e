"""The docs a newcomer reads: a short README that links every topic page, and a tables page that matches the schema."""

from __future__ import annotations

import re
from pathlib import Path

from autointerp_assets.core.storage import schema, schema_doc

ROOT = Path(__file__).resolve().parents[2]


def test_the_tables_page_is_generated_from_the_schema():
    page = (ROOT / "docs" / "tables.md").read_text()
    assert page == schema_doc.render(), \
        "docs/tables.md is stale: python -m autointerp_assets.core.storage.schema_doc > docs/tables.md"
    for name in [*schema.TABLES, *schema.VIEWS]:  # every table and view has its section and its words
        section = page.split(f"### {name}\n", 1)[1].split("\n### ", 1)[0]
        assert not section.lstrip().startswith("| column"), f"{name}: no comment above it in schema.py"
        assert "| `" in section, name


def test_the_readme_is_short_and_links_every_docs_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 12 * 1024
    linked = set(re.findall(r"\(docs/([\w-]+\.md)", readme))
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert pages - linked == set(), "docs pages the README does not link"
    assert linked - pages == set(), "README links to missing docs pages"
    for page in ["README.md", *(f"docs/{p}" for p in pages)]:  # relative links between pages resolve
        base = (ROOT / page).parent
        for target in re.findall(r"\]\(((?!https?:|#)[^)#\s]+)", (ROOT / page).read_text()):
            assert (base / target).exists(), f"{page} links to {target}, which does not exist"
