"""gRPC server reflection, `grpc.reflection.v1`, beside the `v1alpha` that
grpcio-reflection provides (1.85 ships only v1alpha; grpcurl, Postman and
grpc-java's and grpc-go's current tools ask for v1 first).

The v1 protocol is v1alpha under a new package: the same messages with the
same field numbers (grpc-proto's `grpc/reflection/v1/reflection.proto`).
Its file descriptor is therefore built from v1alpha's, renamed, with v1's
file options, and registered in the default descriptor pool, so that v1 is
served with its own descriptors and is itself discoverable through
reflection (`grpcurl describe grpc.reflection.v1.ServerReflection`). The
servicer answers every request kind of the protocol from the same pool the
hub's services are registered in.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.message import Message
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha

FILE_NAME = "grpc/reflection/v1/reflection.proto"
PACKAGE = "grpc.reflection.v1"
SERVICE_NAME = f"{PACKAGE}.ServerReflection"
METHOD = f"/{SERVICE_NAME}/ServerReflectionInfo"


def _v1_file() -> FileDescriptor:
    pool = descriptor_pool.Default()
    try:
        return pool.FindFileByName(FILE_NAME)
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    v1alpha.DESCRIPTOR.CopyToProto(proto)
    old = f".{proto.package}."
    proto.name = FILE_NAME
    proto.package = PACKAGE
    for message in proto.message_type:
        for f in message.field:
            if f.type_name.startswith(old):
                f.type_name = f".{PACKAGE}." + f.type_name[len(old) :]
    for service in proto.service:
        for m in service.method:
            m.input_type = f".{PACKAGE}." + m.input_type[len(old) :]
            m.output_type = f".{PACKAGE}." + m.output_type[len(old) :]
    proto.options.Clear()
    proto.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    proto.options.java_multiple_files = True
    proto.options.java_package = "io.grpc.reflection.v1"
    proto.options.java_outer_classname = "ServerReflectionProto"
    return pool.AddSerializedFile(proto.SerializeToString())


DESCRIPTOR = _v1_file()


def _message_class(name: str) -> Any:
    return message_factory.GetMessageClass(DESCRIPTOR.message_types_by_name[name])


ServerReflectionRequest: Any = _message_class("ServerReflectionRequest")
ServerReflectionResponse: Any = _message_class("ServerReflectionResponse")
FileDescriptorResponse: Any = _message_class("FileDescriptorResponse")
ExtensionNumberResponse: Any = _message_class("ExtensionNumberResponse")
ListServiceResponse: Any = _message_class("ListServiceResponse")
ServiceResponse: Any = _message_class("ServiceResponse")
ErrorResponse: Any = _message_class("ErrorResponse")


def _error(request: Message, code: grpc.StatusCode) -> Any:
    number, text = code.value
    return ServerReflectionResponse(
        error_response=ErrorResponse(error_code=number, error_message=text),
        original_request=request,
    )


def _with_dependencies(file: FileDescriptor) -> list[bytes]:
    """The file and everything it imports, transitively, each once, the
    file itself first (as grpc-go and grpc-java answer)."""
    seen: dict[str, FileDescriptor] = {}
    pending = [file]
    while pending:
        current = pending.pop()
        if current.name in seen:
            continue
        seen[current.name] = current
        pending.extend(current.dependencies)
    out: list[bytes] = []
    for descriptor in seen.values():
        proto = descriptor_pb2.FileDescriptorProto()
        descriptor.CopyToProto(proto)
        out.append(proto.SerializeToString())
    return out


class ReflectionV1Servicer:
    """`grpc.reflection.v1.ServerReflection` over a descriptor pool."""

    def __init__(
        self, service_names: Iterable[str], pool: descriptor_pool.DescriptorPool | None = None
    ) -> None:
        self._names = tuple(sorted(set(service_names)))
        self._pool = pool or descriptor_pool.Default()

    def answer(self, request: Any) -> Any:
        which = request.WhichOneof("message_request")
        pool = self._pool
        try:
            if which == "list_services":
                return ServerReflectionResponse(
                    list_services_response=ListServiceResponse(
                        service=[ServiceResponse(name=n) for n in self._names]
                    ),
                    original_request=request,
                )
            if which == "file_by_filename":
                file = pool.FindFileByName(request.file_by_filename)
            elif which == "file_containing_symbol":
                file = pool.FindFileContainingSymbol(request.file_containing_symbol)
            elif which == "file_containing_extension":
                ask = request.file_containing_extension
                extended = pool.FindMessageTypeByName(ask.containing_type)
                extension = pool.FindExtensionByNumber(extended, ask.extension_number)
                file = pool.FindFileContainingSymbol(extension.full_name)
            elif which == "all_extension_numbers_of_type":
                extended = pool.FindMessageTypeByName(request.all_extension_numbers_of_type)
                numbers = sorted(e.number for e in pool.FindAllExtensions(extended))
                return ServerReflectionResponse(
                    all_extension_numbers_response=ExtensionNumberResponse(
                        base_type_name=extended.full_name, extension_number=numbers
                    ),
                    original_request=request,
                )
            else:
                return _error(request, grpc.StatusCode.INVALID_ARGUMENT)
        except KeyError:
            return _error(request, grpc.StatusCode.NOT_FOUND)
        return ServerReflectionResponse(
            file_descriptor_response=FileDescriptorResponse(
                file_descriptor_proto=_with_dependencies(file)
            ),
            original_request=request,
        )

    async def ServerReflectionInfo(
        self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        async for request in requests:
            yield self.answer(request)


def add_reflection_v1(
    service_names: Iterable[str],
    server: grpc.aio.Server,
    pool: descriptor_pool.DescriptorPool | None = None,
) -> None:
    """Serve grpc.reflection.v1 on `server` for `service_names` (the v1
    service itself is added to the list)."""
    servicer = ReflectionV1Servicer([*service_names, SERVICE_NAME], pool)
    handler = grpc.method_handlers_generic_handler(
        SERVICE_NAME,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=ServerReflectionRequest.FromString,
                response_serializer=ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
