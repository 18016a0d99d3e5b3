"""Runs Spark SQL statements against a Hive metastore and prints their results as JSON.

Owns: the independent reader of the lake for the integration tests (tests/support/hadoop.rs,
`spark_sql`). pyspark 4.x, local[1], Hive support through the metastore given as the first
argument, session time zone UTC (and the Python and JVM time zones too, so that timestamps
are never shifted), every socket on 127.0.0.1 and no web UI.

Usage: spark_sql.py THRIFT_URI < statements.json   (a JSON list of SQL strings)

Prints one line to stdout: a JSON list with, for each statement in order, the list of its
result rows, each an object {column: value}. Values are strings, rendered exactly:
decimals with str() (Decimal keeps the column's scale), timestamps and dates with
isoformat() ('2024-01-02T03:04:05.123456', microseconds omitted when zero), bytes as upper
hex, booleans 'true'/'false', numbers with str(), structs/arrays/maps as JSON of the same
renderings; NULL is JSON null. Errors go to stderr with exit status 1.
"""

import datetime
import decimal
import json
import os
import sys
import tempfile
import time

os.environ["TZ"] = "UTC"
time.tzset()


def render(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, (datetime.datetime, datetime.date)):
        return v.isoformat()
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex().upper()
    if isinstance(v, (int, float, str)):
        return str(v)
    return json.dumps(nested(v), ensure_ascii=False)


def nested(v):
    from pyspark.sql import Row

    if isinstance(v, Row):
        return {k: nested(x) for k, x in v.asDict().items()}
    if isinstance(v, dict):
        return {str(render(k)): nested(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [nested(x) for x in v]
    return render(v)


def main():
    if len(sys.argv) != 2:
        print("usage: spark_sql.py THRIFT_URI < statements.json", file=sys.stderr)
        return 2
    uri = sys.argv[1]
    statements = json.load(sys.stdin)
    from pyspark.sql import SparkSession

    with tempfile.TemporaryDirectory(prefix="binlake-spark-") as tmp:
        spark = (
            SparkSession.builder.master("local[1]")
            .appName("binlake-test")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.hadoop.hive.metastore.uris", uri)
            .config("spark.sql.warehouse.dir", os.path.join(tmp, "warehouse"))
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.ui.enabled", "false")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC -Dderby.system.home=" + tmp)
            .config("spark.sql.shuffle.partitions", "1")
            .enableHiveSupport()
            .getOrCreate()
        )
        spark.sparkContext.setLogLevel("ERROR")
        try:
            out = []
            for stmt in statements:
                rows = spark.sql(stmt).collect()
                out.append([{k: render(v) for k, v in r.asDict().items()} for r in rows])
        finally:
            spark.stop()
    sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
