"""Remote write 1.0 protobuf messages, built from descriptors (see `remote_write.proto`).

The hot path does not use these classes (`encoding` writes the wire format with numpy); they are
the reference the tests decode with, and the floor the benchmark compares against.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto


def _message(
    file: descriptor_pb2.FileDescriptorProto, name: str, fields: list[tuple[str, int, int, str]]
) -> None:
    message = file.message_type.add(name=name)
    for field_name, number, kind, type_name in fields:
        repeated = type_name.startswith("*")
        message.field.add(
            name=field_name,
            number=number,
            type=kind,
            type_name=type_name.lstrip("*") or None,
            label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
        )


@cache
def messages() -> dict[str, Any]:
    """Message classes by name: Sample, Label, TimeSeries, WriteRequest."""
    file = descriptor_pb2.FileDescriptorProto(
        name="openanomaly/remote_write.proto", package="prometheus", syntax="proto3"
    )
    _message(
        file, "Sample", [("value", 1, _F.TYPE_DOUBLE, ""), ("timestamp", 2, _F.TYPE_INT64, "")]
    )
    _message(file, "Label", [("name", 1, _F.TYPE_STRING, ""), ("value", 2, _F.TYPE_STRING, "")])
    _message(
        file,
        "TimeSeries",
        [
            ("labels", 1, _F.TYPE_MESSAGE, "*.prometheus.Label"),
            ("samples", 2, _F.TYPE_MESSAGE, "*.prometheus.Sample"),
        ],
    )
    _message(file, "WriteRequest", [("timeseries", 1, _F.TYPE_MESSAGE, "*.prometheus.TimeSeries")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"prometheus.{name}"))
        for name in ("Sample", "Label", "TimeSeries", "WriteRequest")
    }
