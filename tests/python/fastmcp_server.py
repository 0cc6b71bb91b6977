"""A small MCP server on the official Python SDK (`mcp`, its MCPServer, formerly FastMCP), for
the tests of cadre's `mcp` executor (agents/executors/src/calls/mcp/tests.rs).

    python fastmcp_server.py stdio
    python fastmcp_server.py http PORT      # streamable HTTP on 127.0.0.1:PORT/mcp

Tools: add (structured result), divide (a JSON-RPC error for b = 0), echo, big (a long text), slow (progress, then sleeps; writes
its pid and how it ended to a marker file), fail (raises), die (exits the process at once),
header (a request header, over HTTP).
"""

import os
import sys
from typing import TypedDict

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError

INVALID_PARAMS = -32602

# Marker files of the running `slow` calls, by request id, for `note_cancel`.
markers: dict[str, str] = {}


async def note_cancel(ctx, call_next):
    """Middleware: a `notifications/cancelled` for a running `slow` call is noted in its marker
    (so a test can tell the client's notification from a dropped connection)."""
    if ctx.method == "notifications/cancelled" and isinstance(ctx.params, dict):
        marker = markers.get(str(ctx.params.get("requestId")))
        if marker:
            with open(marker, "a") as f:
                f.write(f"notified: {ctx.params.get('reason')}\n")
    return await call_next(ctx)


server = MCPServer("cadre-test-server", log_level="WARNING", middleware=[note_cancel])


class Sum(TypedDict):
    sum: int


@server.tool()
def add(a: int, b: int) -> Sum:
    """Adds two integers."""
    return {"sum": a + b}


@server.tool()
def divide(a: int, b: int) -> int:
    """Divides; a zero divisor is refused as a JSON-RPC error (-32602), not a tool error."""
    if b == 0:
        raise MCPError(INVALID_PARAMS, "b must not be 0")
    return a // b


@server.tool()
def echo(text: str) -> str:
    """Returns its text."""
    return text


@server.tool()
def big(size: int) -> str:
    """Returns `size` characters."""
    return "x" * size


@server.tool()
async def slow(seconds: float, marker: str, ctx: Context) -> str:
    """Writes `started <pid>` to `marker`, reports progress, sleeps, and writes how it ended
    (`notified: <reason>` comes from `note_cancel`)."""
    with open(marker, "w") as f:
        f.write(f"started {os.getpid()}\n")
    markers[str(ctx.request_id)] = marker
    try:
        await ctx.report_progress(1, 4, "started")
        await ctx.report_progress(2, 4, "sleeping")
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        with open(marker, "a") as f:
            f.write("cancelled\n")
        raise
    with open(marker, "a") as f:
        f.write("finished\n")
    return "done"


@server.tool()
def fail(message: str) -> str:
    """Fails with `message` (a tool error: isError with the message as text)."""
    raise ToolError(message)


@server.tool()
def die(code: int) -> str:
    """Ends the server process at once."""
    print("dying on request", file=sys.stderr, flush=True)
    os._exit(code)


@server.tool()
def header(name: str, ctx: Context) -> str:
    """The value of request header `name` (over HTTP), or an empty string."""
    headers = ctx.headers or {}
    return headers.get(name, "")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
