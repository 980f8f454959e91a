"""A generic gRPC client that knows nothing of Steer's protos: it discovers
the Operator service through server reflection, builds message classes from
the descriptors it was sent, and calls GetStatus and Drain(dry_run).

Usage: reflection_client.py HOST:PORT
"""
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc


def main(target: str) -> None:
    channel = grpc.insecure_channel(target)
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    services = next(stub.ServerReflectionInfo(iter([
        reflection_pb2.ServerReflectionRequest(list_services="")
    ]))).list_services_response.service
    names = [s.name for s in services]
    assert "steer.v1.Operator" in names, names

    resp = next(stub.ServerReflectionInfo(iter([
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="steer.v1.Operator")
    ])))
    pool = descriptor_pool.DescriptorPool()
    for raw in resp.file_descriptor_response.file_descriptor_proto:
        fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
        pool.Add(fd)
    service = pool.FindServiceByName("steer.v1.Operator")

    def call(method_name, **fields):
        method = service.FindMethodByName(method_name)
        req_cls = message_factory.GetMessageClass(method.input_type)
        resp_cls = message_factory.GetMessageClass(method.output_type)
        rpc = channel.unary_unary(
            f"/steer.v1.Operator/{method_name}",
            request_serializer=req_cls.SerializeToString,
            response_deserializer=resp_cls.FromString,
        )
        return rpc(req_cls(**fields))

    status = call("GetStatus")
    assert status.plan_version >= 1, status
    assert len(status.pops) == 6, status
    scope_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("steer.v1.Scope"))
    drain = call("Drain", scope=scope_cls(kind=1, id="fra1"), reason="reflection", dry_run=True)
    assert not drain.applied, drain
    print(f"ok: {len(names)} services, plan {status.plan_version}, dry-run: {drain.projection.summary}")


if __name__ == "__main__":
    main(sys.argv[1])
