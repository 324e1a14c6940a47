"""JSON batching (reference §5): build `$batch` envelopes and map their answers back to requests."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from m365connect.microsoft.graph_types import NO_ANSWER, GraphRequest, Reply

MAX_BATCH_SIZE = 20  # "JSON batch requests are currently limited to 20 individual requests"


def chunks(indexes: Sequence[int], size: int = MAX_BATCH_SIZE) -> Iterator[Sequence[int]]:
    """Consecutive runs of at most `size` indexes."""
    for start in range(0, len(indexes), size):
        yield indexes[start : start + size]


def envelope(requests: Sequence[GraphRequest], indexes: Sequence[int]) -> dict[str, Any]:
    """The `$batch` body; each item's batch id is its index in `requests`, so it is unique and maps back."""
    return {"requests": [_item(str(index), requests[index]) for index in indexes]}


def _item(batch_id: str, request: GraphRequest) -> dict[str, Any]:
    item: dict[str, Any] = {"id": batch_id, "method": request.method.upper(), "url": request.url}
    headers = dict(request.headers)
    if request.body is not None:
        # "headers ... required when the body is specified ... a Content-Type header must be included"
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"
        item["body"] = request.body
    if headers:
        item["headers"] = headers
    return item


def unpack(answer: Reply, indexes: Sequence[int]) -> dict[int, Reply]:
    """One Reply per sent index, whatever order Graph answered in.

    An envelope that carries `responses` is read item by item, whatever its status (Graph has used 200
    and 424). Without `responses`, every item shares the envelope's answer (401, 429, 5xx, network
    error), and a 2xx envelope without them counts as no answer. An item missing from the responses,
    or malformed, counts as no answer too.
    """
    responses = answer.body.get("responses") if isinstance(answer.body, dict) else None
    if not isinstance(responses, list):
        shared = NO_ANSWER if 200 <= answer.status < 300 else answer
        return dict.fromkeys(indexes, shared)
    expected = {str(index): index for index in indexes}
    replies = dict.fromkeys(indexes, NO_ANSWER)
    for raw in responses:
        parsed = _item_reply(raw)
        if parsed is not None and parsed[0] in expected:
            replies[expected[parsed[0]]] = parsed[1]
    return replies


def _item_reply(raw: Any) -> tuple[str, Reply] | None:
    if not isinstance(raw, dict):
        return None
    batch_id, status, headers = raw.get("id"), raw.get("status"), raw.get("headers")
    if not isinstance(batch_id, str) or not isinstance(status, int) or not 100 <= status <= 599:
        return None
    return batch_id, Reply(status, _lowercase(headers), raw.get("body"))


def _lowercase(headers: Any) -> Mapping[str, str]:
    if not isinstance(headers, dict):
        return {}
    return {str(name).lower(): str(value) for name, value in headers.items()}
