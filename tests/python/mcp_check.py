"""The official MCP Python SDK (`mcp`) against a running cadre node.

Over streamable HTTP (`--url http://HOST:PORT/mcp`) or over stdio (`--stdio CADRE_BIN
--data-dir DIR`, which launches `cadre mcp`): initialize, list tools, call a task-type tool
and receive progress, read resources and templates, get a prompt, cancel a running call.
With `--errors` (HTTP only) it also checks the JSON-RPC errors for a malformed request, an
unknown method and a bad tool argument, and the 401 an unauthenticated client gets.

Prints `ok: <check>` per check; exits 1 with `FAIL: ...` on the first failed one.

    python mcp_check.py --url http://127.0.0.1:8080/mcp --token T --errors
    python mcp_check.py --stdio target/debug/cadre --data-dir DIR --token T
"""

import argparse
import json
import sys

import anyio
import httpx2
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)
    print(f"ok: {msg}", flush=True)


async def exercise(session: ClientSession, transport: str):
    init = await session.initialize()
    check(init.server_info.name == "cadre", f"{transport}: initialize reaches cadre ({init.protocol_version})")
    check(init.capabilities.tools is not None, f"{transport}: tools capability")

    tools = {t.name: t for t in (await session.list_tools()).tools}
    for name in ["system.debug.echo", "system.debug.sleep", "get_task", "cancel_task", "list_tasks", "supervisor_status"]:
        check(name in tools, f"{transport}: tool {name} listed")
    check(tools["system.debug.sleep"].input_schema.get("type") == "object", f"{transport}: a task type's input schema is an object schema")

    progress = []

    async def on_progress(p, total, message):
        progress.append((p, message))

    result = await session.call_tool("system.debug.sleep", {"ms": 600}, progress_callback=on_progress)
    check(not result.is_error, f"{transport}: sleep tool succeeded")
    check(result.structured_content == {"slept_ms": 600}, f"{transport}: structured result {result.structured_content}")
    text = result.content[0].text
    check(json.loads(text) == {"slept_ms": 600}, f"{transport}: text result carries the JSON")
    check(len(progress) >= 3, f"{transport}: progress notifications received ({len(progress)})")
    values = [p for p, _ in progress]
    check(values == sorted(values) and len(set(values)) == len(values), f"{transport}: progress increases")
    check(any("%" in (m or "") for _, m in progress), f"{transport}: progress carries the task's progress reports")
    task_id = (result.meta or {}).get("cadre/task_id")
    check(bool(task_id), f"{transport}: result names its task id")

    echo = await session.call_tool("system.debug.echo", {"hello": "mcp"})
    check(echo.structured_content == {"hello": "mcp"}, f"{transport}: call without progress answers in one message")

    got = await session.call_tool("get_task", {"id": task_id})
    check(got.structured_content["state"] == "SUCCEEDED", f"{transport}: get_task")
    listed = await session.call_tool("list_tasks", {"states": ["SUCCEEDED"], "type_prefix": "system.debug.sl"})
    check(any(t["id"] == task_id for t in listed.structured_content["tasks"]), f"{transport}: list_tasks finds it")
    status = await session.call_tool("supervisor_status", {})
    check(any(s["name"] == "system" for s in status.structured_content["supervisors"]), f"{transport}: supervisor_status")

    resources = [r.uri for r in (await session.list_resources()).resources]
    check("cadre://supervisors" in [str(u) for u in resources], f"{transport}: resource cadre://supervisors listed")
    templates = [t.uri_template for t in (await session.list_resource_templates()).resource_templates]
    check("cadre://tasks/{id}" in templates, f"{transport}: template cadre://tasks/{{id}} listed")
    read = await session.read_resource(f"cadre://tasks/{task_id}")
    body = json.loads(read.contents[0].text)
    states = [e["state"] for e in body["events"]]
    check(body["task"]["id"] == task_id and states[0] == "QUEUED" and states[-1] == "SUCCEEDED", f"{transport}: task resource with its events")
    sup = json.loads((await session.read_resource("cadre://supervisors")).contents[0].text)
    check(len(sup["supervisors"]) >= 3, f"{transport}: supervisors resource")
    try:
        await session.read_resource("cadre://tasks/01930000-0000-7000-8000-000000000000")
        fail(f"{transport}: reading an unknown task should fail")
    except MCPError as e:
        check(e.code == -32002, f"{transport}: unknown resource is -32002 ({e.code})")

    prompts = [p.name for p in (await session.list_prompts()).prompts]
    check("delegate_to_cadre" in prompts, f"{transport}: prompts listed")
    prompt = await session.get_prompt("delegate_to_cadre", {"goal": "summarize three reports"})
    check("summarize three reports" in prompt.messages[0].content.text, f"{transport}: prompt rendered")

    # A bad tool argument is a JSON-RPC invalid-params error.
    try:
        await session.call_tool("get_task", {"id": 42})
        fail(f"{transport}: a non-string id should be refused")
    except MCPError as e:
        check(e.code == -32602, f"{transport}: bad tool argument is -32602 ({e.code}: {e.error.message})")
    try:
        await session.call_tool("get_task", {"id": "not-a-task-id"})
        fail(f"{transport}: a malformed task id should be refused")
    except MCPError as e:
        check(e.code == -32602 and "task id" in e.error.message, f"{transport}: a malformed id is -32602 ({e.code}: {e.error.message})")
    try:
        await session.call_tool("system.debug.sleep", {"ms": "soon"})
        fail(f"{transport}: params the task type's schema refuses should be refused")
    except MCPError as e:
        check(e.code == -32602 and "/ms" in e.error.message, f"{transport}: schema-refused tool arguments are -32602 ({e.error.message})")
    try:
        await session.call_tool("no.such.tool", {})
        fail(f"{transport}: an unknown tool should be refused")
    except MCPError as e:
        check(e.code == -32602, f"{transport}: unknown tool is -32602")

    # Cancelling the client's call cancels the task.
    started = anyio.Event()

    async def on_long_progress(p, total, message):
        if message and "RUNNING" in message:
            started.set()

    async def long_call():
        await session.call_tool("system.debug.sleep", {"ms": 30000}, progress_callback=on_long_progress)

    async with anyio.create_task_group() as tg:
        tg.start_soon(long_call)
        with anyio.fail_after(20):
            await started.wait()
        tg.cancel_scope.cancel()
    listed = None
    with anyio.fail_after(20):
        while True:
            listed = await session.call_tool("list_tasks", {"type_prefix": "system.debug.sleep", "states": ["CANCELLED"]})
            if listed.structured_content["tasks"]:
                break
            await anyio.sleep(0.2)
    check(len(listed.structured_content["tasks"]) == 1, f"{transport}: cancelling the call cancelled its task")


