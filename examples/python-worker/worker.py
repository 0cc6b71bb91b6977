"""A cadre remote worker in Python: connects to a node's WorkerService over gRPC, registers the
task types it runs, and runs the tasks the node sends it, reporting progress and results.

It runs one kind of work, text transforms: params {"text": str, "op": "reverse" | "upper" |
"lower", "delay_ms": int (optional, a pause per step, to watch progress)}, result
{"text": str, "op": str, "worker": str}.

    CADRE_TOKEN=<supervisor token> python worker.py --grpc 127.0.0.1:50051 \\
        --kinds intelligence.remote.text [--worker-id w1] [--concurrency 4] [--max-tasks N]

The Python stubs are generated at start from proto/cadre/v1/worker.proto with grpcio-tools
(--proto-dir, default: the repository's proto/ next to this example). Needs grpcio and
grpcio-tools (see requirements.txt). On a lost connection it reconnects with backoff; a refusal
(bad credential, bad registration) ends it with exit code 1.
"""

import argparse
import atexit
import importlib
import json
import os
import queue
import shutil
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc

#: Refusals that another try would repeat.
PERMANENT = {
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNIMPLEMENTED,
}

#: Operations of the text task.
OPS = {
    "reverse": lambda s: s[::-1],
    "upper": str.upper,
    "lower": str.lower,
}


def log(*parts):
    """One line on stdout, flushed (the tests read it)."""
    print(*parts, flush=True)


def generate_stubs(proto_root):
    """Runs grpcio-tools' protoc on worker.proto into a temp dir; returns (pb2, pb2_grpc)."""
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="cadre-worker-stubs-")
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    proto = os.path.join(proto_root, "cadre", "v1", "worker.proto")
    if not os.path.exists(proto):
        sys.exit(f"worker: {proto} not found; pass --proto-dir")
    rc = protoc.main(
        ["protoc", f"-I{proto_root}", f"--python_out={out}", f"--grpc_python_out={out}", proto]
    )
    if rc != 0:
        sys.exit(f"worker: grpc_tools.protoc failed with {rc}")
    sys.path.insert(0, out)
    return (
        importlib.import_module("cadre.v1.worker_pb2"),
        importlib.import_module("cadre.v1.worker_pb2_grpc"),
    )


class TaskFailed(Exception):
    """A task that cannot succeed; `retryable` says whether another attempt may."""

    def __init__(self, message, retryable=False):
        super().__init__(message)
        self.retryable = retryable


def run_text(params, progress, cancelled):
    """The text task. Calls progress(fraction, message) per step; stops when cancelled()."""
    if not isinstance(params, dict):
        raise TaskFailed("params must be an object")
    text, op = params.get("text"), params.get("op", "reverse")
    delay = params.get("delay_ms", 0)
    if not isinstance(text, str):
        raise TaskFailed("params.text: a string is required")
    if op not in OPS:
        raise TaskFailed(f"params.op: {op!r} is not one of {sorted(OPS)}")
    if not isinstance(delay, int) or not 0 <= delay <= 10_000:
        raise TaskFailed("params.delay_ms: an integer 0-10000 is required")
    steps = 4
    for i in range(steps):
        if cancelled():
            return None
        time.sleep(delay / 1000)
        progress((i + 1) / steps, f"step {i + 1} of {steps}")
    return {"text": OPS[op](text), "op": op}


