"""axe-core on the public pages: no serious or critical accessibility violations.

Every violation axe finds, whatever its impact, is written to
``tests/artifacts/axe-<page>.json`` for review.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, expect

from tests.browser.conftest import PUBLIC_PAGES

pytestmark = pytest.mark.browser

BLOCKING = {"serious", "critical"}


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for violation in violations:
        lines.append(f"{violation['id']} ({violation['impact']}): {violation['help']}"
                     f" <{violation['helpUrl']}>")
        lines.extend(f"    {node['target']}: {node.get('failureSummary', '')!r}"
                     for node in violation["nodes"])
    return "\n".join(lines)


@pytest.mark.parametrize("name", list(PUBLIC_PAGES))
def test_no_serious_accessibility_violations(
    new_context: Callable[..., BrowserContext], axe_script: Path, artifacts: Path, name: str
) -> None:
    # The portal's Content-Security-Policy forbids inline scripts, which is how
    # Playwright injects axe-core; the check itself needs that exception only.
    page = new_context(bypass_csp=True).new_page()
    path = PUBLIC_PAGES[name](page)
    response = page.goto(path)
    assert response is not None and response.ok, f"{path}: {response and response.status}"
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    page.add_script_tag(path=str(axe_script))
    results: dict[str, Any] = page.evaluate("async () => await axe.run()")
    violations: list[dict[str, Any]] = results["violations"]
    (artifacts / f"axe-{name}.json").write_text(
        json.dumps({"url": page.url, "violations": violations}, indent=2), encoding="utf-8")
    blocking = [v for v in violations if v["impact"] in BLOCKING]
    assert not blocking, (
        f"axe found serious or critical violations on {path}:\n{describe(blocking)}")
