"""The gRPC contract keeps the wire contract of its last release: old clients keep working.

Clients built from a released ``flight_tracker.proto`` keep running during a
rolling update (and in whatever else was built from it). The current
contract, as the committed generated code has it, is compared with the
released one (``protos/released/``): every message, field, enum value,
service and method released is still there with the same number, name,
type and cardinality, and every reserved number and name stays reserved. A
field may go only once a release has shipped it deprecated, and then with
its number and name reserved.
"""

from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from common.rpc.generated import flight_tracker_pb2
from devstack.protos import PROTO_DIR, descriptor_set

RELEASED_PROTO = PROTO_DIR / "released" / "flight_tracker.proto"
Field = descriptor_pb2.FieldDescriptorProto


def current_contract() -> descriptor_pb2.FileDescriptorProto:
    """The contract the services run: the descriptor of the committed generated code."""
    current = descriptor_pb2.FileDescriptorProto()
    flight_tracker_pb2.DESCRIPTOR.CopyToProto(current)
    return current


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> descriptor_pb2.FileDescriptorProto:
    output = tmp_path_factory.mktemp("released") / "released.binpb"
    (contract,) = descriptor_set(RELEASED_PROTO, output).file
    return contract


def reserved(message) -> tuple[set[int], set[str]]:
    numbers = {n for r in message.reserved_range for n in range(r.start, r.end)}
    return numbers, set(message.reserved_name)


def field_shape(field) -> tuple:
    """What a client relies on: number, name, type (and which message or enum), cardinality."""
    return (field.number, field.name, field.type, field.type_name, field.label)


def compare_messages(prefix: str, old_messages, new_messages, problems: list[str]) -> None:
    new_by_name = {message.name: message for message in new_messages}
    for old in old_messages:
        name = f"{prefix}.{old.name}"
        new = new_by_name.get(old.name)
        if new is None:
            problems.append(f"message {name} was removed")
            continue
        new_fields = {field.number: field for field in new.field}
        new_numbers, new_names = reserved(new)
        for field in old.field:
            kept = new_fields.get(field.number)
            if kept is None:
                if not field.options.deprecated:
                    problems.append(
                        f"{name}.{field.name} = {field.number} was removed; clients read it: "
                        "keep it and mark it deprecated"
                    )
                elif field.number not in new_numbers or field.name not in new_names:
                    problems.append(
                        f"{name}.{field.name} = {field.number} went without reserving its "
                        "number and name"
                    )
            elif field_shape(kept) != field_shape(field):
                problems.append(
                    f"{name} field {field.number} changed from {field_shape(field)} "
                    f"to {field_shape(kept)}"
                )
        old_numbers, old_names = reserved(old)
        if not (old_numbers <= new_numbers and old_names <= new_names):
            problems.append(f"{name} no longer reserves what it reserved")
        compare_enums(name, old.enum_type, new.enum_type, problems)
        compare_messages(name, old.nested_type, new.nested_type, problems)


def compare_enums(prefix: str, old_enums, new_enums, problems: list[str]) -> None:
    new_by_name = {enum.name: enum for enum in new_enums}
    for old in old_enums:
        new = new_by_name.get(old.name)
        if new is None:
            problems.append(f"enum {prefix}.{old.name} was removed")
            continue
        values = {value.number: value.name for value in new.value}
        for value in old.value:
            if values.get(value.number) != value.name:
                problems.append(f"enum {prefix}.{old.name} value {value.name} changed")


def wire_problems(old, new) -> list[str]:
    """Everything ``new`` changed that breaks a client or server built from ``old``."""
    problems: list[str] = []
    if new.package != old.package:
        problems.append(f"package {old.package} became {new.package} (every method's path)")
    compare_messages(old.package, old.message_type, new.message_type, problems)
    compare_enums(old.package, old.enum_type, new.enum_type, problems)
    new_services = {service.name: service for service in new.service}
    for service in old.service:
        kept = new_services.get(service.name)
        if kept is None:
            problems.append(f"service {service.name} was removed")
            continue
        methods = {method.name: method for method in kept.method}
        for method in service.method:
            now = methods.get(method.name)
            shape = (
                method.input_type,
                method.output_type,
                method.client_streaming,
                method.server_streaming,
            )
            if now is None:
                problems.append(f"method {service.name}.{method.name} was removed")
            elif shape != (
                now.input_type,
                now.output_type,
                now.client_streaming,
                now.server_streaming,
            ):
                problems.append(f"method {service.name}.{method.name} changed its messages")
    return problems


def test_the_contract_keeps_everything_its_last_release_had(released):
    assert wire_problems(released, current_contract()) == []


def find(contract, message: str):
    (found,) = [m for m in contract.message_type if m.name == message]
    return found


def drop_success(contract, *, reserve: bool) -> None:
    """Remove ``DeleteInterestsResponse.success``, reserving its number and name if asked."""
    response = find(contract, "DeleteInterestsResponse")
    (success,) = [field for field in response.field if field.name == "success"]
    response.field.remove(success)
    if reserve:
        response.reserved_range.add(start=1, end=2)
        response.reserved_name.append("success")


def test_removing_a_field_clients_read_is_caught_even_with_its_number_reserved(released):
    changed = current_contract()
    drop_success(changed, reserve=True)  # what once shipped
    assert wire_problems(released, changed) == [
        "flighttracker.v1.DeleteInterestsResponse.success = 1 was removed; clients read it: "
        "keep it and mark it deprecated"
    ]


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda c: setattr(find(c, "UserRequest").field[0], "number", 3), "UserRequest"),
        (lambda c: setattr(find(c, "UserRequest").field[0], "name", "address"), "UserRequest"),
        (lambda c: setattr(find(c, "UserResponse").field[0], "type", Field.TYPE_INT32), "exists"),
        (
            lambda c: setattr(find(c, "UserRequest").field[0], "label", Field.LABEL_REPEATED),
            "UserRequest",
        ),
        (lambda c: c.message_type.remove(find(c, "UserResponse")), "UserResponse was removed"),
        (lambda c: c.service[0].method.pop(), "was removed"),
        (
            lambda c: setattr(
                c.service[1].method[0], "output_type", ".flighttracker.v1.UserResponse"
            ),
            "changed its messages",
        ),
        (lambda c: setattr(c, "package", "flighttracker.v2"), "package"),
    ],
)
def test_each_kind_of_breaking_change_is_caught(released, change, complaint):
    changed = current_contract()
    change(changed)
    problems = wire_problems(released, changed)
    assert problems and complaint in " ".join(problems), problems


def test_a_field_released_deprecated_may_go_once_reserved():
    old = current_contract()  # success is deprecated here
    unreserved, gone = current_contract(), current_contract()
    drop_success(unreserved, reserve=False)
    assert wire_problems(old, unreserved) == [
        "flighttracker.v1.DeleteInterestsResponse.success = 1 went without reserving its "
        "number and name"
    ]
    drop_success(gone, reserve=True)
    assert wire_problems(old, gone) == []


def test_the_released_snapshot_is_not_the_current_file():
    # A snapshot overwritten by the current file would make the check above vacuous.
    assert Path(RELEASED_PROTO).read_text() != (PROTO_DIR / "flight_tracker.proto").read_text()
