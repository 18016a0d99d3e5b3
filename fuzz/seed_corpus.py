#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/ (git-ignored).

binlog_decode, binlog_decode_crc: every binlog file of tests/fixtures/mysql-binlogs (MySQL
5.7, 8.0, 8.2, 9.x, Aurora; with and without CRC32, zstd transaction payloads), plus small
files cut from them: the magic, the file's format description, and one event (a rows event
with the TABLE_MAP before it), so that mutations work on one event at a time; plus a few
synthetic MariaDB events (the fixtures have none).

registry_input: commands in the target's format (see fuzz_targets/registry_input.rs) built
from the schemas of schemas/, the registry's unit tests, and a value schema as binlake derives
it.

avro_encode needs no seeds (its input is `arbitrary`'s encoding, not a file format).

Usage: python3 fuzz/seed_corpus.py   (from the repository root or from fuzz/)
"""

import hashlib
import json
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "mysql-binlogs")
CORPUS = os.path.join(HERE, "corpus")
MAGIC = b"\xfebin"
ROWS = {23, 24, 25, 30, 31, 32, 39}
TABLE_MAP = 19
FDE = 15


def put(target, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def events(data):
    at = 4
    while at + 19 <= len(data):
        size = struct.unpack_from("<I", data, at + 9)[0]
        if size < 19 or at + size > len(data):
            return
        yield data[at : at + size]
        at += size


def binlog_files():
    for dirpath, _, names in os.walk(FIXTURES):
        for n in sorted(names):
            p = os.path.join(dirpath, n)
            with open(p, "rb") as f:
                data = f.read()
            if data.startswith(MAGIC):
                yield data


def event(type_code, body, crc, log_pos=0, flags=0):
    """A v4 event: header, body and (with crc) its CRC32."""
    size = 19 + len(body) + (4 if crc else 0)
    head = struct.pack("<IBIIIH", 1700000000, type_code, 1, size, log_pos, flags)
    ev = head + body
    if crc:
        ev += struct.pack("<I", zlib.crc32(ev) & 0xFFFFFFFF)
    return ev


def mariadb_fde(crc):
    """A MariaDB 10.11 format description (checksum algorithm CRC32 or OFF)."""
    version = b"10.11.6-MariaDB-log".ljust(50, b"\0")
    post_header = bytes([56, 13, 0, 8, 0, 18, 0, 4, 4, 4, 4, 18, 0, 0, 0xF5, 0, 4, 26, 8, 0, 0, 0, 8, 8, 8, 2, 0, 0, 0, 10, 10, 10, 42, 42, 0, 18, 52, 0, 10, 40, 0] + [0] * 127)
    body = struct.pack("<H", 4) + version + struct.pack("<I", 0) + bytes([19]) + post_header[:168]
    body += bytes([1 if crc else 0])
    return event(FDE, body, True)


def binlog_seeds():
    n = 0
    for data in binlog_files():
        for t in ("binlog_decode", "binlog_decode_crc"):
            put(t, data)
        n += 1
        evs = list(events(data))
        if not evs or evs[0][4] != FDE:
            continue
        fde = evs[0]
        maps = {}
        for ev in evs[1:]:
            ty = ev[4]
            if ty == TABLE_MAP:
                maps[ev[19:25]] = ev
            cut = MAGIC + fde
            if ty in ROWS and ev[19:25] in maps:
                cut += maps[ev[19:25]]
            cut += ev
            for t in ("binlog_decode", "binlog_decode_crc"):
                put(t, cut)
    # MariaDB: GTID (standalone and transactional), GTID_LIST, ANNOTATE_ROWS, START_ENCRYPTION,
    # a compressed query event; with and without CRC32.
    for crc in (True, False):
        fde = mariadb_fde(crc)
        gtid = event(162, struct.pack("<QIB", 15, 0, 0x1) + b"\0" * 6, crc)
        gtid_txn = event(162, struct.pack("<QIB", 16, 0, 0x0) + b"\0" * 6, crc)
        glist = event(163, struct.pack("<I", 1) + struct.pack("<IIQ", 0, 1, 15), crc)
        annotate = event(160, b"INSERT INTO t VALUES (1)", crc)
        query = event(2, struct.pack("<IIBHH", 1, 0, 1, 0, 0) + b"d\0" + b"CREATE TABLE t (a int)", crc)
        begin = event(2, struct.pack("<IIBHH", 1, 0, 1, 0, 0) + b"d\0" + b"BEGIN", crc)
        xid = event(16, struct.pack("<Q", 7), crc)
        enc = event(164, struct.pack("<BI", 1, 1) + b"\0" * 12, crc)
        compressed = event(166, bytes([0x01, 5]) + b"x" * 8, crc)
        base = MAGIC + fde
        for tail in (gtid + query, gtid_txn + begin + annotate + xid, glist, enc, compressed):
            for t in ("binlog_decode", "binlog_decode_crc"):
                put(t, base + tail)
    return n


SCHEMAS = [
    '"string"',
    '"long"',
    '{"type":"record","name":"User","namespace":"shop","fields":[{"name":"id","type":"long"},{"name":"name","type":"string"}]}',
    '{"type":"record","name":"User","namespace":"shop","fields":[{"name":"id","type":"long"},{"name":"name","type":"string"},{"name":"email","type":["null","string"],"default":null}]}',
    '{"type":"record","name":"R","fields":[{"name":"n","type":"int"}]}',
    '{"type":"record","name":"R","fields":[{"name":"n","type":"long"}]}',
    '{"type":"record","name":"V","fields":[{"name":"u","type":{"type":"bytes","logicalType":"decimal","precision":20,"scale":2}}]}',
    '{"type":"record","name":"V","fields":[{"name":"u","type":["null",{"type":"bytes","logicalType":"decimal","precision":20,"scale":0}],"default":null}]}',
    '{"type":"enum","name":"E","symbols":["A","B"],"default":"A"}',
    '{"type":"array","items":{"type":"map","values":"float"}}',
    '{"type":"fixed","name":"F","size":16,"logicalType":"decimal","precision":4,"scale":2}',
    '{"type":"record","name":"L","fields":[{"name":"next","type":["null","L"],"default":null},{"name":"d","type":{"type":"int","logicalType":"date"}},{"name":"t","type":{"type":"long","logicalType":"local-timestamp-micros"}},{"name":"u","type":{"type":"string","logicalType":"uuid"}}],"aliases":["M"],"doc":"x"}',
    '{"type":"record","name":"Value","namespace":"binlake.shop.orders","binlake.table":"shop.orders","binlake.key":"primary","fields":[{"name":"id","type":{"type":"bytes","logicalType":"decimal","precision":20,"scale":0},"binlake.sql":"bigint unsigned"},{"name":"amount","type":["null",{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}],"default":null,"binlake.sql":"decimal(12,2)"},{"name":"at","type":{"type":"long","logicalType":"timestamp-micros"},"binlake.sql":"timestamp(6)"},{"name":"v","type":{"type":"array","items":"float"},"binlake.sql":"vector(3)"},{"name":"__op","type":"string"},{"name":"__ts_ms","type":"long"},{"name":"__pos","type":"string"}]}',
]


def registry_seeds():
    for name in sorted(os.listdir(os.path.join(ROOT, "schemas"))):
        with open(os.path.join(ROOT, "schemas", name)) as f:
            SCHEMAS.append(f.read())
    sep, fs = b"\xff", b"\xfe"

    def cmd(op, *fields):
        return op.encode() + fs.join(f.encode() if isinstance(f, str) else f for f in fields)

    n = 0
    for i, s in enumerate(SCHEMAS):
        nxt = SCHEMAS[(i + 1) % len(SCHEMAS)]
        seq = [
            cmd("R", "s-value", s),
            cmd("R", "s-value", nxt),
            cmd("S", "s-value", '{"compatibility":"NONE"}'),
            cmd("R", "s-value", nxt),
            cmd("L", "s-value", s),
            cmd("C", "s-value", "1", nxt),
            cmd("A", "s-value", nxt),
            cmd("G", "s-value", "latest", "deleted=true"),
            cmd("d", "s-value", "1", ""),
            cmd("d", "s-value", "1", "permanent=true"),
            cmd("D", "s-value", ""),
            cmd("D", "s-value", "permanent=true"),
            cmd("B", "t", json.dumps({"schema": s, "schemaType": "AVRO", "references": []})),
            cmd("S", "", '{"compatibility":"FULL_TRANSITIVE"}'),
            cmd("R", "t", nxt),
        ]
        put("registry_input", sep.join(seq))
        n += 1
    # Records as other registries write them, then API calls over them.
    rec = lambda subject, version, id_, schema, deleted=False: json.dumps(
        {"subject": subject, "version": version, "id": id_, "schema": schema, "deleted": deleted}
    )
    key = lambda subject, version: json.dumps(
        {"keytype": "SCHEMA", "subject": subject, "version": version, "magic": 1}
    )
    log = [
        cmd("K", key("a", 1), rec("a", 1, 1, SCHEMAS[2])),
        cmd("K", key("a", 2), rec("a", 2, 4294967295, SCHEMAS[3])),
        cmd("K", '{"keytype":"CONFIG","subject":null,"magic":0}', '{"compatibilityLevel":"FORWARD"}'),
        cmd("K", '{"keytype":"DELETE_SUBJECT","subject":"a","magic":0}', '{"subject":"a","version":1}'),
        cmd("K", '{"keytype":"NOOP","magic":0}'),
        cmd("K", key("a", 2)),
        cmd("R", "a", SCHEMAS[4]),
        cmd("Q", "deleted=%54rue&x=%zz+y"),
    ]
    put("registry_input", sep.join(log))
    return n + 1


if __name__ == "__main__":
    files = binlog_seeds()
    regs = registry_seeds()
    for t in sorted(os.listdir(CORPUS)):
        print(f"{t}: {len(os.listdir(os.path.join(CORPUS, t)))} seeds")
    print(f"({files} fixture files, {regs} registry sequences)")
