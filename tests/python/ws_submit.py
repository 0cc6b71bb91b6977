"""The `websockets` package submits tasks over a cadre node's `/v1/events` (docs/HTTP_API.md,
"Submitting over the socket"): several submissions in flight on one socket are each answered
`accepted`, then their task's events from the first (in cursor order, exactly the stored ones
of `GET /v1/tasks/{id}/events`), then `result` (the task as `GET /v1/tasks/{id}` renders it),
every message tagged with its own `request_id`; bad requests get an `error` with their id and
the socket keeps working; a socket dropped right after `accepted` loses nothing (the task
finishes, and submitting again with the same idempotency key answers `created: false` with the
same task and replays its events); a wrong token in the first message closes with 1008.

    python ws_submit.py --http http://127.0.0.1:8080   (credential: --token or CADRE_TOKEN)
"""

import asyncio
import json
import time
import urllib.error
import urllib.request

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from cadre_clients import TERMINAL, check, parse, parser, run

#: Longest wait for any one message from the node.
PATIENCE = 30


def http_json(base, token, path):
    """One GET of the JSON API; returns (status, decoded body)."""
    req = urllib.request.Request(base + path)
    req.add_header("Authorization", f"Bearer {token}")
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


async def submit(ws, request_id, task, **extra):
    await ws.send(json.dumps({"type": "submit", "request_id": request_id, "task": task, **extra}))


class Answers:
    """What the node answered, by request id: `accepted`, events, `result` or `error`."""

    def __init__(self):
        self.accepted = {}
        self.events = {}
        self.result = {}
        self.error = {}

    def take(self, msg):
        """Files one message under its request id, checking the per-request order."""
        rid = msg.get("request_id")
        kind = msg.get("type")
        check(kind in ("accepted", "event", "result", "error"), f"unexpected message {msg}")
        check(rid is not None or kind == "error", f"a {kind} without a request_id: {msg}")
        if kind == "accepted":
            check(rid not in self.accepted, f"{rid}: accepted twice")
            self.accepted[rid] = msg
        elif kind == "event":
            check(rid in self.accepted, f"{rid}: an event before accepted: {msg}")
            check(rid not in self.result, f"{rid}: an event after result: {msg}")
            evs = self.events.setdefault(rid, [])
            check(
                not evs or msg["cursor"] > evs[-1]["cursor"],
                f"{rid}: cursor {msg['cursor']} after {evs[-1]['cursor'] if evs else None}",
            )
            check(
                msg["task_id"] == self.accepted[rid]["task"]["id"],
                f"{rid}: an event of another task: {msg}",
            )
            evs.append(msg)
        elif kind == "result":
            check(rid in self.accepted, f"{rid}: result before accepted")
            self.result[rid] = msg
        else:
            self.error[rid] = msg

    async def read_until(self, ws, what, done):
        """Reads messages until `done(self)` holds."""
        while not done(self):
            self.take(await recv_json(ws, what))


def same_events(base, token, task_id, got, what):
    """`got` (socket events without request_id) equal the stored events of the task."""
    status, body = http_json(base, token, f"/v1/tasks/{task_id}/events?limit=1000")
    check(status == 200, f"{what}: GET events {status} {body}")
    stripped = [{k: v for k, v in e.items() if k != "request_id"} for e in got]
    check(stripped == body["events"], f"{what}: socket events {stripped} differ from stored {body['events']}")


async def many_in_flight(base, ws_url, token):
    """Twenty submissions at once on one socket, two of them `watch: false`."""
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(ws_url, additional_headers=headers, open_timeout=PATIENCE) as ws:
        ids = [f"py-{n}" for n in range(20)]
        quiet = {"py-3", "py-11"}
        for n, rid in enumerate(ids):
            task = {"task_type": "system.debug.echo", "params": {"n": n}}
            if rid in quiet:
                await submit(ws, rid, task, watch=False)
            else:
                await submit(ws, rid, task)
        a = Answers()
        await a.read_until(
            ws,
            "many in flight",
            lambda a: len(a.accepted) == len(ids) and len(a.result) == len(ids) - len(quiet),
        )
        check(not a.error, f"errors: {a.error}")
        for n, rid in enumerate(ids):
            acc = a.accepted[rid]
            check(acc["created"] is True, f"{rid}: {acc}")
            check(acc["task"]["params"] == {"n": n}, f"{rid}: accepted another task: {acc}")
            if rid in quiet:
                check(rid not in a.events and rid not in a.result, f"{rid}: watch false got events")
                continue
            task_id = acc["task"]["id"]
            res = a.result[rid]["task"]
            check(res["state"] == "SUCCEEDED" and res["result"] == {"n": n}, f"{rid}: result {res}")
            status, body = http_json(base, token, f"/v1/tasks/{task_id}")
            check(status == 200 and body["task"] == res, f"{rid}: result differs from GET: {body}")
            evs = a.events[rid]
            check([e["state"] for e in evs] == ["QUEUED", "RUNNING", "SUCCEEDED"], f"{rid}: {evs}")
            same_events(base, token, task_id, evs, rid)
    print(f"{len(ids)} submissions on one socket, each answered under its own request_id")


