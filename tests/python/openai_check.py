"""The model gateway (POST /v1/chat/completions, GET /v1/models) through the official OpenAI
Python SDK, against a node whose llm providers are the local fake (orchestrator/cadre/tests/it/
gateway.rs sets the models up):

- plain: a completion of `echo`, its id `chatcmpl-<task id>` and the `x-cadre-task-id` header;
- streamed: `words` with `stream_options.include_usage`: the text in several chunks, the role
  once, a last chunk with no choices and the usage;
- structured: `chat.completions.parse` with a Pydantic model (json_schema, strict) on a model
  that fits on the executor's retry, and one that never fits (502, `response_schema_mismatch`);
- tools: a tool call asked for, plain and streamed;
- fallback: `flaky` (a 500) answered by its fallback `backup`;
- errors: an unknown model (NotFoundError), a wrong key (AuthenticationError), an observer
  (PermissionDeniedError), a spent budget and an over-quota tenant (RateLimitError with
  Retry-After), and the SDK's own retry honouring that Retry-After.

Prints `task <what> <task id> <prompt tokens> <completion tokens>` for the tasks the Rust test
then reads back, and `OK` at the end.
"""

import json
from concurrent.futures import ThreadPoolExecutor

import openai
from openai import OpenAI
from pydantic import BaseModel

from cadre_clients import check, parse, parser, run

#: Longest wait for one answer, seconds.
PATIENCE = 60


class Answer(BaseModel):
    answer: int


def client(base, key, retries=0):
    return OpenAI(base_url=base + "/v1", api_key=key, max_retries=retries, timeout=PATIENCE)


def user(text):
    return [{"role": "user", "content": text}]


def report(what, task, usage):
    print(f"task {what} {task} {usage.prompt_tokens} {usage.completion_tokens}", flush=True)


def models(c):
    names = sorted(m.id for m in c.models.list())
    check("echo" in names and "backup" in names, f"models: {names}")
    check(c.models.retrieve("echo").owned_by == "a", "the model's owner is its provider")


def plain(c):
    raw = c.chat.completions.with_raw_response.create(model="echo", messages=user("hello gateway"))
    task = raw.headers.get("x-cadre-task-id")
    comp = raw.parse()
    check(comp.choices[0].message.content == "You said: hello gateway", f"plain: {comp}")
    check(comp.id == f"chatcmpl-{task}", f"id {comp.id} vs task {task}")
    check(comp.object == "chat.completion" and comp.model == "echo", f"plain: {comp}")
    check(comp.choices[0].finish_reason == "stop", f"plain: {comp}")
    u = comp.usage
    check(u.prompt_tokens > 0 and u.total_tokens == u.prompt_tokens + u.completion_tokens, f"{u}")
    report("plain", task, u)


def streamed(c):
    stream = c.chat.completions.create(
        model="words", messages=user("go"), stream=True, stream_options={"include_usage": True}
    )
    task = stream.response.headers.get("x-cadre-task-id")
    chunks = list(stream)
    check(all(ch.id == f"chatcmpl-{task}" for ch in chunks), "every chunk has the task's id")
    with_choices = [ch for ch in chunks if ch.choices]
    check(with_choices[0].choices[0].delta.role == "assistant", f"first: {with_choices[0]}")
    roles = [ch.choices[0].delta.role for ch in with_choices if ch.choices[0].delta.role]
    check(roles == ["assistant"], f"the role comes once: {roles}")
    pieces = [ch.choices[0].delta.content for ch in with_choices if ch.choices[0].delta.content]
    check(len(pieces) >= 2, f"the text came in pieces as the model wrote it: {pieces}")
    text = "".join(pieces)
    check(text == "The quick brown fox jumps over the dog.", f"streamed text: {text!r}")
    check(with_choices[-1].choices[0].finish_reason == "stop", f"finish: {with_choices[-1]}")
    last = chunks[-1]
    check(last.choices == [] and last.usage is not None, f"a last usage chunk: {last}")
    check(all(ch.usage is None for ch in chunks[:-1]), "only the last chunk has usage")
    report("stream", task, last.usage)


def structured(c):
    raw = c.chat.completions.with_raw_response.parse(
        model="json", messages=user("the answer, as JSON"), response_format=Answer
    )
    comp = raw.parse()
    msg = comp.choices[0].message
    check(msg.parsed == Answer(answer=42), f"parsed: {msg}")
    check(json.loads(msg.content) == {"answer": 42}, f"content is the JSON: {msg.content!r}")
    report("structured", raw.headers.get("x-cadre-task-id"), comp.usage)
    try:
        c.chat.completions.parse(model="never", messages=user("the answer"), response_format=Answer)
        check(False, "a reply that never fits the schema must fail")
    except openai.InternalServerError as e:
        check(e.status_code == 502 and e.code == "response_schema_mismatch", f"{e.status_code} {e.body}")
        check(e.response.headers.get("x-should-retry") == "false", f"{dict(e.response.headers)}")


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Looks a word up",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        },
    }
]
SCRIPT = 'FAKE_SCRIPT: [{"tool_calls": [{"name": "lookup", "arguments": {"q": "cadre"}}]}]'


