"""grpcio-reflection's client lists a cadre node's services without a credential, and the
descriptors it fetches are enough to call TaskService.SubmitAndWait with no .proto file at all
(as grpcurl does).

grpcio-reflection ships only the `grpc.reflection.v1alpha` stub; `--reflection v1` drives the
same client (ProtoReflectionDescriptorDatabase) over the `grpc.reflection.v1` method, whose
messages are the same on the wire.

    python grpc_reflection_check.py --grpc 127.0.0.1:50051 [--reflection v1|v1alpha]
    (credential for the call: --token or CADRE_TOKEN)
"""

import json

import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from cadre_clients import check, parse, parser, run

REQUIRED = ["cadre.v1.TaskService", "cadre.v1.AdminService", "grpc.health.v1.Health"]


class V1ReflectionStub:
    """ServerReflectionStub for `grpc.reflection.v1` (grpcio-reflection only generates v1alpha)."""

    def __init__(self, channel):
        self.ServerReflectionInfo = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )


def reflection_db(channel, version):
    """grpcio-reflection's descriptor database talking reflection `version` on `channel`."""
    db = ProtoReflectionDescriptorDatabase(channel)
    if version == "v1":
        db._stub = V1ReflectionStub(channel)
    return db


def serves(channel, version):
    """Whether the node answers reflection `version` (a list request), for the log."""
    try:
        reflection_db(channel, version).get_services()
        return "served"
    except grpc.RpcError as e:
        return f"not served ({e.code().name})"


def main():
    p = parser(__doc__)
    p.add_argument("--grpc", required=True, help="host:port of the node's gRPC listener")
    p.add_argument("--reflection", choices=["v1", "v1alpha"], default="v1")
    args = parse(p)
    target = args.grpc.removeprefix("http://")

    with grpc.insecure_channel(target) as channel:
        other = "v1alpha" if args.reflection == "v1" else "v1"
        print(f"reflection {other}: {serves(channel, other)}")

        db = reflection_db(channel, args.reflection)
        try:
            services = db.get_services()
        except grpc.RpcError as e:
            check(False, f"reflection {args.reflection} list: {e.code()} {e.details()!r}")
        print("services:", " ".join(sorted(services)))
        for name in REQUIRED:
            check(name in services, f"reflection list lacks {name}: {services}")

        # Resolve the services through the descriptors the node serves.
        pool = descriptor_pool.DescriptorPool(db)
        tasks = pool.FindServiceByName("cadre.v1.TaskService")
        methods = {m.name: m for m in tasks.methods}
        for m in ["Submit", "SubmitAndWait", "Get", "Cancel", "List", "Watch", "ListTaskTypes"]:
            check(m in methods, f"TaskService descriptor lacks {m}: {sorted(methods)}")
        watch = methods["Watch"]
        check(
            watch.server_streaming and not watch.client_streaming,
            "TaskService.Watch is not server-streaming in the reflected descriptor",
        )
        admin = pool.FindServiceByName("cadre.v1.AdminService")
        check(
            "Status" in {m.name for m in admin.methods},
            "AdminService descriptor lacks Status",
        )

        # Call SubmitAndWait with message classes built from the reflected descriptors only.
        saw = methods["SubmitAndWait"]
        Request = message_factory.GetMessageClass(saw.input_type)
        Task = message_factory.GetMessageClass(saw.output_type)
        call = channel.unary_unary(
            f"/{tasks.full_name}/{saw.name}",
            request_serializer=Request.SerializeToString,
            response_deserializer=Task.FromString,
        )
        params = {"reflected": True}
        req = Request()
        req.spec.task_type = "system.debug.echo"
        req.spec.params_json = json.dumps(params)
        req.wait_ms = 30_000
        done = call(req, metadata=[("authorization", f"Bearer {args.token}")], timeout=60)
        state = saw.output_type.fields_by_name["state"].enum_type.values_by_number[done.state].name
        check(state == "TASK_STATE_SUCCEEDED", f"reflected SubmitAndWait: state {state} {done.error!r}")
        check(json.loads(done.result_json) == params, f"reflected SubmitAndWait: {done.result_json!r}")
    print(f"reflected call finished {done.id}")


if __name__ == "__main__":
    run(main)
