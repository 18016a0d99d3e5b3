//! The Hive metastore side of the sink: Thrift calls (crate hive_metastore, TBinaryProtocol
//! over a plain socket, as every Hive metastore serves it) that declare the lake's tables
//! and partitions, so that Spark, Hive, Trino... find the files.
//!
//! Owns: what binlake registers. Invariants: tables are EXTERNAL (dropping one never deletes
//! lake files); registering is idempotent (an existing database, table or partition is
//! success); an existing table only ever gains columns, appended after its current ones in
//! the given order (a column is never dropped, renamed or retyped here), so readers of older
//! files keep working.
//!
//! Like `HdfsStorage`, [`Hive`] owns a small tokio runtime and blocks on the client's calls:
//! call it from a plain thread or `spawn_blocking`, never from an async task.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hive_metastore::{
    Database, FieldSchema, Partition, SerDeInfo, StorageDescriptor, Table,
    ThriftHiveMetastoreAddPartitionException, ThriftHiveMetastoreClient,
    ThriftHiveMetastoreClientBuilder, ThriftHiveMetastoreCreateDatabaseException,
    ThriftHiveMetastoreCreateTableException, ThriftHiveMetastoreDropPartitionException,
    ThriftHiveMetastoreDropTableException, ThriftHiveMetastoreGetDatabaseException,
    ThriftHiveMetastoreGetTableException,
};
use tokio::runtime::Runtime;
use volo_thrift::MaybeException;

use crate::error::{Error, Result};

const PARQUET_SERDE: &str = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe";
const PARQUET_INPUT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat";
const PARQUET_OUTPUT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat";
const AVRO_SERDE: &str = "org.apache.hadoop.hive.serde2.avro.AvroSerDe";
const AVRO_INPUT: &str = "org.apache.hadoop.hive.ql.io.avro.AvroContainerInputFormat";
const AVRO_OUTPUT: &str = "org.apache.hadoop.hive.ql.io.avro.AvroContainerOutputFormat";
const AVRO_LITERAL: &str = "avro.schema.literal";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Generous: creating a table or partition makes the metastore create its directory.
const RPC_TIMEOUT: Duration = Duration::from_secs(120);