async def bad_requests(ws_url, token):
    """Per-request errors keep the socket open; the token goes in the first message."""
    async with connect(ws_url, open_timeout=PATIENCE) as ws:
        await ws.send(
            json.dumps(
                {
                    "type": "submit",
                    "token": token,
                    "request_id": "bad-type",
                    "task": {"task_type": "no.such.type", "params": {}},
                }
            )
        )
        err = await recv_json(ws, "unknown type")
        check(
            err == {**err, "type": "error", "request_id": "bad-type", "code": "invalid_argument"},
            f"unknown type: {err}",
        )
        await ws.send(json.dumps({"type": "submit", "task": {"task_type": "system.debug.echo"}}))
        err = await recv_json(ws, "no request_id")
        check(
            err.get("code") == "invalid_argument" and err.get("request_id") is None,
            f"no request_id: {err}",
        )
        await ws.send("{not json")
        err = await recv_json(ws, "malformed")
        check(err.get("type") == "error" and err.get("code") == "invalid_argument", f"malformed: {err}")
        # Still open: a good one goes through.
        await submit(ws, "good", {"task_type": "system.debug.echo", "params": {"ok": True}})
        a = Answers()
        await a.read_until(ws, "after errors", lambda a: "good" in a.result)
        check(a.result["good"]["task"]["state"] == "SUCCEEDED", f"after errors: {a.result}")

    async with connect(ws_url, open_timeout=PATIENCE) as ws:
        await ws.send(
            json.dumps(
                {
                    "type": "submit",
                    "token": "not-a-token",
                    "request_id": "x",
                    "task": {"task_type": "system.debug.echo"},
                }
            )
        )
        err = await recv_json(ws, "wrong token")
        check(err.get("code") == "unauthenticated", f"wrong token: {err}")
        try:
            await asyncio.wait_for(ws.recv(), PATIENCE)
            check(False, "wrong token: a message after the error")
        except ConnectionClosed:
            pass
        check(ws.close_code == 1008, f"wrong token: closed with {ws.close_code}, want 1008")
    print("bad requests answered with errors; the socket kept working")


async def dropped_socket(base, ws_url, token):
    """Hang up right after `accepted`: the task finishes; the same idempotency key on a new
    socket answers `created: false`, the same task, its events from the first and its result."""
    key = f"py-drop-{time.time_ns()}"
    task = {"task_type": "system.debug.sleep", "params": {"ms": 800}, "idempotency_key": key}
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(ws_url, additional_headers=headers, open_timeout=PATIENCE) as ws:
        await submit(ws, "first", task)
        acc = await recv_json(ws, "drop: accepted")
        check(acc.get("type") == "accepted" and acc["created"] is True, f"drop: {acc}")
    task_id = acc["task"]["id"]
    deadline = time.monotonic() + PATIENCE
    while True:
        status, body = http_json(base, token, f"/v1/tasks/{task_id}")
        check(status == 200, f"drop: GET {status} {body}")
        if body["task"]["state"] in TERMINAL:
            break
        check(time.monotonic() < deadline, f"drop: task still {body['task']['state']}")
        await asyncio.sleep(0.1)
    check(body["task"]["state"] == "SUCCEEDED", f"drop: {body}")
    async with connect(ws_url, additional_headers=headers, open_timeout=PATIENCE) as ws:
        await submit(ws, "again", task)
        a = Answers()
        await a.read_until(ws, "resubmit", lambda a: "again" in a.result)
    acc = a.accepted["again"]
    check(acc["created"] is False and acc["task"]["id"] == task_id, f"resubmit: {acc}")
    check(a.result["again"]["task"] == body["task"], f"resubmit: result {a.result['again']}")
    same_events(base, token, task_id, a.events["again"], "resubmit")
    print(f"dropped socket: task {task_id} finished; resubmitting its key answered created false")


async def main_async(args):
    base = args.http.rstrip("/")
    ws_url = base.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/v1/events"
    await many_in_flight(base, ws_url, args.token)
    await bad_requests(ws_url, args.token)
    await dropped_socket(base, ws_url, args.token)


def main():
    p = parser(__doc__)
    p.add_argument("--http", required=True, help="base URL of the node's HTTP listener")
    args = parse(p)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    run(main)
