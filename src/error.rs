//! The library's error type. Every variant says what went wrong, where (binlog file and
//! offset when there is one), and, where binlake knows it, how to fix it.

use crate::config::ConfigError;
use crate::mysql::types::DecodeError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Not a `#[source]`: the message already holds it (once in `{:#}` chains).
    #[error("{file} at offset {offset}: {detail}")]
    Decode {
        file: String,
        offset: u64,
        detail: DecodeError,
    },
    #[error(
        "{file} at offset {offset}: checksum mismatch (event says {expected:#010x}, bytes give \
         {actual:#010x}); the binlog is corrupt or was modified"
    )]
    Checksum {
        file: String,
        offset: u64,
        expected: u32,
        actual: u32,
    },
    #[error("{file} at offset {offset}: {detail}")]
    Corrupt {
        file: String,
        offset: u64,
        detail: String,
    },
    // `cause`, not `source`: the message already includes it, and a report that walks the
    // error chain would print it twice.
    #[error("{context}: {cause}")]
    Io {
        context: String,
        cause: std::io::Error,
    },
    #[error("{context}: {cause}")]
    Mysql {
        context: String,
        cause: mysql_async::Error,
    },
    /// TLS to the MySQL server cannot work as configured (certificate, host name, TLS
    /// required or not offered); `problem` names the setting to change. Not retried.
    #[error("{context}: {problem}")]
    MysqlTls { context: String, problem: String },
    #[error("{context}: {cause}")]
    Kafka {
        context: String,
        cause: rdkafka::error::KafkaError,
    },
    /// The broker refused binlake's credentials or TLS handshake; retrying cannot cure it.
    /// The message names the problem and the `[kafka.properties]` keys that fix it.
    #[error("{0}")]
    KafkaAccess(String),
    /// A record Kafka did not accept in time; nothing after it was committed.
    #[error("{0} (the position was not committed past it; binlake resumes before it)")]
    Delivery(String),
    /// A record larger than the producer may send; `run` adds the change's table and position.
    #[error(
        "a record of {bytes} bytes for {topic} is larger than Kafka accepts ({limit}). Fix: \
         raise the limit (the producer's message.max.bytes in [kafka.properties] and the \
         topic's max.message.bytes), or leave the large column out ([capture] \
         exclude_columns); then restart"
    )]
    TooLarge {
        topic: String,
        bytes: usize,
        limit: String,
    },
    /// The schema registry refused or could not be reached.
    #[error("schema registry: {0}")]
    Registry(String),
    #[error(transparent)]
    Encode(#[from] crate::avro::EncodeError),
    /// The lake's file system (file:// or hdfs://) failed an operation.
    #[error("{context}: {detail}")]
    Storage { context: String, detail: String },
    /// The Hive metastore refused a request or could not be reached.
    #[error("hive metastore: {0}")]
    Hive(String),
    #[error("{0}")]
    Unsupported(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of the connection to MySQL (lost, refused, too many connections, server
    /// shutting down), not of the data: a reconnect may cure it.
    pub fn is_mysql_connection(&self) -> bool {
        match self {
            Error::Mysql { cause, .. } => {
                matches!(
                    cause,
                    mysql_async::Error::Io(_) | mysql_async::Error::Driver(_)
                ) || matches!(cause, mysql_async::Error::Server(s) if matches!(s.code, 1040 | 1053 | 1927 | 2013))
            }
            Error::Io { .. } => true,
            _ => false,
        }
    }

    pub fn kafka(context: impl Into<String>) -> impl FnOnce(rdkafka::error::KafkaError) -> Error {
        let context = context.into();
        move |cause| Error::Kafka { context, cause }
    }

    /// A lake error only the operator can cure (a full disk or quota, too many open files,
    /// as [`Error::storage`] explains them): starting over would not help.
    pub fn needs_operator(&self) -> bool {
        matches!(self, Error::Storage { detail, .. }
            if ["os error 28", "QuotaExceeded", "os error 24"].iter().any(|m| detail.contains(m)))
    }

    pub fn storage<E: std::fmt::Display>(context: impl Into<String>) -> impl FnOnce(E) -> Error {
        let context = context.into();
        move |e| {
            let mut detail = e.to_string();
            // A full disk (or an HDFS quota) is the operator's to fix; say so and what follows.
            if detail.contains("os error 28") || detail.contains("QuotaExceeded") {
                detail.push_str(
                    "; the lake's file system is full: free space (or raise the quota), then \
                     start the sink again. It resumes after the last committed window; the \
                     unfinished one is rewritten, never left visible half-written",
                );
            }
            if detail.contains("os error 24") {
                detail.push_str(
                    "; the process may not open more files: lower [sink] max_open_files (the \
                     files the sink keeps open at once) or raise its limit (ulimit -n, systemd \
                     LimitNOFILE)",
                );
            }
            Error::Storage { context, detail }
        }
    }

    pub fn mysql(context: impl Into<String>) -> impl FnOnce(mysql_async::Error) -> Error {
        let context = context.into();
        move |cause| Error::Mysql { context, cause }
    }
}
