//! `hdfs://namenode:port/path` storage through the hdfs-native crate. (Being written.)

use super::storage::{Entry, FileSink, Storage};
use crate::error::{Error, Result};

pub struct HdfsStorage {
    url: String,
}

impl HdfsStorage {
    pub fn connect(url: &str) -> Result<HdfsStorage> {
        Err(Error::Unsupported(format!(
            "{url}: hdfs:// storage is not built yet"
        )))
    }
}

impl Storage for HdfsStorage {
    fn root_url(&self) -> String {
        self.url.clone()
    }
    fn create(&self, _path: &str) -> Result<Box<dyn FileSink>> {
        Err(Error::Unsupported("hdfs".into()))
    }
    fn rename(&self, _from: &str, _to: &str) -> Result<()> {
        Err(Error::Unsupported("hdfs".into()))
    }
    fn list(&self, _dir: &str) -> Result<Vec<Entry>> {
        Err(Error::Unsupported("hdfs".into()))
    }
    fn list_dirs(&self, _dir: &str) -> Result<Vec<String>> {
        Err(Error::Unsupported("hdfs".into()))
    }
    fn delete(&self, _path: &str) -> Result<()> {
        Err(Error::Unsupported("hdfs".into()))
    }
    fn read_range(&self, _path: &str, _offset: u64, _len: u64) -> Result<Vec<u8>> {
        Err(Error::Unsupported("hdfs".into()))
    }
    fn exists(&self, _path: &str) -> Result<bool> {
        Err(Error::Unsupported("hdfs".into()))
    }
}
