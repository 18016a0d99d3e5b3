"""Drives `binlake registry` with Confluent's own Python client (confluent-kafka).

Usage: python3 registry_client.py http://127.0.0.1:PORT
Asserts along the way; exits non-zero on the first failure.
Needs: pip install 'confluent-kafka[avro]' fastavro
"""

import json
import sys

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

URL = sys.argv[1]

V1 = json.dumps({
    "type": "record", "name": "User", "namespace": "shop",
    "fields": [{"name": "id", "type": "long"}, {"name": "name", "type": "string"}],
})
# Backward-compatible: a nullable field with default null.
V2 = json.dumps({
    "type": "record", "name": "User", "namespace": "shop",
    "fields": [{"name": "id", "type": "long"}, {"name": "name", "type": "string"},
               {"name": "email", "type": ["null", "string"], "default": None}],
})
V3_OK = json.dumps({
    "type": "record", "name": "User", "namespace": "shop",
    "fields": [{"name": "id", "type": "long"}, {"name": "name", "type": "string"},
               {"name": "email", "type": ["null", "string"], "default": None},
               {"name": "age", "type": ["null", "int"], "default": None}],
})
# Incompatible: name changes type string -> int.
V3_BAD = json.dumps({
    "type": "record", "name": "User", "namespace": "shop",
    "fields": [{"name": "id", "type": "long"}, {"name": "name", "type": "int"}],
})


def client():
    # A fresh client per step where caching would hide what the server answers.
    return SchemaRegistryClient({"url": URL, "timeout": 10})


def expect_error(fn, status, code):
    try:
        fn()
    except SchemaRegistryError as e:
        assert e.http_status_code == status and e.error_code == code, \
            f"expected {status}/{code}, got {e.http_status_code}/{e.error_code}: {e.error_message}"
        return e
    raise AssertionError(f"expected error {status}/{code}, got success")


def main():
    subject = "py-value"

    id1 = client().register_schema(subject, Schema(V1, "AVRO"))
    assert isinstance(id1, int) and id1 >= 1, id1
    # Same schema, different whitespace: the same id, no new version.
    again = client().register_schema(subject, Schema(json.dumps(json.loads(V1), indent=2), "AVRO"))
    assert again == id1, (again, id1)

    found = client().lookup_schema(subject, Schema(V1, "AVRO"))
    assert found.schema_id == id1 and found.version == 1 and found.subject == subject, found
    expect_error(lambda: client().lookup_schema(subject, Schema(V3_OK, "AVRO")), 404, 40403)

    by_id = client().get_schema(id1)
    assert json.loads(by_id.schema_str) == json.loads(V1), by_id.schema_str
    assert by_id.schema_type == "AVRO", by_id.schema_type

    id2 = client().register_schema(subject, Schema(V2, "AVRO"))
    assert id2 != id1, (id1, id2)
    latest = client().get_latest_version(subject)
    assert latest.version == 2 and latest.schema_id == id2, latest
    assert json.loads(latest.schema.schema_str) == json.loads(V2)
    v1 = client().get_version(subject, 1)
    assert v1.schema_id == id1, v1
    assert client().get_versions(subject) == [1, 2]
    assert subject in client().get_subjects()

    # Compatibility (BACKWARD by default).
    assert client().test_compatibility(subject, Schema(V3_OK, "AVRO")) is True
    assert client().test_compatibility(subject, Schema(V3_BAD, "AVRO")) is False
    assert client().test_compatibility("no-such-subject", Schema(V3_BAD, "AVRO")) is True
    e = expect_error(lambda: client().register_schema(subject, Schema(V3_BAD, "AVRO")), 409, 409)
    assert "name" in e.error_message, e.error_message

    # Config.
    expect_error(lambda: client().get_compatibility(subject), 404, 40408)
    assert client().get_compatibility() == "BACKWARD"
    client().set_compatibility(subject, "FULL")
    assert client().get_compatibility(subject) == "FULL"
    client().set_compatibility(level="FORWARD")
    assert client().get_compatibility() == "FORWARD"
    client().set_compatibility(level="BACKWARD")
    expect_error(lambda: client().set_compatibility(subject, "SIDEWAYS"), 422, 42203)

    # Bad input and missing things.
    expect_error(lambda: client().register_schema("bad", Schema('{"type":"nope"}', "AVRO")), 422, 42201)
    expect_error(lambda: client().register_schema("bad", Schema('{"type":"object"}', "JSON")), 422, 42201)
    expect_error(lambda: client().get_latest_version("missing"), 404, 40401)
    expect_error(lambda: client().get_version(subject, 99), 404, 40402)
    expect_error(lambda: client().get_schema(987654), 404, 40403)

    # Serializer / deserializer round trip through the registry (Confluent wire format).
    value_schema = json.dumps({
        "type": "record", "name": "Order", "namespace": "shop",
        "fields": [{"name": "id", "type": "long"}, {"name": "total", "type": "double"},
                   {"name": "note", "type": ["null", "string"], "default": None}],
    })
    ser = AvroSerializer(client(), value_schema, conf={"auto.register.schemas": True})
    ctx = SerializationContext("orders", MessageField.VALUE)
    record = {"id": 42, "total": 9.5, "note": "hi"}
    data = ser(record, ctx)
    assert data[0] == 0, data[:5]
    wire_id = int.from_bytes(data[1:5], "big")
    assert wire_id == client().get_latest_version("orders-value").schema_id, wire_id
    de = AvroDeserializer(client())
    back = de(data, ctx)
    assert back == record, back

    # Deletes: soft, then permanent.
    assert client().delete_subject(subject) == [1, 2]
    assert subject not in client().get_subjects()
    expect_error(lambda: client().get_versions(subject), 404, 40401)
    # The ids still resolve after a soft delete.
    assert json.loads(client().get_schema(id2).schema_str) == json.loads(V2)
    assert client().delete_subject(subject, permanent=True) == [1, 2]
    expect_error(lambda: client().get_versions(subject), 404, 40401)

    print("python client: all checks passed")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"assertion failed: {e}", file=sys.stderr)
        raise
