from __future__ import annotations

import json

from aiohttp.http_exceptions import TransferEncodingError

from wharf_common.http import error_response


def test_a_body_aiohttp_cannot_parse_is_a_400_that_does_not_repeat_it() -> None:
    response = error_response(TransferEncodingError("Invalid chunk size: b'wk_marker-secret'"))

    assert response is not None and response.status == 400
    assert response.content_type == "application/problem+json"
    body = json.loads(response.text or "")
    assert body["type"] == "about:blank"
    assert "wk_marker-secret" not in body["detail"]
