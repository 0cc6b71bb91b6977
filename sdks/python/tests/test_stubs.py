"""The checked-in stubs are what scripts/generate.sh makes from proto/ now."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SDK = Path(__file__).resolve().parents[1]


def test_checked_in_stubs_match_the_protos(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run([str(SDK / "scripts/generate.sh"), str(tmp_path)], check=True, env=env, timeout=120)
    checked_in = SDK / "src/cadre_sdk/_proto"
    fresh = sorted(p.name for p in tmp_path.iterdir())
    assert fresh == sorted(p.name for p in checked_in.iterdir() if p.is_file() and p.name != "__pycache__")
    stale = [n for n in fresh if (tmp_path / n).read_bytes() != (checked_in / n).read_bytes()]
    assert not stale, f"stale stubs {stale}: run sdks/python/scripts/generate.sh"


def test_stubs_import_inside_the_package() -> None:
    from cadre_sdk._proto import task_pb2, worker_pb2_grpc, workflow_pb2

    assert workflow_pb2.SignalRequest.DESCRIPTOR.file.name == "cadre/v1/workflow.proto"
    assert task_pb2.TaskSpec(task_type="a.b.c").task_type == "a.b.c"
    assert hasattr(worker_pb2_grpc, "WorkerServiceStub")
