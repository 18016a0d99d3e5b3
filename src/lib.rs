//! binlake: MySQL/MariaDB change-data-capture. See ARCHITECTURE.md for the pipeline.

pub mod admin;
pub mod avro;
pub mod change;
pub mod config;
pub mod error;
pub mod kafka;
pub mod metrics;
pub mod mysql;
pub mod output;
pub mod position;
pub mod progress;
pub mod rebuild;
pub mod registry;
pub mod run;
pub mod schema;
pub mod sink;
pub mod state;
pub mod status;

pub use change::{Change, Op, Value};
pub use error::{Error, Result};
pub use position::{Position, StartFrom};
