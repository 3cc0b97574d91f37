"""A failed statement's error message never carries its parameters (raw callback bodies, phone
numbers): such errors are logged with their traceback. Found by the chaos run while PostgreSQL
was down ("storing callbacks failed" showed a whole callback body)."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError

from core.db.models import CallbackInbox
from core.runtime import Runtime


async def test_a_failed_insert_does_not_show_its_values(runtime: Runtime) -> None:
    body = '{"PhoneNumber": 254712345678}'
    async with runtime.uow() as uow:
        for _ in range(2):  # the same provider id twice: the unique rule refuses the second
            uow.session.add(
                CallbackInbox(provider="mpesa_stk", provider_id="ws_CO_1:0", raw_body=body, attempts=0)
            )
        with pytest.raises(DBAPIError) as failed:
            await uow.commit()
    assert "254712345678" not in str(failed.value)
    assert "hidden due to hide_parameters" in str(failed.value)
