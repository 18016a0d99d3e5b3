#!/usr/bin/env python3
"""Shows a binlake table as it stands now, read independently of binlake:

  peek.py kafka --brokers HOST:PORT --registry URL TOPIC [--key COL ...] [--keys-only]
      the compacted topic with Python confluent-kafka and the schema registry: every
      partition from the start to its end, the last record per key (a tombstone deletes).
  peek.py lake DIR --key COL [--key COL ...] [--keys-only]
      the lake's Parquet changelog with DuckDB: the newest row per key (by Kafka partition and
      offset), deleted keys left out.

Rows are printed as JSON lines sorted by key; --keys-only prints only the key values.
"""
import argparse
import json
import sys


def show(rows, keys, keys_only):
    rows.sort(key=lambda r: [str(r.get(k)) for k in keys])
    for r in rows:
        if keys_only:
            print(",".join(str(r.get(k)) for k in keys))
        else:
            print(json.dumps(r, default=str, ensure_ascii=False))
    print(f"{len(rows)} rows", file=sys.stderr)


def kafka(args):
    from confluent_kafka import Consumer, TopicPartition, KafkaError
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import SerializationContext, MessageField

    registry = SchemaRegistryClient({"url": args.registry})
    decode = AvroDeserializer(registry)
    c = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": "binlake-peek",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    meta = c.list_topics(args.topic, timeout=10).topics[args.topic]
    if meta.error is not None:
        sys.exit(f"topic {args.topic}: {meta.error}")
    parts = [TopicPartition(args.topic, p, 0) for p in meta.partitions]
    c.assign(parts)
    live, pending = {}, {p.partition for p in parts}
    while pending:
        m = c.poll(10)
        if m is None:
            sys.exit(f"timed out reading {args.topic}")
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                pending.discard(m.partition())
                continue
            sys.exit(str(m.error()))
        key = decode(m.key(), SerializationContext(args.topic, MessageField.KEY))
        k = json.dumps(key, sort_keys=True, default=str)
        if m.value() is None:
            live.pop(k, None)
        else:
            live[k] = decode(m.value(), SerializationContext(args.topic, MessageField.VALUE))
    c.close()
    keys = args.key or sorted(json.loads(next(iter(live), "{}")).keys())
    show(list(live.values()), keys, args.keys_only)


def lake(args):
    import duckdb

    keys = ", ".join(f'"{k}"' for k in args.key)
    glob = f"{args.dir.rstrip('/')}/**/*.parquet"
    sql = f"""
        SELECT * EXCLUDE (rn) FROM (
          SELECT *, row_number() OVER (PARTITION BY {keys}
                                       ORDER BY __kafka_offset DESC) AS rn
          FROM read_parquet('{glob}', hive_partitioning = true, union_by_name = true))
        WHERE rn = 1 AND NOT __deleted"""
    rel = duckdb.sql(sql)
    cols = rel.columns
    show([dict(zip(cols, r)) for r in rel.fetchall()], args.key, args.keys_only)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("kafka")
    k.add_argument("topic")
    k.add_argument("--brokers", default="127.0.0.1:39092")
    k.add_argument("--registry", default="http://127.0.0.1:38081")
    k.add_argument("--key", action="append")
    k.add_argument("--keys-only", action="store_true")
    l = sub.add_parser("lake")
    l.add_argument("dir")
    l.add_argument("--key", action="append", required=True)
    l.add_argument("--keys-only", action="store_true")
    args = p.parse_args()
    kafka(args) if args.cmd == "kafka" else lake(args)


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:  # e.g. piped into head
        sys.stderr.close()
