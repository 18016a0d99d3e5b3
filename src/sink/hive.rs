//! The Hive metastore side of the sink (Thrift, crate hive_metastore). (Being written.)

use crate::error::{Error, Result};

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

pub struct Hive {}

impl Hive {
    /// `uri`: `thrift://host:port`.
    pub fn connect(uri: &str) -> Result<Hive> {
        Err(Error::Hive(format!("{uri}: not built yet")))
    }

    /// Creates the database and the EXTERNAL table if missing; an existing table gains the
    /// columns it lacks (and the new Avro schema literal).
    pub fn ensure_table(&self, _t: &HiveTable) -> Result<()> {
        Err(Error::Hive("not built yet".into()))
    }

    /// Registers a partition (values in partition-key order) at `location`; no error if it
    /// is already registered.
    pub fn add_partition(
        &self,
        _db: &str,
        _table: &str,
        _values: &[String],
        _location: &str,
    ) -> Result<()> {
        Err(Error::Hive("not built yet".into()))
    }

    /// `key=value/key2=value2` names of the table's partitions.
    pub fn partition_names(&self, _db: &str, _table: &str) -> Result<Vec<String>> {
        Err(Error::Hive("not built yet".into()))
    }
}
