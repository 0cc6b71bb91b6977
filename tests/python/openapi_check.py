"""The OpenAPI description a cadre node serves at `/v1/openapi.json`, checked from the outside:

1. it is served without a credential and openapi-spec-validator accepts it as OpenAPI 3.1;
2. every operation it lists is served (without a credential: 401 with the error body and
   `WWW-Authenticate: Bearer`, except the description itself), and every other method on its
   paths is refused with 405, so the description lists each path's methods exactly;
3. openapi-python-client generates a client from it (into a temp dir), and that client, with
   the credential, submits a `system.debug.echo` task and waits for it, reads it back, lists
   tasks and task types, asks who it is, and meets the documented errors (an unknown task:
   404 `not_found`; no credential: 401 `unauthenticated`; a bad body: 400 `invalid_argument`);
4. every answer of the node above is validated against the description by openapi-core
   (status, content type, body against the response schema), and once more strictly: a
   property the schema does not declare fails too, so the description cannot drift from what
   the node sends in either direction.

    python openapi_check.py --http http://127.0.0.1:8080   (credential: --token or CADRE_TOKEN)

Prints the operations it found (`operation: GET /v1/...`, one a line), then `OK`.
"""

import atexit
import copy
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid

import httpx
import jsonschema
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator

from cadre_clients import check, parse, parser, run

#: Methods probed on every path of the description.
METHODS = ("get", "post", "put", "delete", "patch")
#: Longest wait for one HTTP answer, seconds.
PATIENCE = 30


def raw(base, method, path, token=None, body=None):
    """One HTTP exchange with urllib: (status, headers, body bytes)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method.upper())
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=PATIENCE) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


class Validator:
    """Checks answers of the node against the description: openapi-core, then strictly."""

    def __init__(self, spec, base):
        self.spec = spec
        self.base = base
        self.openapi = OpenAPI.from_dict(spec)
        strict = copy.deepcopy(spec["components"])
        for schema in strict["schemas"].values():
            close_objects(schema)
        self.root = {"components": strict}
        self.checked = 0

    def response_schema(self, method, pattern, status):
        """The JSON schema the description gives for this answer."""
        op = self.spec["paths"][pattern][method]
        resp = op["responses"].get(str(status))
        check(resp is not None, f"{method.upper()} {pattern}: status {status} is not described")
        if "$ref" in resp:
            resp = self.spec["components"]["responses"][resp["$ref"].rsplit("/", 1)[1]]
        return resp["content"]["application/json"]["schema"]

    def answer(self, method, pattern, url, status, headers, body, request_body=None):
        """Validates one exchange: `url` as sent, `pattern` the described path it matched."""
        parts = urllib.parse.urlsplit(url)
        args = urllib.parse.parse_qs(parts.query)
        req = MockRequest(
            self.base,
            method,
            parts.path,
            path_pattern=pattern,
            args={k: v[-1] for k, v in args.items()},
            view_args=path_args(pattern, parts.path),
            data=None if request_body is None else json.dumps(request_body).encode(),
        )
        ctype = headers.get("content-type", "")
        resp = MockResponse(body, status_code=status, headers=dict(headers), content_type=ctype)
        what = f"{method.upper()} {parts.path} -> {status}"
        try:
            self.openapi.validate_response(req, resp)
        except Exception as e:  # openapi-core's errors carry the schema errors as causes
            cause = getattr(e, "__cause__", None) or e
            raise AssertionError(f"{what}: not as described: {e!r}: {cause!r}\n{body[:2000]!r}")
        schema = {**self.root, **self.response_schema(method, pattern, status)}
        errors = list(jsonschema.Draft202012Validator(schema).iter_errors(json.loads(body)))
        check(not errors, f"{what}: strictly, not as described: {[e.message for e in errors]}")
        self.checked += 1


def close_objects(schema):
    """Forbids properties a schema does not declare, on every object schema inside it."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for v in schema.values():
            close_objects(v)
    elif isinstance(schema, list):
        for v in schema:
            close_objects(v)