async def http_errors(url: str, token: str):
    async with httpx2.AsyncClient() as c:
        r = await c.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        check(r.status_code == 401, f"http: unauthenticated is 401 ({r.status_code})")
        challenge = r.headers.get("www-authenticate", "")
        check(challenge.startswith("Bearer") and "resource_metadata=" in challenge, f"http: WWW-Authenticate {challenge!r}")
        meta_url = challenge.split('resource_metadata="', 1)[1].split('"', 1)[0]
        meta = (await c.get(meta_url)).json()
        check(meta["resource"] == url, f"http: protected-resource metadata names {meta['resource']}")

        h = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
        r = await c.post(url, headers=h, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}})
        sid = r.headers["mcp-session-id"]
        check(r.json()["result"]["protocolVersion"] == "2025-06-18", "http: the asked revision is kept")
        h["Mcp-Session-Id"] = sid
        h["MCP-Protocol-Version"] = "2025-06-18"

        r = await c.post(url, headers={**h, "Content-Type": "application/json"}, content=b'{"jsonrpc": "2.0", "id": 2, "method": ')
        check(r.status_code == 400 and r.json()["error"]["code"] == -32700, f"http: malformed JSON is -32700 ({r.text})")
        r = await c.post(url, headers=h, json={"jsonrpc": "1.0", "id": 3, "method": "ping"})
        check(r.json()["error"]["code"] == -32600, "http: a bad envelope is -32600")
        r = await c.post(url, headers=h, json={"jsonrpc": "2.0", "id": 4, "method": "tools/explode"})
        check(r.json()["error"]["code"] == -32601 and r.json()["id"] == 4, "http: an unknown method is -32601")
        r = await c.post(url, headers=h, json={"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                                              "params": {"name": "system.debug.echo", "arguments": [1, 2]}})
        check(r.json()["error"]["code"] == -32602, "http: non-object tool arguments are -32602")
        r = await c.post(url, headers={**h, "Mcp-Session-Id": "nope"}, json={"jsonrpc": "2.0", "id": 6, "method": "ping"})
        check(r.status_code == 404, "http: an unknown session is 404")
        r = await c.delete(url, headers=h)
        check(r.status_code in (200, 204), "http: DELETE ends the session")
        r = await c.post(url, headers=h, json={"jsonrpc": "2.0", "id": 7, "method": "ping"})
        check(r.status_code == 404, "http: the ended session is gone")


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url")
    ap.add_argument("--stdio")
    ap.add_argument("--data-dir")
    ap.add_argument("--token", required=True)
    ap.add_argument("--errors", action="store_true")
    a = ap.parse_args()
    if a.url:
        client = create_mcp_http_client(headers={"Authorization": f"Bearer {a.token}"})
        async with client:
            async with streamable_http_client(a.url, http_client=client) as streams:
                async with ClientSession(streams[0], streams[1]) as session:
                    await exercise(session, "http")
        if a.errors:
            await http_errors(a.url, a.token)
    else:
        params = StdioServerParameters(command=a.stdio, args=["--data-dir", a.data_dir, "--token", a.token, "mcp"])
        async with stdio_client(params) as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                await exercise(session, "stdio")
    print("all MCP checks passed", flush=True)


if __name__ == "__main__":
    anyio.run(main)
