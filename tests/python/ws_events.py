"""The `websockets` package subscribes to a cadre node's `/v1/events` (docs/HTTP_API.md):
events arrive in cursor order; after a disconnect in the middle of a task, a new subscription
resumed from the last cursor seen delivers the rest, so that together they are exactly the
task's stored events (`GET /v1/tasks/{id}/events`) and a second full subscription from
cursor 0, none missed or repeated; the same for a `type_prefix` subscription across tasks
that finish while it is disconnected. Each connection carries the credential differently
(subprotocol, header, `token` field), and a wrong token is refused with an error and close 1008.

    python ws_events.py --http http://127.0.0.1:8080   (credential: --token or CADRE_TOKEN)
"""

import asyncio
import json
import urllib.error
import urllib.request

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from cadre_clients import TERMINAL, check, parse, parser, run

#: Longest wait for any one message from the node.
PATIENCE = 30


def http_json(base, token, method, path, body=None):
    """One JSON API call; returns (status, decoded body)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=PATIENCE) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


async def recv_json(ws, what):
    """The next message as JSON; fails if none comes in time or the connection closes."""
    try:
        raw = await asyncio.wait_for(ws.recv(), PATIENCE)
    except asyncio.TimeoutError:
        check(False, f"{what}: no message within {PATIENCE} s")
    except ConnectionClosed as e:
        check(False, f"{what}: connection closed early ({e.rcvd})")
    check(isinstance(raw, str), f"{what}: a binary message: {raw!r}")
    return json.loads(raw)


async def subscribe(ws, what, **fields):
    """Sends `subscribe` with `fields` and returns the cursor of the `subscribed` answer."""
    await ws.send(json.dumps({"type": "subscribe", **fields}))
    msg = await recv_json(ws, what)
    check(msg.get("type") == "subscribed", f"{what}: want subscribed, got {msg}")
    check(isinstance(msg.get("cursor"), int), f"{what}: subscribed without a cursor: {msg}")
    return msg["cursor"]


async def read_events(ws, what, stop_after=None):
    """Events in cursor order until `stop_after` of them (then returns without the end) or the
    `end` message of a one-task subscription (then checks the normal close)."""
    events = []
    while stop_after is None or len(events) < stop_after:
        msg = await recv_json(ws, what)
        kind = msg.get("type")
        if kind == "end":
            last = events[-1]["cursor"] if events else None
            check(
                last is None or msg.get("cursor", -1) >= last,
                f"{what}: end cursor {msg.get('cursor')} before the last event's {last}",
            )
            try:
                await asyncio.wait_for(ws.recv(), PATIENCE)
                check(False, f"{what}: a message after end")
            except ConnectionClosed:
                pass
            check(ws.close_code == 1000, f"{what}: closed with {ws.close_code} after end, want 1000")
            return events
        check(kind == "event", f"{what}: want event or end, got {msg}")
        if events:
            check(
                msg["cursor"] > events[-1]["cursor"],
                f"{what}: cursor {msg['cursor']} after {events[-1]['cursor']}",
            )
        events.append(msg)
    return events


async def main_async(args):
    base = args.http.rstrip("/")
    ws_url = base.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/v1/events"
    token = args.token

    # A wrong token in `subscribe` is refused with an error message and close 1008.
    async with connect(ws_url, open_timeout=PATIENCE) as ws:
        await ws.send(json.dumps({"type": "subscribe", "token": "not-a-token", "cursor": 0}))
        msg = await recv_json(ws, "wrong token")
        check(
            msg.get("type") == "error" and msg.get("code") == "unauthenticated",
            f"wrong token: want an unauthenticated error, got {msg}",
        )
        try:
            await asyncio.wait_for(ws.recv(), PATIENCE)
            check(False, "wrong token: a message after the error")
        except ConnectionClosed:
            pass
        check(ws.close_code == 1008, f"wrong token: closed with {ws.close_code}, want 1008")

    # A task long enough to disconnect in the middle of it: about a dozen events over 1.5 s.
    status, body = http_json(
        base, token, "POST", "/v1/tasks", {"task_type": "system.debug.sleep", "params": {"ms": 1500}}
    )
    check(status == 201 and body.get("created") is True, f"POST /v1/tasks: {status} {body}")
    task_id = body["task"]["id"]

    # First connection: credential as a subprotocol; read a few events, then hang up.
    async with connect(
        ws_url, subprotocols=["cadre.v1", f"bearer.{token}"], open_timeout=PATIENCE
    ) as ws:
        check(ws.subprotocol == "cadre.v1", f"subprotocol: server chose {ws.subprotocol!r}")
        check(await subscribe(ws, "first", task_id=task_id, cursor=0) == 0, "first: subscribed cursor")
        first = await read_events(ws, "first", stop_after=4)
    last = first[-1]
    check(last["state"] not in TERMINAL, f"disconnected only after the end: {last}")

    # Second connection: credential in the header; resume after the last cursor seen.
    async with connect(
        ws_url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=PATIENCE
    ) as ws:
        resumed = await subscribe(ws, "resumed", task_id=task_id, cursor=last["cursor"])
        check(resumed == last["cursor"], f"resumed: subscribed after {resumed}, want {last['cursor']}")
        rest = await read_events(ws, "resumed")
    check(rest, "resumed: no events after the disconnect")
    check(rest[-1]["state"] == "SUCCEEDED", f"resumed: last event {rest[-1]}")
    seen = first + rest

    # Third connection: credential in `subscribe`; everything from cursor 0 again.
    async with connect(ws_url, open_timeout=PATIENCE) as ws:
        await subscribe(ws, "full", token=token, task_id=task_id, cursor=0)
        full = await read_events(ws, "full")

    status, body = http_json(base, token, "GET", f"/v1/tasks/{task_id}/events?limit=1000")
    check(status == 200, f"GET /v1/tasks/{task_id}/events: {status} {body}")
    stored = body["events"]

    cursors = [e["cursor"] for e in seen]
    check(len(cursors) == len(set(cursors)), f"an event was repeated across the reconnect: {cursors}")
    check([e["seq"] for e in seen] == list(range(1, len(seen) + 1)), f"seqs {[e['seq'] for e in seen]}")
    for name, other in [("stored events", stored), ("a full subscription", full)]:
        check(
            cursors == [e["cursor"] for e in other],
            f"cursors with a reconnect {cursors} differ from {name} {[e['cursor'] for e in other]}",
        )
        for a, b in zip(seen, other):
            check(a == b, f"event {a['cursor']} differs from {name}: {a} vs {b}")
    states = [e["state"] for e in seen if not e["is_progress"]]
    check(states == ["QUEUED", "RUNNING", "SUCCEEDED"], f"transitions {states}")
    print(f"task {task_id}: {len(first)} events, disconnect, {len(rest)} more; {len(stored)} stored")

    await filtered_across_tasks(base, ws_url, token)


def run_echo(base, token, n):
    """Submits an echo task with `?wait=true`; returns its id once it SUCCEEDED."""
    body = {"task_type": "system.debug.echo", "params": {"n": n}}
    status, resp = http_json(base, token, "POST", "/v1/tasks?wait=true", body)
    check(status == 200 and resp["task"]["state"] == "SUCCEEDED", f"POST /v1/tasks?wait=true: {status} {resp}")
    return resp["task"]["id"]


async def filtered_across_tasks(base, ws_url, token):
    """A `type_prefix` subscription over several tasks, interrupted while tasks keep finishing:
    the two connections together deliver exactly the stored events of those tasks, in cursor
    order."""
    prefix = "system.debug.echo"
    ids = [run_echo(base, token, n) for n in range(2)]
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(ws_url, additional_headers=headers, open_timeout=PATIENCE) as ws:
        await subscribe(ws, "filtered", type_prefix=prefix, cursor=0)
        first = await read_events(ws, "filtered", stop_after=4)
    # Two more tasks run while nobody listens.
    ids += [run_echo(base, token, n) for n in range(2, 4)]
    expected = []
    for task_id in ids:
        status, body = http_json(base, token, "GET", f"/v1/tasks/{task_id}/events")
        check(status == 200, f"GET /v1/tasks/{task_id}/events: {status} {body}")
        expected += body["events"]
    expected.sort(key=lambda e: e["cursor"])
    check(len(expected) == 3 * len(ids), f"echo tasks stored {len(expected)} events")

    async with connect(ws_url, additional_headers=headers, open_timeout=PATIENCE) as ws:
        await subscribe(ws, "filtered resumed", type_prefix=prefix, cursor=first[-1]["cursor"])
        rest = await read_events(ws, "filtered resumed", stop_after=len(expected) - len(first))
        # Nothing else matches the filter, so nothing else may arrive.
        try:
            extra = await asyncio.wait_for(ws.recv(), 0.5)
            check(False, f"filtered resumed: an event beyond the expected ones: {extra}")
        except asyncio.TimeoutError:
            pass
    seen = first + rest
    check(
        [e["cursor"] for e in seen] == [e["cursor"] for e in expected],
        f"filtered: cursors {[e['cursor'] for e in seen]}, stored {[e['cursor'] for e in expected]}",
    )
    check(seen == expected, "filtered: events differ from the stored ones")
    print(f"filter {prefix}: {len(first)} events, disconnect, {len(rest)} more across {len(ids)} tasks")


def main():
    p = parser(__doc__)
    p.add_argument("--http", required=True, help="base URL of the node's HTTP listener")
    args = parse(p)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    run(main)