/// How the table's files are stored.
#[derive(Debug, Clone, PartialEq)]
pub enum HiveFormat {
    Parquet,
    /// Avro container files; the SerDe reads them with this schema (`avro.schema.literal`).
    Avro {
        schema_literal: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct HiveColumn {
    pub name: String,
    /// Hive type text: `bigint`, `decimal(20,0)`, `timestamp`, `string`, `binary`...
    pub ty: String,
    pub comment: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HiveTable {
    pub db: String,
    pub name: String,
    /// Full URL of the table's directory (`hdfs://127.0.0.1:9000/lake/app/t`).
    pub location: String,
    pub columns: Vec<HiveColumn>,
    pub partition_keys: Vec<HiveColumn>,
    pub format: HiveFormat,
}

pub struct Hive {
    uri: String,
    // Declared before `rt`: dropped first, while the runtime still runs.
    client: ThriftHiveMetastoreClient,
    rt: Runtime,
}

/// Text of an optional Thrift string.
fn text<S: AsRef<str>>(s: &Option<S>) -> String {
    s.as_ref()
        .map(|s| s.as_ref().to_string())
        .unwrap_or_default()
}

fn now_secs() -> i32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i32::try_from(d.as_secs()).unwrap_or(i32::MAX))
        .unwrap_or(0)
}

fn fields(cols: &[HiveColumn]) -> Vec<FieldSchema> {
    cols.iter()
        .map(|c| FieldSchema {
            name: Some(c.name.clone().into()),
            r#type: Some(c.ty.clone().into()),
            comment: (!c.comment.is_empty()).then(|| c.comment.clone().into()),
        })
        .collect()
}

fn columns(fields: &Option<Vec<FieldSchema>>) -> Vec<HiveColumn> {
    fields
        .iter()
        .flatten()
        .map(|f| HiveColumn {
            name: text(&f.name),
            ty: text(&f.r#type),
            comment: text(&f.comment),
        })
        .collect()
}

/// `host:port` of `thrift://host:port`.
fn parse_uri(uri: &str) -> Result<SocketAddr> {
    let bad = |why: String| {
        Error::Hive(format!(
            "[hive] uri = \"{uri}\": {why} (expected thrift://host:port; set [hive] \
             enabled = false to run the sink without a metastore)"
        ))
    };
    let hostport = uri
        .strip_prefix("thrift://")
        .ok_or_else(|| bad("not a thrift:// URI".into()))?
        .trim_end_matches('/');
    if !hostport.contains(':') {
        return Err(bad("the port is missing".into()));
    }
    hostport
        .to_socket_addrs()
        .map_err(|e| bad(format!("cannot resolve {hostport}: {e}")))?
        .next()
        .ok_or_else(|| bad(format!("{hostport} resolves to no address")))
}

impl Hive {
    /// Connects to the metastore at `uri` (`thrift://host:port`) and checks that it answers.
    pub fn connect(uri: &str) -> Result<Hive> {
        let addr = parse_uri(uri)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("binlake-hive")
            .enable_all()
            .build()
            .map_err(|e| Error::Hive(format!("starting the client runtime for {uri}: {e}")))?;
        let client = {
            let _guard = rt.enter();
            ThriftHiveMetastoreClientBuilder::new("hive-metastore")
                .address(addr)
                .make_codec(volo_thrift::codec::default::DefaultMakeCodec::buffered())
                .connect_timeout(Some(CONNECT_TIMEOUT))
                .rpc_timeout(Some(RPC_TIMEOUT))
                .build()
        };
        let hive = Hive {
            uri: uri.to_string(),
            client,
            rt,
        };
        match hive.rt.block_on(hive.client.get_all_databases()) {
            Ok(_) => Ok(hive),
            Err(e) => Err(Error::Hive(format!(
                "cannot reach the metastore at {uri} ({e}); start it (locally: bash \
                 deploy/local/hadoop.sh start), fix [hive] uri, or set [hive] enabled = \
                 false to run the sink without one"
            ))),
        }
    }

    fn failed(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::Hive(format!("{what} at {}: {e}", self.uri))
    }

    /// Creates the database and the EXTERNAL table if missing; an existing table gains the
    /// columns it lacks (and the new Avro schema literal).
    pub fn ensure_table(&self, t: &HiveTable) -> Result<()> {
        self.ensure_database(&t.db)?;
        let existing = self.get_table(&t.db, &t.name)?;
        let Some(existing) = existing else {
            let what = format!("creating table {}.{}", t.db, t.name);
            return match self.rt.block_on(self.client.create_table(new_table(t))) {
                Ok(MaybeException::Ok(())) => Ok(()),
                // Created by someone else meanwhile: make sure it has the columns.
                Ok(MaybeException::Exception(ThriftHiveMetastoreCreateTableException::O1(_))) => {
                    match self.get_table(&t.db, &t.name)? {
                        Some(existing) => self.evolve(t, existing),
                        None => Err(self.failed(&what, "it exists and does not")),
                    }
                }
                Ok(MaybeException::Exception(e)) => Err(self.failed(&what, format!("{e:?}"))),
                Err(e) => Err(self.failed(&what, e)),
            };
        };
        self.evolve(t, existing)
    }

    /// Appends the columns of `t` that `existing` lacks, and sets the Avro schema literal.
    fn evolve(&self, t: &HiveTable, mut existing: Table) -> Result<()> {
        let what = format!("altering table {}.{}", t.db, t.name);
        let mut sd = existing.sd.take().unwrap_or_default();
        let mut cols = sd.cols.take().unwrap_or_default();
        let known: Vec<String> = cols.iter().map(|f| text(&f.name).to_lowercase()).collect();
        let mut changed = false;
        for c in &t.columns {
            match known.iter().position(|k| *k == c.name.to_lowercase()) {
                Some(i) => {
                    let ty = text(&cols[i].r#type);
                    if !ty.eq_ignore_ascii_case(&c.ty) {
                        tracing::warn!(
                            table = %format!("{}.{}", t.db, t.name),
                            column = %c.name,
                            "the metastore declares {ty}, binlake writes {}; the column is left as it is",
                            c.ty
                        );
                    }
                }
                None => {
                    cols.extend(fields(std::slice::from_ref(c)));
                    changed = true;
                }
            }
        }
        sd.cols = Some(cols);
        existing.sd = Some(sd);
        if let HiveFormat::Avro { schema_literal } = &t.format {
            let params = existing.parameters.get_or_insert_with(Default::default);
            let current = params.get(AVRO_LITERAL).map(|v| v.to_string());
            if current.as_deref() != Some(schema_literal.as_str()) {
                params.insert(AVRO_LITERAL.into(), schema_literal.clone().into());
                changed = true;
            }
        }
        if !changed {
            return Ok(());
        }
        match self.rt.block_on(self.client.alter_table(
            t.db.clone().into(),
            t.name.clone().into(),
            existing,
        )) {
            Ok(MaybeException::Ok(())) => Ok(()),
            Ok(MaybeException::Exception(e)) => Err(self.failed(&what, format!("{e:?}"))),
            Err(e) => Err(self.failed(&what, e)),
        }
    }

    fn ensure_database(&self, db: &str) -> Result<()> {
        let what = format!("looking up database {db}");
        match self
            .rt
            .block_on(self.client.get_database(db.to_string().into()))
        {
            Ok(MaybeException::Ok(_)) => return Ok(()),
            Ok(MaybeException::Exception(ThriftHiveMetastoreGetDatabaseException::O1(_))) => {}
            Ok(MaybeException::Exception(e)) => return Err(self.failed(&what, format!("{e:?}"))),
            Err(e) => return Err(self.failed(&what, e)),
        }
        let database = Database {
            name: Some(db.to_string().into()),
            description: Some("created by binlake".into()),
            parameters: Some(Default::default()),
            ..Default::default()
        };
        let what = format!("creating database {db}");
        match self.rt.block_on(self.client.create_database(database)) {
            Ok(MaybeException::Ok(())) => Ok(()),
            Ok(MaybeException::Exception(ThriftHiveMetastoreCreateDatabaseException::O1(_))) => {
                Ok(())
            }
            Ok(MaybeException::Exception(e)) => Err(self.failed(&what, format!("{e:?}"))),
            Err(e) => Err(self.failed(&what, e)),
        }
    }

    fn get_table(&self, db: &str, name: &str) -> Result<Option<Table>> {
        let what = format!("looking up table {db}.{name}");
        match self.rt.block_on(
            self.client
                .get_table(db.to_string().into(), name.to_string().into()),
        ) {
            Ok(MaybeException::Ok(t)) => Ok(Some(t)),
            Ok(MaybeException::Exception(ThriftHiveMetastoreGetTableException::O2(_))) => Ok(None),
            Ok(MaybeException::Exception(e)) => Err(self.failed(&what, format!("{e:?}"))),
            Err(e) => Err(self.failed(&what, e)),
        }
    }

    /// The table as the metastore declares it; None when it does not exist.
    pub fn table(&self, db: &str, name: &str) -> Result<Option<HiveTable>> {
        let Some(t) = self.get_table(db, name)? else {
            return Ok(None);
        };
        let sd = t.sd.clone().unwrap_or_default();
        let serde = sd
            .serde_info
            .as_ref()
            .map(|s| text(&s.serialization_lib))
            .unwrap_or_default();
        let format = if serde == PARQUET_SERDE {
            HiveFormat::Parquet
        } else if serde == AVRO_SERDE {
            let literal = t
                .parameters
                .as_ref()
                .and_then(|p| p.get(AVRO_LITERAL))
                .map(|v| v.to_string())
                .unwrap_or_default();
            HiveFormat::Avro {
                schema_literal: literal,
            }
        } else {
            return Err(Error::Hive(format!(
                "{db}.{name} at {}: stored with SerDe {serde:?}, not Parquet or Avro",
                self.uri
            )));
        };
        Ok(Some(HiveTable {
            db: text(&t.db_name),
            name: text(&t.table_name),
            location: text(&sd.location),
            columns: columns(&sd.cols),
            partition_keys: columns(&t.partition_keys),
            format,
        }))
    }

    /// Drops the table from the metastore (its files stay: the table is EXTERNAL and the
    /// data is not deleted); no error when it does not exist.
    pub fn drop_table(&self, db: &str, name: &str) -> Result<()> {
        let what = format!("dropping table {db}.{name}");
        match self.rt.block_on(self.client.drop_table(
            db.to_string().into(),
            name.to_string().into(),
            false,
        )) {
            Ok(MaybeException::Ok(())) => Ok(()),
            Ok(MaybeException::Exception(ThriftHiveMetastoreDropTableException::O1(_))) => Ok(()),
            Ok(MaybeException::Exception(e)) => Err(self.failed(&what, format!("{e:?}"))),
            Err(e) => Err(self.failed(&what, e)),
        }
    }

    /// Registers a partition (values in partition-key order) at `location`; no error if it
    /// is already registered.
    pub fn add_partition(
        &self,
        db: &str,
        table: &str,
        values: &[String],
        location: &str,
    ) -> Result<()> {
        let what = format!("adding partition {values:?} to {db}.{table}");
        let t = self
            .get_table(db, table)?
            .ok_or_else(|| self.failed(&what, "the table does not exist"))?;
        let keys = t.partition_keys.as_ref().map_or(0, Vec::len);
        if keys != values.len() {
            return Err(self.failed(
                &what,
                format!("the table has {keys} partition keys, not {}", values.len()),
            ));
        }
        let mut sd = t.sd.unwrap_or_default();
        sd.location = Some(location.to_string().into());
        let now = now_secs();
        let partition = Partition {
            values: Some(values.iter().map(|v| v.clone().into()).collect()),
            db_name: Some(db.to_string().into()),
            table_name: Some(table.to_string().into()),
            create_time: Some(now),
            last_access_time: Some(0),
            sd: Some(sd),
            parameters: Some(Default::default()),
            ..Default::default()
        };
        match self.rt.block_on(self.client.add_partition(partition)) {
            Ok(MaybeException::Ok(_)) => Ok(()),
            Ok(MaybeException::Exception(ThriftHiveMetastoreAddPartitionException::O2(_))) => {
                Ok(())
            }
            Ok(MaybeException::Exception(e)) => Err(self.failed(&what, format!("{e:?}"))),
            Err(e) => Err(self.failed(&what, e)),
        }
    }

    /// Drops a partition (values in partition-key order) from the metastore, not its files
    /// (the table is EXTERNAL); no error when it is not registered.
    pub fn drop_partition(&self, db: &str, table: &str, values: &[String]) -> Result<()> {
        let what = format!("dropping partition {values:?} of {db}.{table}");
        match self.rt.block_on(self.client.drop_partition(
            db.to_string().into(),
            table.to_string().into(),
            values.iter().map(|v| v.clone().into()).collect(),
            false,
        )) {
            Ok(MaybeException::Ok(_)) => Ok(()),
            Ok(MaybeException::Exception(ThriftHiveMetastoreDropPartitionException::O1(_))) => {
                Ok(())
            }
            Ok(MaybeException::Exception(e)) => Err(self.failed(&what, format!("{e:?}"))),
            Err(e) => Err(self.failed(&what, e)),
        }
    }

    /// `key=value/key2=value2` names of the table's partitions.
    pub fn partition_names(&self, db: &str, table: &str) -> Result<Vec<String>> {
        let what = format!("listing the partitions of {db}.{table}");
        match self.rt.block_on(self.client.get_partition_names(
            db.to_string().into(),
            table.to_string().into(),
            -1,
        )) {
            Ok(MaybeException::Ok(names)) => Ok(names.iter().map(|n| n.to_string()).collect()),
            Ok(MaybeException::Exception(e)) => Err(self.failed(&what, format!("{e:?}"))),
            Err(e) => Err(self.failed(&what, e)),
        }
    }
}

/// The metastore's description of a new EXTERNAL table.
fn new_table(t: &HiveTable) -> Table {
    let (serde, input, output) = match t.format {
        HiveFormat::Parquet => (PARQUET_SERDE, PARQUET_INPUT, PARQUET_OUTPUT),
        HiveFormat::Avro { .. } => (AVRO_SERDE, AVRO_INPUT, AVRO_OUTPUT),
    };
    let mut params: Vec<(String, String)> = vec![("EXTERNAL".into(), "TRUE".into())];
    if let HiveFormat::Avro { schema_literal } = &t.format {
        params.push((AVRO_LITERAL.into(), schema_literal.clone()));
    }
    let sd = StorageDescriptor {
        cols: Some(fields(&t.columns)),
        location: Some(t.location.clone().into()),
        input_format: Some(input.into()),
        output_format: Some(output.into()),
        compressed: Some(false),
        num_buckets: Some(-1),
        serde_info: Some(SerDeInfo {
            name: Some(t.name.clone().into()),
            serialization_lib: Some(serde.into()),
            parameters: Some(
                [("serialization.format".into(), "1".into())]
                    .into_iter()
                    .collect(),
            ),
        }),
        bucket_cols: Some(Vec::new()),
        sort_cols: Some(Vec::new()),
        parameters: Some(Default::default()),
        stored_as_sub_directories: Some(false),
        ..Default::default()
    };
    let now = now_secs();
    Table {
        table_name: Some(t.name.clone().into()),
        db_name: Some(t.db.clone().into()),
        owner: Some("binlake".into()),
        create_time: Some(now),
        last_access_time: Some(0),
        retention: Some(0),
        sd: Some(sd),
        partition_keys: Some(fields(&t.partition_keys)),
        parameters: Some(
            params
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        ),
        table_type: Some("EXTERNAL_TABLE".into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_can_move_to_the_sink_thread() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Hive>();
    }

    #[test]
    fn metastore_uris_need_thrift_host_and_port() {
        assert_eq!(
            parse_uri("thrift://127.0.0.1:9083").expect("uri"),
            "127.0.0.1:9083".parse::<SocketAddr>().expect("addr")
        );
        let e = parse_uri("http://127.0.0.1:9083").expect_err("scheme");
        assert!(e.to_string().contains("[hive] enabled = false"), "{e}");
        assert!(parse_uri("thrift://127.0.0.1").is_err());
    }

    #[test]
    fn new_tables_are_external_with_the_format_s_serde() {
        let t = HiveTable {
            db: "app".into(),
            name: "t".into(),
            location: "file:///lake/app/t".into(),
            columns: vec![HiveColumn {
                name: "id".into(),
                ty: "bigint".into(),
                comment: String::new(),
            }],
            partition_keys: vec![],
            format: HiveFormat::Avro {
                schema_literal: "{}".into(),
            },
        };
        let table = new_table(&t);
        assert_eq!(text(&table.table_type), "EXTERNAL_TABLE");
        let params = table.parameters.expect("params");
        assert_eq!(
            params.get("EXTERNAL").map(|v| v.to_string()).as_deref(),
            Some("TRUE")
        );
        assert_eq!(
            params.get(AVRO_LITERAL).map(|v| v.to_string()).as_deref(),
            Some("{}")
        );
        let sd = table.sd.expect("sd");
        assert_eq!(text(&sd.input_format), AVRO_INPUT);
        assert_eq!(columns(&sd.cols), t.columns);
    }
}
