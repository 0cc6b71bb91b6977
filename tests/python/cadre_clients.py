"""Shared pieces of the third-party client checks: argument and token handling, failing with
a clear message, and the Python gRPC stubs that grpcio-tools generates from proto/cadre/v1.

Each check script exits 0 when every assertion held, 1 with a `FAIL: ...` line on stderr at the
first one that did not, and 2 on bad usage.
"""

import argparse
import atexit
import glob
import importlib
import os
import shutil
import sys
import tempfile

#: Terminal task states, as the JSON and event renderings name them.
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"}


class CheckFailed(Exception):
    """An assertion about the node's behaviour that did not hold."""


def check(cond, msg):
    """Raises CheckFailed with `msg` unless `cond` holds."""
    if not cond:
        raise CheckFailed(msg)


def parser(description):
    """An argument parser with the options every script shares (`--token`, else CADRE_TOKEN)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--token",
        default=os.environ.get("CADRE_TOKEN"),
        help="bearer credential (JWT or API key); default: $CADRE_TOKEN",
    )
    return p


def parse(p):
    """Parses the arguments; a missing token is a usage error."""
    args = p.parse_args()
    if not args.token:
        p.error("no credential: pass --token or set CADRE_TOKEN")
    return args


def run(main):
    """Runs `main()`, turning a failed check or an unexpected error into exit 1 with a message."""
    try:
        main()
    except CheckFailed as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # anything the node did that the script did not expect
        print(f"FAIL: unexpected {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    print("OK")


def generate_stubs(proto_root):
    """Runs grpcio-tools' protoc on `proto_root`/cadre/v1/*.proto into a fresh temp dir, puts it
    on sys.path (removed at exit) and returns the modules (task_pb2, task_pb2_grpc, admin_pb2, admin_pb2_grpc).
    """
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="cadre-pystubs-")
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    files = sorted(glob.glob(os.path.join(proto_root, "cadre", "v1", "*.proto")))
    check(files, f"no .proto files under {proto_root}/cadre/v1")
    rc = protoc.main(
        [
            "protoc",
            f"-I{proto_root}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            *files,
        ]
    )
    check(rc == 0, f"grpc_tools.protoc failed with {rc} on {files}")
    sys.path.insert(0, out)
    names = ["task_pb2", "task_pb2_grpc", "admin_pb2", "admin_pb2_grpc"]
    return [importlib.import_module(f"cadre.v1.{n}") for n in names]
