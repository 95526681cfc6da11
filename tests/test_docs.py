"""The README stays a one-page entry point, and every relative link in it and in docs/ resolves."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")


def _docs() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_readme_is_one_page_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    assert "make train" in text and "make test" in text
    assert "docs/img/interpolation-curves.png" in text and (ROOT / "docs/img/interpolation-curves.png").stat().st_size < 200_000


def test_relative_links_resolve():
    broken = []
    for doc in _docs():
        for target, _ in LINK.findall(doc.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_no_doc_names_a_moved_script():
    for doc in _docs():
        text = doc.read_text()
        assert "python scripts/" not in text and "gmnae.merge.study" not in text, doc
