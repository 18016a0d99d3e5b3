"""Independent reader of binlake's lake: DuckDB for Parquet (hive_partitioning), fastavro for
Avro container files. For every table directory {root}/{db}/{table}, reads all final files,
applies the rows in Kafka order per partition (last row per key wins, a __deleted row removes
the key) and prints {"tables": {"db.table": [row, ...]}, "stats": {...}} with each row in the
canonical text form of canonical.py, like read_tables.py does for the topics.

stats: rows, deleted rows, files, duplicate (partition, offset) pairs, temporary files visible
outside _tmp, and per table the offsets found per partition.

usage: read_lake.py ROOT_DIR parquet|avro REGISTRY_URL PREFIX
"""
import glob
import json
import os
import sys
import urllib.request

from canonical import canonical, field_tags

root, fmt, registry_url, prefix = sys.argv[1:5]


def latest(subject):
    with urllib.request.urlopen(f"{registry_url}/subjects/{subject}/versions/latest") as r:
        return json.loads(json.loads(r.read())["schema"])


def pos_order(pos):
    """`FILE:OFFSET:ROW` or `FILE:OFFSET:sN` (snapshot rows sit before the binlog rows
    at their offset) as a sortable tuple."""
    file, offset, row = pos.rsplit(":", 2)
    return (file, int(offset), 0, int(row[1:])) if row.startswith("s") else (file, int(offset), 1, int(row))


def read_parquet(table_dir):
    import duckdb
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    pattern = os.path.join(table_dir, "**", "*.parquet")
    src = f"read_parquet('{pattern}', hive_partitioning = true, union_by_name = true, filename = true)"
    cols = con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
    exprs = []
    for name, ty, *_ in cols:
        q = '"' + name.replace('"', '""') + '"'
        exprs.append(f"CAST({q} AS TIMESTAMP) AS {q}" if ty == "TIMESTAMP WITH TIME ZONE" else q)
    cur = con.execute(f"SELECT {', '.join(exprs)} FROM {src}")
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r)) for r in cur.fetchall()]
    columns = {}
    for r in rows:
        f = r.pop("filename")
        if f not in columns:
            columns[f] = {c[0] for c in con.execute(
                f"DESCRIBE SELECT * FROM read_parquet('{f}')").fetchall()}
        r["__columns"] = columns[f]
    return rows


def read_avro(table_dir):
    import fastavro
    rows = []
    for path in sorted(glob.glob(os.path.join(table_dir, "**", "*.avro"), recursive=True)):
        with open(path, "rb") as f:
            reader = fastavro.reader(f)
            names = {fl["name"] for fl in reader.writer_schema["fields"]}
            for r in reader:
                r["__columns"] = names
                rows.append(r)
    return rows


tables, stats = {}, {"rows": 0, "deleted": 0, "files": 0, "duplicate_offsets": 0,
                     "duplicate_changes": 0, "stray_files": 0, "offsets": {}}
for path in glob.glob(os.path.join(root, "**", "*"), recursive=True):
    rel = os.path.relpath(path, root)
    if os.path.isfile(path) and not rel.startswith("_tmp"):
        if path.endswith("." + fmt):
            stats["files"] += 1
        else:
            stats["stray_files"] += 1

for db in sorted(os.listdir(root)):
    if db.startswith("_") or not os.path.isdir(os.path.join(root, db)):
        continue
    for table in sorted(os.listdir(os.path.join(root, db))):
        table_dir = os.path.join(root, db, table)
        topic = f"{prefix}.{db}.{table}"
        key_fields = [f["name"] for f in latest(f"{topic}-key")["fields"]]
        tags = field_tags(latest(f"{topic}-value"))
        rows = read_parquet(table_dir) if fmt == "parquet" else read_avro(table_dir)
        rows.sort(key=lambda r: (r["__kafka_partition"], r["__kafka_offset"]))
        seen, state, offsets, changes = set(), {}, {}, set()
        # The table's current columns: those of the file holding its newest change.
        dated = [r for r in rows if r.get("__pos") is not None]
        current = max(dated, key=lambda r: pos_order(r["__pos"]))["__columns"] if dated else None
        for r in rows:
            po = (r["__kafka_partition"], r["__kafka_offset"])
            if po in seen:
                stats["duplicate_offsets"] += 1
            seen.add(po)
            # A source change is (__pos, __op); tombstone rows carry no __pos.
            if r.get("__pos") is not None:
                if (r["__pos"], r["__op"]) in changes:
                    stats["duplicate_changes"] += 1
                changes.add((r["__pos"], r["__op"]))
            offsets.setdefault(str(po[0]), []).append(po[1])
            stats["rows"] += 1
            key = tuple(r[k] for k in key_fields)
            if r["__deleted"]:
                stats["deleted"] += 1
                state.pop(key, None)
                continue
            state[key] = {tags[n][0]: canonical(r.get(n), tags[n][1])
                          for n in tags if not n.startswith("__")
                          and (current is None or n in current)}
        stats["offsets"][f"{db}.{table}"] = offsets
        tables[f"{db}.{table}"] = sorted(state.values(), key=lambda x: json.dumps(x, sort_keys=True))
print(json.dumps({"tables": tables, "stats": stats}, sort_keys=True, default=str))
