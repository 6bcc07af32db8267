"""The generated reference pages in docs/reference match the code they describe."""

from __future__ import annotations

import pytest

from services.reference_docs import PAGES, REFERENCE_DIR


@pytest.mark.parametrize("name", sorted(PAGES))
def test_reference_page_in_sync(name: str) -> None:
    on_disk = (REFERENCE_DIR / name).read_text(encoding="utf-8")
    assert on_disk == PAGES[name](), (
        f"docs/reference/{name} is out of date; regenerate with: python -m services.reference_docs"
    )
