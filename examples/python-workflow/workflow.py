"""Runs a cadre workflow from Python through the JSON API: registers a small workflow, starts
an instance of it, follows the instance's events live over the `/v1/events` WebSocket, approves
its approval step when it asks, and prints the result.

    CADRE_TOKEN=<supervisor credential> python workflow.py --http http://127.0.0.1:8080 \\
        [--who Ada] [--comment "looks right"] [--reject] [--approver-token <operator credential>]

Registering a definition needs the supervisor role (definitions are node-wide); starting an
instance and approving need operator. `--approver-token` (default: the same credential)
approves as someone else, as a person reviewing would. Needs `websockets` (requirements.txt);
the HTTP calls use only the standard library.

Exit code 0 when the instance SUCCEEDED; 1 when it did not, or the node refused a call, or
nothing happened for `--timeout` seconds; 2 on bad usage.
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

#: The workflow. `${{ ... }}` are references, filled in by the node when a step starts: the
#: instance's input, or an earlier step's output.
WORKFLOW = {
    "name": "greeting",
    "version": 1,
    "description": "Drafts a greeting, asks a person to approve it, then sends it.",
    "input_schema": {
        "type": "object",
        "required": ["who"],
        "properties": {"who": {"type": "string"}},
    },
    "steps": [
        # A task step. system.debug.echo returns its params, so the output is {"text": ...}.
        {
            "id": "draft",
            "task": "system.debug.echo",
            "params": {"text": "Hello, ${{ input.who }}!"},
        },
        # A wait for a person: the instance stops here until an operator signals `review`
        # with {"decision": "approve" | "reject", "comment": ...}.
        {
            "id": "review",
            "needs": ["draft"],
            "wait": {
                "approval": {
                    "role": "operator",
                    "prompt": 'Send "${{ steps.draft.output.text }}"?',
                }
            },
        },
        # Runs once approved; the approval's output says who decided.
        {
            "id": "send",
            "needs": ["review"],
            "task": "system.debug.echo",
            "params": {
                "text": "${{ steps.draft.output.text }}",
                "approved_by": "${{ steps.review.output.by }}",
            },
        },
    ],
    "output": {
        "sent": "${{ steps.send.output.text }}",
        "approved_by": "${{ steps.review.output.by }}",
        "comment": "${{ steps.review.output.comment }}",
    },
}

class Failed(Exception):
    """Something the node refused or did that ends the example."""


def say(*parts):
    """One line on stdout, flushed at once so a watcher sees it live."""
    print(*parts, flush=True)


class Api:
    """The JSON API of one node (docs/HTTP_API.md) with one credential."""

    def __init__(self, base, token):
        self.base = base.rstrip("/")
        self.token = token

    def call(self, method, path, body=None):
        """One request; returns the decoded answer, or raises Failed with the node's error."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            # Errors are {"error": {"code": ..., "message": ...}}.
            try:
                err = json.loads(e.read())["error"]
                why = f"{err['code']}: {err['message']}"
            except (ValueError, KeyError, TypeError):
                why = e.reason
            raise Failed(f"{method} {path}: HTTP {e.code} {why}") from None
        except urllib.error.URLError as e:
            raise Failed(f"{method} {self.base}{path}: {e.reason}") from None


def register(api):
    """POST /v1/workflows. Registering the same definition again is fine (200, not created);
    a different one under a registered (name, version) is refused: bump `version` instead."""
    answer = api.call("POST", "/v1/workflows", WORKFLOW)
    wf = answer["workflow"]
    how = "registered" if answer["created"] else "already registered"
    say(f"{how}: workflow {wf['name']} version {wf['version']} (task type {wf['task_type']})")
    return wf["task_type"]


def start(api, task_type, who):
    """An instance is a task of type workflow.<name>.run whose params are the input."""
    task = api.call("POST", "/v1/tasks", {"task_type": task_type, "params": {"who": who}})["task"]
    say(f"started instance {task['id']}")
    return task["id"]


