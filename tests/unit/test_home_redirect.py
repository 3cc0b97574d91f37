"""``GET /`` leads a newcomer somewhere useful: /sim/ in local mode, /admin/ otherwise (DESIGN.md §4)."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from smiling_steps.app import _mount_home


@pytest.mark.parametrize(("local", "home"), [(True, "/sim/"), (False, "/admin/")])
async def test_the_root_redirects_to_the_simulator_in_local_mode_and_to_the_admin_site_otherwise(local, home):
    app = web.Application()
    _mount_home(app, local)
    async with TestClient(TestServer(app)) as client:
        answer = await client.get("/", allow_redirects=False)
        assert answer.status == 303 and answer.headers["Location"] == home
        assert (await client.head("/", allow_redirects=False)).status == 303
