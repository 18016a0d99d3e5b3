//! The sink's own work without Kafka: 1,000,000 records of the 10-column bench table, encoded
//! as `binlake run` encodes them, decoded into Arrow builders and written as Parquet (and
//! Avro) to a file:// lake through the same code path as `binlake sink`. Run with
//! `cargo bench --bench sink_write`; prints rows/s per format.

use std::sync::Arc;
use std::time::Instant;

use binlake::avro::wire;
use binlake::config::{SinkCompression, SinkFormat};
use binlake::sink::format::LakeFile;
use binlake::sink::rows::{decode_value, Origin, RowBuffer};
use binlake::sink::schema::LakeSchema;
use binlake::sink::storage::{LocalStorage, Storage};

const KEY: &str = r#"{"type":"record","name":"Key","fields":[{"name":"id","type":"long"}]}"#;
const VALUE: &str = r#"{"type":"record","name":"Value","binlake.table":"bench.t","fields":[
  {"name":"id","type":"long"},
  {"name":"a","type":["null","int"],"default":null},
  {"name":"b","type":["null","long"],"default":null},
  {"name":"c","type":["null","string"],"default":null},
  {"name":"d","type":["null",{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}],"default":null},
  {"name":"e","type":["null",{"type":"long","logicalType":"local-timestamp-micros"}],"default":null},
  {"name":"f","type":["null","double"],"default":null},
  {"name":"g","type":["null","string"],"default":null},
  {"name":"h","type":["null","int"],"default":null},
  {"name":"i","type":["null",{"type":"int","logicalType":"date"}],"default":null},
  {"name":"__op","type":"string"},{"name":"__ts_ms","type":"long"},{"name":"__pos","type":"string"}]}"#;

fn record(i: i64) -> Vec<u8> {
    let mut v = Vec::with_capacity(160);
    wire::long(&mut v, i);
    let some = |v: &mut Vec<u8>| wire::long(v, 1);
    some(&mut v);
    wire::long(&mut v, i % 1000);
    some(&mut v);
    wire::long(&mut v, i * 7);
    some(&mut v);
    wire::bytes(&mut v, format!("name-{i}").as_bytes());
    some(&mut v);
    let d = (i as i128).to_be_bytes();
    wire::bytes(&mut v, &d[10..]);
    some(&mut v);
    wire::long(&mut v, 1_704_067_200_000_000 + i * 1_000_000);
    some(&mut v);
    v.extend_from_slice(&(i as f64 / 3.0).to_le_bytes());
    some(&mut v);
    wire::bytes(&mut v, &[b'x'; 40]);
    some(&mut v);
    wire::long(&mut v, i % 100);
    some(&mut v);
    wire::long(&mut v, 19_723 + i % 365);
    wire::bytes(&mut v, b"c");
    wire::long(&mut v, 1_704_067_200_000);
    wire::bytes(
        &mut v,
        format!("binlog.000001:{}:0", 1000 + i * 100).as_bytes(),
    );
    v
}

fn main() {
    // `cargo bench` passes --bench; under `cargo test --all-targets` a small run checks the
    // path still works.
    let bench = std::env::args().any(|a| a == "--bench");
    let n: i64 = if bench { 1_000_000 } else { 20_000 };
    let records: Vec<Vec<u8>> = (0..n).map(record).collect();
    let schema = Arc::new(LakeSchema::derive("bench.bench.t", KEY, VALUE).expect("schema"));
    let dir = std::env::temp_dir().join(format!("binlake-sink-bench-{}", std::process::id()));
    let storage = LocalStorage::new(dir.to_str().expect("utf-8")).expect("storage");
    for (format, name) in [(SinkFormat::Parquet, "parquet"), (SinkFormat::Avro, "avro")] {
        let start = Instant::now();
        let path = format!("t.{name}");
        let mut file = LakeFile::create(&storage, &path, &schema, format, SinkCompression::Snappy)
            .expect("file");
        let mut rows = RowBuffer::new(schema.clone());
        for (i, r) in records.iter().enumerate() {
            let o = Origin {
                topic: "bench.bench.t",
                partition: 0,
                offset: i as i64,
                timestamp_ms: 0,
            };
            let d = decode_value(&schema, r, &o).expect("decode");
            rows.push(d, &o).expect("push");
            if rows.rows() >= 8192 {
                file.write(&rows.take_batch().expect("batch"))
                    .expect("write");
            }
        }
        file.write(&rows.take_batch().expect("batch"))
            .expect("write");
        file.finish(&storage, "").expect("finish");
        let secs = start.elapsed().as_secs_f64();
        let size = storage
            .list("")
            .expect("list")
            .iter()
            .map(|e| e.len)
            .sum::<u64>();
        println!(
            "sink_write format={name} rows={n} seconds={secs:.3} rows_per_sec={:.0} file_mb={:.1}",
            n as f64 / secs,
            size as f64 / 1e6
        );
        storage.delete(&path).expect("delete");
    }
    let _ = std::fs::remove_dir_all(dir);
}