def events(base, token, task_id, deadline):
    """Yields the instance's events, oldest first, from the WebSocket `/v1/events`, until its
    stream ends after the terminal event. A dropped connection or a `lagged` notice is resumed
    after the last cursor seen, so no event is missed or repeated."""
    url = base.rstrip("/").replace("http", "ws", 1) + "/v1/events"  # http->ws, https->wss
    cursor = 0  # 0: from the instance's first event
    while True:
        try:
            headers = {"Authorization": f"Bearer {token}"}
            with connect(url, additional_headers=headers, open_timeout=10) as ws:
                ws.send(json.dumps({"type": "subscribe", "task_id": task_id, "cursor": cursor}))
                while True:
                    wait = deadline - time.monotonic()
                    if wait <= 0:
                        raise Failed(f"instance {task_id} did not finish in time")
                    try:
                        msg = json.loads(ws.recv(timeout=wait))
                    except TimeoutError:
                        raise Failed(f"instance {task_id} did not finish in time") from None
                    if msg["type"] == "event":
                        cursor = msg["cursor"]
                        yield msg
                    elif msg["type"] == "end":
                        return
                    elif msg["type"] == "lagged":
                        break  # reconnect and resume after `cursor`
                    elif msg["type"] == "error":
                        raise Failed(f"event stream: {msg['code']}: {msg['message']}")
        except (ConnectionClosed, OSError) as e:
            if time.monotonic() >= deadline:
                raise Failed(f"event stream lost: {e}") from None
            say(f"event stream lost ({e}); resuming after cursor {cursor}")
            time.sleep(1)


def show(event):
    """One line per event: the instance's state and what changed in its steps."""
    pct = f"{event['progress'] * 100:3.0f}%" if event["is_progress"] else "    "
    say(f"event {event['cursor']:>4}  {event['state']:<9} {pct}  {event['message']}".rstrip())


def newly_waiting_for_approval(event):
    """The steps an instance's event reports as having just started waiting for an approval.
    The engine reports what changed in the steps as a progress event's message, e.g.
    `steps: draft SUCCEEDED, review WAITING for approval review`."""
    message = event["message"]
    if not (event["is_progress"] and message.startswith("steps: ")):
        return []
    changes = message[len("steps: "):].split(", ")
    return [c.split(" ")[0] for c in changes if " WAITING for approval " in c]


def approval_wait(api, task_id, step):
    """What `step` waits for now, from GET /v1/tasks/{id} (`steps[].waiting`: the signal name,
    the prompt with its references filled in, the role that may decide); None if it no longer
    waits for an approval (someone else decided meanwhile)."""
    task = api.call("GET", f"/v1/tasks/{task_id}")["task"]
    for s in task["steps"]:
        if s["id"] == step and s["state"] == "WAITING":
            for w in s["waiting"]:
                if w["kind"] == "approval":
                    return w
    return None


def decide(approver, task_id, step, wait, decision, comment):
    """POST /v1/tasks/{id}/signals/{name}: an approval's payload is the decision ("approve" or
    "reject") and a comment; the node records who sent it (the credential's subject) in the
    step's output. A rejection fails the step, and so the instance."""
    say(f"approval needed at step {step}: {wait.get('prompt') or '(no prompt)'}")
    path = f"/v1/tasks/{task_id}/signals/{wait['signal']}"
    sent = approver.call("POST", path, {"decision": decision, "comment": comment})
    done = {"approve": "approved", "reject": "rejected"}[decision]
    say(f"{done} {step} with comment {comment!r} (signal seq {sent['seq']})")


def run(args):
    api = Api(args.http, args.token)
    approver = Api(args.http, args.approver_token or args.token)
    deadline = time.monotonic() + args.timeout

    task_type = register(api)
    task_id = start(api, task_type, args.who)

    decision = "reject" if args.reject else "approve"
    decided = set()
    for event in events(args.http, args.token, task_id, deadline):
        show(event)
        # The event names the step; the task says what exactly it waits for.
        for step in newly_waiting_for_approval(event):
            wait = approval_wait(api, task_id, step)
            if wait and step not in decided:
                decide(approver, task_id, step, wait, decision, args.comment)
                decided.add(step)

    task = api.call("GET", f"/v1/tasks/{task_id}")["task"]
    say(f"instance {task_id} {task['state']}")
    for step in task["steps"]:
        say(f"  step {step['id']:<7} {step['state']:<9} {json.dumps(step['output'])}")
    if task["state"] != "SUCCEEDED":
        raise Failed(f"instance {task_id} ended {task['state']}: {task['error']}")
    say(f"result: {json.dumps(task['result'])}")


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--http", required=True, help="base URL of the node's HTTP listener")
    p.add_argument("--token", default=os.environ.get("CADRE_TOKEN"), help="default: $CADRE_TOKEN")
    p.add_argument(
        "--approver-token",
        default=os.environ.get("CADRE_APPROVER_TOKEN"),
        help="credential that approves (default: $CADRE_APPROVER_TOKEN, else --token)",
    )
    p.add_argument("--who", default="world", help="the workflow's input (default: world)")
    p.add_argument("--comment", default="decided by workflow.py")
    p.add_argument("--reject", action="store_true", help="reject instead (the instance fails)")
    p.add_argument("--timeout", type=float, default=60, help="seconds to wait for the end")
    args = p.parse_args()
    if not args.token:
        p.error("no credential: pass --token or set CADRE_TOKEN")
    try:
        run(args)
    except Failed as e:
        print(f"workflow.py: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
