//! Everything that talks to, or reads the files of, a MySQL-family server.

pub mod binlog_file;
pub mod charset;
pub mod check;
pub mod decoder;
pub mod json;
pub mod merge;
pub mod replication;
pub mod rows;
pub mod select;
pub mod server;
pub mod snapshot;
pub mod types;