def path_args(pattern, path):
    """The path parameters of `path` matched against `pattern` (`/v1/tasks/{id}`)."""
    out = {}
    for p, v in zip(pattern.split("/"), path.split("/")):
        if p.startswith("{"):
            out[p[1:-1]] = urllib.parse.unquote(v)
    return out


def fetch_description(base):
    """The served description, fetched without a credential, validated as OpenAPI 3.1."""
    status, headers, body = raw(base, "get", "/v1/openapi.json")
    check(status == 200, f"GET /v1/openapi.json without a credential: {status} {body[:300]!r}")
    check(headers.get("content-type", "").startswith("application/json"), f"{headers}")
    spec = json.loads(body)
    check(str(spec.get("openapi", "")).startswith("3.1."), f"openapi: {spec.get('openapi')!r}")
    validate(spec, cls=OpenAPIV31SpecValidator)
    bearer = spec["components"]["securitySchemes"]["bearer"]
    check(bearer == {**bearer, "type": "http", "scheme": "bearer"}, f"bearer scheme: {bearer}")
    return spec


def probe_routes(spec, base, v):
    """Every described operation is served; every other method on a described path is 405."""
    for pattern, item in sorted(spec["paths"].items()):
        path = pattern.replace("{id}", str(uuid.uuid4()))
        path = path.replace("{name}", "probe").replace("{kind}", "probe")
        for method in METHODS:
            status, headers, body = raw(base, method, path)
            if method not in item:
                check(status == 405, f"{method.upper()} {path} (not described): {status}, want 405")
                continue
            print(f"operation: {method.upper()} {pattern}")
            op = item[method]
            if op.get("security") == [{}]:
                check(status == 200, f"{method.upper()} {path} needs no credential: {status}")
                continue
            check(op.get("security") == [{"bearer": []}], f"{pattern}: security {op.get('security')}")
            check(status == 401, f"{method.upper()} {path} without a credential: {status} {body!r}")
            check(headers.get("www-authenticate") == "Bearer", f"{path}: {dict(headers)}")
            v.answer(method, pattern, base + path, status, headers, body)
            check(json.loads(body)["error"]["code"] == "unauthenticated", f"{path}: {body!r}")