class Worker:
    """One connection's worth of state: the outgoing queue and the running tasks."""

    def __init__(self, pb, args):
        self.pb = pb
        self.args = args
        self.outgoing = queue.Queue(maxsize=1024)
        self.cancels = {}  # (task_id, attempt) -> threading.Event
        self.lock = threading.Lock()
        self.done = 0
        self.closed = threading.Event()

    def send(self, **body):
        """Queues one WorkerMessage (blocks if the node is not reading)."""
        self.outgoing.put(self.pb.WorkerMessage(**body))

    def requests(self):
        """The request stream: register first, then whatever the tasks and heartbeats queue."""
        yield self.pb.WorkerMessage(
            register=self.pb.WorkerRegister(
                worker_id=self.args.worker_id,
                kinds=self.args.kinds,
                max_concurrency=self.args.concurrency,
            )
        )
        while not self.closed.is_set():
            try:
                msg = self.outgoing.get(timeout=0.2)
            except queue.Empty:
                continue
            if msg is None:
                return
            yield msg

    def heartbeat(self, interval_s):
        """Sends a heartbeat every interval until the connection closes."""
        while not self.closed.wait(interval_s):
            self.send(heartbeat=self.pb.WorkerHeartbeat())

    def run_task(self, task, cancel):
        """Runs one task and reports its end; never raises."""
        key = (task.task_id, task.attempt)
        pb = self.pb

        def progress(fraction, message):
            self.send(
                progress=pb.WorkerProgress(
                    task_id=task.task_id, attempt=task.attempt, fraction=fraction, message=message
                )
            )

        try:
            params = json.loads(task.params_json)
            result = run_text(params, progress, cancel.is_set)
            if result is None:
                log(f"cancelled {task.task_id}")
                return
            result["worker"] = self.args.worker_id
            self.send(
                result=pb.WorkerResult(
                    task_id=task.task_id, attempt=task.attempt, result_json=json.dumps(result)
                )
            )
            log(f"done {task.task_id}")
        except TaskFailed as e:
            self.send(
                result=pb.WorkerResult(
                    task_id=task.task_id,
                    attempt=task.attempt,
                    error=pb.WorkerError(message=str(e), retryable=e.retryable),
                )
            )
            log(f"failed {task.task_id}: {e}")
        except Exception as e:  # a bug here must not kill the worker: report it, retryable
            self.send(
                result=pb.WorkerResult(
                    task_id=task.task_id,
                    attempt=task.attempt,
                    error=pb.WorkerError(message=f"{type(e).__name__}: {e}", retryable=True),
                )
            )
            log(f"failed {task.task_id}: {e}")
        finally:
            with self.lock:
                self.cancels.pop(key, None)
                self.done += 1
                if self.args.max_tasks and self.done >= self.args.max_tasks:
                    self.outgoing.put(None)  # end the stream once the result is out

    def serve(self, stub):
        """Holds one Attach stream until it ends; returns the number of tasks run."""
        metadata = [("authorization", f"Bearer {self.args.token}")]
        responses = stub.Attach(self.requests(), metadata=metadata)
        with ThreadPoolExecutor(max_workers=self.args.concurrency) as pool:
            try:
                for msg in responses:
                    kind = msg.WhichOneof("body")
                    if kind == "registered":
                        interval = msg.registered.heartbeat_interval_ms / 1000
                        log(f"registered session {msg.registered.session_id} heartbeat {interval}s")
                        threading.Thread(target=self.heartbeat, args=(interval,), daemon=True).start()
                    elif kind == "task":
                        task = msg.task
                        log(f"task {task.task_id} attempt {task.attempt} {task.task_type}")
                        cancel = threading.Event()
                        with self.lock:
                            self.cancels[(task.task_id, task.attempt)] = cancel
                        pool.submit(self.run_task, task, cancel)
                    elif kind == "cancel":
                        log(f"cancel {msg.cancel.task_id}")
                        with self.lock:
                            ev = self.cancels.get((msg.cancel.task_id, msg.cancel.attempt))
                        if ev:
                            ev.set()
            finally:
                self.closed.set()
                with self.lock:
                    for ev in self.cancels.values():
                        ev.set()
        return self.done


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    p.add_argument("--grpc", required=True, help="host:port of the node's gRPC listener")
    p.add_argument("--kinds", required=True, help="comma-separated task types to run")
    p.add_argument("--token", default=os.environ.get("CADRE_TOKEN"), help="default: $CADRE_TOKEN")
    p.add_argument("--worker-id", default=f"{socket.gethostname()}-{os.getpid()}")
    p.add_argument("--concurrency", type=int, default=4, help="tasks at once (default 4)")
    p.add_argument("--max-tasks", type=int, default=0, help="exit after this many tasks (0: never)")
    p.add_argument("--ca-file", help="PEM CA to verify the node's TLS certificate (TLS on)")
    p.add_argument("--proto-dir", default=os.path.join(here, "..", "..", "proto"))
    args = p.parse_args()
    if not args.token:
        p.error("no credential: pass --token or set CADRE_TOKEN")
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if not 1 <= args.concurrency <= 64:
        p.error("--concurrency must be 1-64")
    pb, pb_grpc = generate_stubs(args.proto_dir)
    target = args.grpc.removeprefix("http://").removeprefix("https://")
    backoff = 0.5
    ran = 0
    while True:
        if args.ca_file:
            with open(args.ca_file, "rb") as f:
                creds = grpc.ssl_channel_credentials(root_certificates=f.read())
            channel = grpc.secure_channel(target, creds)
        else:
            channel = grpc.insecure_channel(target)
        worker = Worker(pb, args)
        try:
            with channel:
                ran += worker.serve(pb_grpc.WorkerServiceStub(channel))
            backoff = 0.5
        except grpc.RpcError as e:
            ran += worker.done
            if e.code() in PERMANENT:
                log(f"refused: {e.code().name}: {e.details()}")
                sys.exit(1)
            log(f"connection lost: {e.code().name}: {e.details()}; reconnecting in {backoff}s")
        if args.max_tasks and ran >= args.max_tasks:
            log(f"ran {ran} tasks; exiting")
            return
        time.sleep(backoff)
        backoff = min(backoff * 2, 30)


if __name__ == "__main__":
    main()
