"""`smiling-steps serve` on an empty directory is a bookable demo at once (issue 12, local mode).

The real console script runs as a subprocess with nothing but PATH, HOME and a free PORT; the test
talks to it only over HTTP, like a newcomer's browser and the demo scenarios do.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from smiling_steps.demo.service import Service
from smiling_steps.demo.stage import Stage, buttons
from smiling_steps.demo.telegram_steps import Person, request_booking
from smiling_steps.demo.transcript import Transcript
from tests.support.serve import RunningServe, running_serve

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def fresh_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServe]:
    with running_serve(tmp_path_factory.mktemp("empty")) as serve:
        yield serve


@pytest.fixture
def service(fresh_serve: RunningServe) -> Iterator[Service]:
    client = Service(fresh_serve.base_url)
    yield client
    client.close()


def test_the_home_page_leads_to_the_phone_simulator(fresh_serve: RunningServe):
    answer = httpx.get(f"{fresh_serve.base_url}/", follow_redirects=False)
    assert answer.status_code in (302, 303) and answer.headers["location"] == "/sim/"
    assert httpx.get(f"{fresh_serve.base_url}/", follow_redirects=True).status_code == 200


def test_the_banner_says_what_to_open_and_that_demo_data_was_added(fresh_serve: RunningServe):
    text = fresh_serve.text()
    assert f"{fresh_serve.base_url}/sim/" in text
    assert f"{fresh_serve.base_url}/sim/mail/" in text and f"{fresh_serve.base_url}/sim/at/" in text
    assert "Demo data added to the empty database: 3 session types, 2 practitioners" in text
    assert "Brian Otieno = chat user 2001" in text
    admin = f"Admin site:                {fresh_serve.base_url}/admin/ user 'admin', one-time password "
    assert admin in text
    assert "Traceback" not in text


def test_the_booking_chat_offers_the_demo_practitioners(service: Service, tmp_path: Path):
    stage = Stage(service, Transcript(open(tmp_path / "transcript.txt", "w")))  # noqa: SIM115
    service.add_chat_user(7001, "Newcomer", "254708374149")
    stage.watch_chat(7001, "client")
    service.command(7001, "book")
    ask = stage.wait("the practitioner question", lambda: stage.find(7001, "Who would you like to see?"))
    assert buttons(ask) == ["Brian Otieno", "Dr. Amani Wanjiku"]
    service.press(7001, "Brian Otieno")
    offered = stage.wait("the session types", lambda: stage.find(7001, "Which kind of session"))
    assert "Individual · 50 min · KES 2,500" in buttons(offered)


def test_a_request_for_the_top_name_reaches_the_practitioner_persona_of_the_chat_page(
    service: Service, tmp_path: Path
):
    stage = Stage(service, Transcript(open(tmp_path / "transcript.txt", "w")))  # noqa: SIM115
    client = Person(7002, "client", "254708374149")
    service.add_chat_user(client.user_id, "Wanjiru", client.phone)
    stage.watch_chat(client.user_id, "client")
    stage.watch_chat(2001, "practitioner")
    name, reference = request_booking(stage, client, "newcomer@demo.smilingsteps.org")
    assert name == "Brian Otieno"
    request = stage.wait("the request in chat 2001",
                         lambda: stage.find(2001, f"New booking request ({reference})"))
    assert buttons(request) == ["Approve", "Decline"]