def generate_client(spec):
    """Runs openapi-python-client on the description; returns the imported package."""
    out = tempfile.mkdtemp(prefix="cadre-openapi-client-")
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    spec_file = os.path.join(out, "openapi.json")
    with open(spec_file, "w") as f:
        json.dump(spec, f)
    config = os.path.join(out, "config.json")
    with open(config, "w") as f:
        json.dump({"post_hooks": [], "package_name_override": "cadre_api_client"}, f)
    generator = os.path.join(os.path.dirname(sys.executable), "openapi-python-client")
    cmd = [generator, "generate", "--path", spec_file, "--meta", "none", "--config", config,
           "--output-path", os.path.join(out, "cadre_api_client"), "--fail-on-warning"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    check(done.returncode == 0, f"openapi-python-client failed:\n{done.stdout}\n{done.stderr}")
    sys.path.insert(0, out)
    return importlib.import_module("cadre_api_client")


class Recorder:
    """An httpx response hook that validates every answer the generated client receives."""

    def __init__(self, v):
        self.v = v
        self.pattern = None
        self.body = None

    def expect(self, pattern, body=None):
        """The described path (and request body) of the next call."""
        self.pattern, self.body = pattern, body
        return self

    def __call__(self, response):
        response.read()
        req = response.request
        self.v.answer(req.method.lower(), self.pattern, str(req.url), response.status_code,
                      response.headers, response.content, self.body)


def round_trip(pkg, base, token, v):
    """The generated client against the node, every answer validated by `v`."""
    from cadre_api_client.api.meta import whoami
    from cadre_api_client.api.tasks import get_task, list_task_types, list_tasks, submit_task
    from cadre_api_client.models import ErrorBody, ErrorCode, SubmitBody, TaskState

    rec = Recorder(v)
    hooks = {"event_hooks": {"response": [rec]}}
    timeout = httpx.Timeout(PATIENCE)
    client = pkg.AuthenticatedClient(base_url=base, token=token, timeout=timeout, httpx_args=hooks)
    anonymous = pkg.Client(base_url=base, timeout=timeout, httpx_args=hooks)

    rec.expect("/v1/whoami")
    me = whoami.sync_detailed(client=client)
    check(me.status_code == 200 and me.parsed.tenant, f"whoami: {me.status_code} {me.content!r}")

    params = {"text": "through a generated client"}
    body = SubmitBody(task_type="system.debug.echo", params=params)
    rec.expect("/v1/tasks", body.to_dict())
    done = submit_task.sync_detailed(client=client, body=body, wait=True)
    check(done.status_code == 200, f"submit with wait: {done.status_code} {done.content!r}")
    task = done.parsed.task
    check(task.state == TaskState.SUCCEEDED, f"submitted task: {task.state} {done.content!r}")
    check(task.result == params, f"echo result {task.result!r}, want {params!r}")
    check(task.tenant == me.parsed.tenant, f"tenant {task.tenant} != whoami {me.parsed.tenant}")

    rec.expect("/v1/tasks/{id}")
    got = get_task.sync_detailed(id=str(task.id), client=client)
    check(got.status_code == 200, f"get: {got.status_code} {got.content!r}")
    check(got.parsed.task.id == task.id and got.parsed.task.state == TaskState.SUCCEEDED,
          f"get: {got.content!r}")

    rec.expect("/v1/tasks")
    page = list_tasks.sync_detailed(client=client, type_prefix="system.debug",
                                    state=[TaskState.SUCCEEDED])
    check(page.status_code == 200, f"list: {page.status_code} {page.content!r}")
    check(task.id in [t.id for t in page.parsed.tasks], f"list lacks {task.id}: {page.content!r}")

    rec.expect("/v1/types")
    types = list_task_types.sync_detailed(client=client, type_prefix="system.debug.")
    check(types.status_code == 200, f"types: {types.status_code} {types.content!r}")
    check("system.debug.echo" in [t.task_type for t in types.parsed.types], f"{types.content!r}")

    errors(rec, client, anonymous, (get_task, submit_task, whoami, SubmitBody),
           (ErrorBody, ErrorCode))


def errors(rec, client, anonymous, calls, models):
    """The documented error answers, through the generated client."""
    get_task, submit_task, whoami, SubmitBody = calls
    ErrorBody, ErrorCode = models

    rec.expect("/v1/tasks/{id}")
    missing = get_task.sync_detailed(id=str(uuid.uuid4()), client=client)
    check(missing.status_code == 404, f"unknown task: {missing.status_code} {missing.content!r}")
    check(isinstance(missing.parsed, ErrorBody), f"unknown task: parsed {missing.parsed!r}")
    check(missing.parsed.error.code == ErrorCode.NOT_FOUND, f"{missing.content!r}")

    rec.expect("/v1/whoami")
    nobody = whoami.sync_detailed(client=anonymous)
    check(nobody.status_code == 401, f"no credential: {nobody.status_code} {nobody.content!r}")
    check(nobody.parsed.error.code == ErrorCode.UNAUTHENTICATED, f"{nobody.content!r}")
    check(nobody.headers.get("www-authenticate") == "Bearer", f"{dict(nobody.headers)}")

    bad = SubmitBody(task_type="system.debug.echo", priority=12)
    rec.expect("/v1/tasks", bad.to_dict())
    refused = submit_task.sync_detailed(client=client, body=bad)
    check(refused.status_code == 400, f"priority 12: {refused.status_code} {refused.content!r}")
    check(refused.parsed.error.code == ErrorCode.INVALID_ARGUMENT, f"{refused.content!r}")
    check("priority" in refused.parsed.error.message, f"{refused.content!r}")


def main():
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--http", required=True, help="the node's HTTP base URL")
    args = parse(p)
    base = args.http.rstrip("/")
    spec = fetch_description(base)
    v = Validator(spec, base)
    probe_routes(spec, base, v)
    pkg = generate_client(spec)
    round_trip(pkg, base, args.token, v)
    print(f"validated answers: {v.checked}")


if __name__ == "__main__":
    run(main)
