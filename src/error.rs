//! The library's error type. Every variant says what went wrong, where (binlog file and
//! offset when there is one), and, where binlake knows it, how to fix it.

use crate::config::ConfigError;
use crate::mysql::types::DecodeError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{file} at offset {offset}: {source}")]
    Decode {
        file: String,
        offset: u64,
        source: DecodeError,
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
    #[error("{0}")]
    Unsupported(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn mysql(context: impl Into<String>) -> impl FnOnce(mysql_async::Error) -> Error {
        let context = context.into();
        move |cause| Error::Mysql { context, cause }
    }
}
