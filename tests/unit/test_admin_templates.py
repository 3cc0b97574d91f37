"""Every admin template keeps to the site's rules: the layout, no inline script or style (the CSP
forbids them), no event-handler attributes, no autoescape switched off, no CDN."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TEMPLATES = Path(__file__).resolve().parents[2] / "admin_web" / "templates"
ALL = sorted(p for p in TEMPLATES.rglob("*.html"))


def test_there_are_templates() -> None:
    assert any(p.name == "base.html" for p in ALL)


@pytest.mark.parametrize("path", ALL, ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_a_template_has_no_inline_script_style_or_handlers(path: Path) -> None:
    html = path.read_text(encoding="utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)", html, re.I), "inline <script>"
    assert not re.search(r"<style\b", html, re.I), "inline <style>"
    assert not re.search(r"\sstyle\s*=", html, re.I), "style= attribute"
    assert not re.search(r"\son[a-z]+\s*=", html, re.I), "event-handler attribute"
    assert "autoescape false" not in html and "|safe" not in html.replace(" ", ""), "escaping switched off"
    assert not re.search(r"(src|href)\s*=\s*\"(https?:)?//", html, re.I), "a resource from another host"


# Partials and macro files are named _*.html and are included, not rendered as pages.
@pytest.mark.parametrize("path", [p for p in ALL if p.name != "base.html" and not p.name.startswith("_")],
                         ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_a_page_template_extends_the_layout(path: Path) -> None:
    assert '{% extends "base.html" %}' in path.read_text(encoding="utf-8")
