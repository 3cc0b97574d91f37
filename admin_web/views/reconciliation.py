"""Admin pages: reconciliation (see /work/coord/issue-11.md); filled in by its owner."""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()
