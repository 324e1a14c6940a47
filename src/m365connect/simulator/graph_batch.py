"""Graph JSON batching: POST /v1.0/$batch, up to 20 items, dependsOn, per-item faults, shuffled answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from m365connect.simulator.graph_budgets import batch_lanes, charge, concurrency_refused
from m365connect.simulator.graph_core import (
    ODATA_JSON,
    GraphError,
    GraphRequest,
    GraphResponse,
    injected_error,
    method_not_allowed,
)
from m365connect.simulator.state import Latency, SimulatorState

MAX_BATCH_ITEMS = 20
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})
Dispatch = Callable[[GraphRequest], GraphResponse]


@dataclass(frozen=True)
class BatchItem:
    """One validated request of a batch."""

    id: str
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    depends_on: tuple[str, ...]


def _invalid() -> GraphError:
    return GraphError(400, "BadRequest", "Invalid batch payload format.")


def _encode_body(body: Any, headers: dict[str, str]) -> bytes:
    """A JSON body is serialised; a string body (base64 MIME and the like) is sent as is."""
    if body is None:
        return b""
    media_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    if isinstance(body, str) and "json" not in media_type.lower():
        return body.encode()
    return json.dumps(body).encode()


def _parse_item(raw: Any, earlier: dict[str, str]) -> BatchItem:
    if not isinstance(raw, dict):
        raise _invalid()
    item_id, method, url = raw.get("id"), raw.get("method"), raw.get("url")
    headers, depends_on = raw.get("headers") or {}, raw.get("dependsOn") or []
    if not (isinstance(item_id, str) and isinstance(method, str) and isinstance(url, str)):
        raise _invalid()
    if not (item_id and method and url):
        raise _invalid()
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise _invalid()
    if not isinstance(depends_on, list) or not all(isinstance(d, str) for d in depends_on):
        raise _invalid()
    if item_id.lower() in earlier:
        raise GraphError(400, "BadRequest", f"Request Id {item_id} has to be unique in a batch.")
    if any(d.lower() not in earlier for d in depends_on):
        raise GraphError(400, "BadRequest", f"Invalid dependency for request Id {item_id}.")
    has_type = any(k.lower() == "content-type" for k in headers)
    if method.upper() in _WRITE_METHODS and (raw.get("body") is None or not has_type):
        message = f"Write request id : {item_id} does not contain Content-Type header or body."
        raise GraphError(400, "BadRequest", message)
    body = _encode_body(raw.get("body"), headers)
    return BatchItem(item_id, method.upper(), url, headers, body, tuple(d.lower() for d in depends_on))


def parse_batch(body: bytes) -> list[BatchItem]:
    """Validate a $batch envelope as Graph does; any problem fails the whole batch with 400."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _invalid() from None
    requests = payload.get("requests") if isinstance(payload, dict) else None
    if not isinstance(requests, list):
        raise _invalid()
    if len(requests) > MAX_BATCH_ITEMS:
        message = f"A batch can contain at most {MAX_BATCH_ITEMS} requests; this one has {len(requests)}."
        raise GraphError(400, "BadRequest", message)
    items: list[BatchItem] = []
    earlier: dict[str, str] = {}
    for raw in requests:
        item = _parse_item(raw, earlier)
        earlier[item.id.lower()] = item.id
        items.append(item)
    return items


def _sub_request(envelope: GraphRequest, item: BatchItem) -> GraphRequest:
    """The item as a request of its own: relative URL, the item's headers, the envelope's caller."""
    parts = urlsplit(item.url)
    path = unquote(parts.path)
    return GraphRequest(
        method=item.method,
        path=path if path.startswith("/") else f"/{path}",
        query=tuple(parse_qsl(parts.query, keep_blank_values=True)),
        headers={k.lower(): v for k, v in item.headers.items()},
        body=item.body,
        caller=envelope.caller,
        service_root=envelope.service_root,
    )


def _run_item(
    state: SimulatorState, dispatch: Dispatch, sub: GraphRequest, *, failed: bool, refused: bool
) -> GraphResponse:
    """Answer one item: 424 after a failed dependency, else an injected fault, else 429 when its lane found
    no concurrency slot or its budget is spent, else the real handler (with the budget's headers)."""
    if failed:
        message = "The request was not executed because a request it depends on failed."
        raise GraphError(424, "FailedDependency", message)
    fault = injected_error(state)
    if fault is not None:
        raise fault
    if refused:
        raise concurrency_refused(state.meter)
    headers = charge(state.meter, sub)
    try:
        response = dispatch(sub)
    except GraphError as exc:
        exc.headers.update(headers)
        raise
    response.headers.update(headers)
    return response


async def run_batch(
    state: SimulatorState, dispatch: Dispatch, envelope: GraphRequest, request_id: str, latency: Latency
) -> GraphResponse:
    """Run the items in order (dependsOn points backwards) and answer them in a seeded random order; the
    batch's Outlook items hold their concurrency slots while the batch runs: its latency, times the
    Outlook items of its longest lane when the budgets are on (4 run in parallel, the rest wait)."""
    if envelope.method != "POST":
        raise method_not_allowed()
    items = parse_batch(envelope.body)
    state.stats.batch_items += len(items)
    subs = [_sub_request(envelope, item) for item in items]
    async with batch_lanes(state.meter, subs, [bool(item.depends_on) for item in items]) as lanes:
        await latency()
        for _ in range(1, lanes.rounds):  # budgets off: no Outlook lane, 1 round
            await state.injected_latency()
        pairs = list(zip(items, subs, strict=True))
        responses = _run_items(state, dispatch, pairs, lanes.refused, request_id)
    state.faults.rng.shuffle(responses)
    return GraphResponse(200, {"responses": responses}, {"Content-Type": ODATA_JSON})


def _run_items(
    state: SimulatorState,
    dispatch: Dispatch,
    items: list[tuple[BatchItem, GraphRequest]],
    refused: set[int],
    request_id: str,
) -> list[dict[str, Any]]:
    statuses: dict[str, int] = {}
    responses: list[dict[str, Any]] = []
    for index, (item, sub) in enumerate(items):
        failed = any(statuses[d] >= 400 for d in item.depends_on)
        try:
            response = _run_item(state, dispatch, sub, failed=failed, refused=index in refused)
        except GraphError as exc:
            client_request_id = sub.headers.get("client-request-id") or request_id
            response = exc.to_response(request_id, client_request_id)
        statuses[item.id.lower()] = response.status
        responses.append(_item_json(item.id, response))
    return responses


def _item_json(item_id: str, response: GraphResponse) -> dict[str, Any]:
    headers = dict(response.headers)
    if response.body is not None:
        headers.setdefault("Content-Type", ODATA_JSON)
    answer: dict[str, Any] = {"id": item_id, "status": response.status, "headers": headers}
    if response.body is not None:
        answer["body"] = response.body
    return answer