def tools(c):
    messages = [{"role": "system", "content": SCRIPT}, {"role": "user", "content": "look it up"}]
    comp = c.chat.completions.create(model="tools", messages=messages, tools=TOOLS, tool_choice="auto")
    choice = comp.choices[0]
    check(choice.finish_reason == "tool_calls", f"tools: {comp}")
    call = choice.message.tool_calls[0]
    check(call.function.name == "lookup" and json.loads(call.function.arguments) == {"q": "cadre"}, f"{call}")
    # The tool's answer goes back, and the model's next turn answers.
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "a scheduler"},
    ]
    comp = c.chat.completions.create(model="tools", messages=messages, tools=TOOLS)
    check(comp.choices[0].message.content == "done after 1 tool results", f"{comp}")
    with c.chat.completions.stream(model="tools", messages=messages[:2], tools=TOOLS) as s:
        final = s.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    check(call.function.name == "lookup" and json.loads(call.function.arguments) == {"q": "cadre"}, f"{final}")


def fallback(c):
    raw = c.chat.completions.with_raw_response.create(model="flaky", messages=user("anyone there"))
    comp = raw.parse()
    check(comp.model == "backup", f"answered by the fallback: {comp.model}")
    check(comp.choices[0].message.content == "You said: anyone there", f"{comp}")
    report("fallback", raw.headers.get("x-cadre-task-id"), comp.usage)


def refusals(base, c, args):
    try:
        c.chat.completions.create(model="no-such-model", messages=user("x"))
        check(False, "an unknown model must be refused")
    except openai.NotFoundError as e:
        check(e.code == "model_not_found" and e.param == "model", f"{e.body}")
    try:
        client(base, "not-a-cadre-key").chat.completions.create(model="echo", messages=user("x"))
        check(False, "a wrong key must be refused")
    except openai.AuthenticationError as e:
        check(e.status_code == 401 and e.code == "unauthenticated", f"{e.body}")
    try:
        client(base, args.observer).chat.completions.create(model="echo", messages=user("x"))
        check(False, "an observer may not submit")
    except openai.PermissionDeniedError as e:
        check(e.status_code == 403, f"{e.body}")
    try:
        c.chat.completions.create(model="echo", messages=user("x"), n=2)
        check(False, "n = 2 must be refused")
    except openai.BadRequestError as e:
        check(e.code == "unsupported_parameter" and e.param == "n", f"{e.body}")


def rate_limited(what, c, calls=6):
    """Calls `echo` until a RateLimitError (at most `calls` times); returns it."""
    for i in range(calls):
        try:
            c.chat.completions.create(model="echo", messages=user(f"{what} {i}"))
        except openai.RateLimitError as e:
            return e
    check(False, f"{what}: no RateLimitError in {calls} calls")


def over_quota(c, calls=4):
    """`calls` requests at once from a tenant admitted once a second: one RateLimitError."""

    def one(i):
        try:
            c.chat.completions.create(model="echo", messages=user(f"quota {i}"))
        except openai.RateLimitError as e:
            return e
        return None

    with ThreadPoolExecutor(calls) as pool:
        refused = [e for e in pool.map(one, range(calls)) if e is not None]
    check(refused, f"quota: none of {calls} requests at once was refused")
    return refused[0]


def limits(base, args):
    e = rate_limited("budget", client(base, args.poor))
    check(e.code == "budget_exceeded", f"budget: {e.body}")
    after = float(e.response.headers.get("retry-after", "0"))
    check(after >= 1, f"budget Retry-After: {dict(e.response.headers)}")
    check(e.response.headers.get("x-should-retry") == "false", "a spent budget is not retried")
    e = over_quota(client(base, args.hasty))
    check(e.code == "rate_limit_exceeded", f"quota: {e.body}")
    after = float(e.response.headers.get("retry-after", "0"))
    check(1 <= after <= 2, f"quota Retry-After: {dict(e.response.headers)}")
    # The SDK's own retries wait as told and get through.
    comp = client(base, args.hasty, retries=2).chat.completions.create(model="echo", messages=user("patient"))
    check(comp.choices[0].message.content == "You said: patient", f"{comp}")


def main():
    p = parser(__doc__)
    p.add_argument("--http", required=True, help="the node's HTTP base URL")
    p.add_argument("--observer", required=True, help="an observer credential of the tenant")
    p.add_argument("--poor", required=True, help="a credential of a tenant with a spent budget")
    p.add_argument("--hasty", required=True, help="a credential of a tenant with a tight quota")
    args = parse(p)
    c = client(args.http, args.token)
    models(c)
    plain(c)
    streamed(c)
    structured(c)
    tools(c)
    fallback(c)
    refusals(args.http, c, args)
    limits(args.http, args)


if __name__ == "__main__":
    run(main)
