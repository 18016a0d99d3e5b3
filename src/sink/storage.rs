//! The lake's file system behind one small, synchronous trait: `file:///path` (the embedded
//! default) and `hdfs://namenode:port/path` (see `hdfs.rs`). The sink's loop runs on its own
//! thread, so blocking calls are the simple and honest shape; the HDFS client drives its
//! async calls on the process's runtime.
//!
//! Paths given to a [`Storage`] are relative to its root (the URL's path), `/`-separated.
//! Invariants the sink relies on: `rename` never replaces an existing file (it fails), a
//! rename is atomic, and a file written through [`FileSink`] is complete only after
//! `finish` returned.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};

/// One file found by [`Storage::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the storage root.
    pub path: String,
    pub len: u64,
}

/// A file being written.
pub trait FileSink: Send {
    fn write(&mut self, buf: &[u8]) -> Result<()>;
    /// Flushes and closes; the file is durable (fsync / HDFS close) when this returns.
    fn finish(self: Box<Self>) -> Result<()>;
}

pub trait Storage: Send + Sync {
    /// The root as a URL (`file:///lake`, `hdfs://127.0.0.1:9000/lake`), for table locations.
    fn root_url(&self) -> String;
    /// Creates `path` (replacing a file of that name), creating its parent directories.
    fn create(&self, path: &str) -> Result<Box<dyn FileSink>>;
    /// Moves a file or directory, creating `to`'s parent directories; fails if `to` exists.
    fn rename(&self, from: &str, to: &str) -> Result<()>;
    /// Every file under `dir`, recursively; empty when `dir` does not exist.
    fn list(&self, dir: &str) -> Result<Vec<Entry>>;
    /// Immediate subdirectories of `dir` (names only); empty when `dir` does not exist.
    fn list_dirs(&self, dir: &str) -> Result<Vec<String>>;
    /// Removes a file or a directory tree; no error when it does not exist.
    fn delete(&self, path: &str) -> Result<()>;
    /// `len` bytes at `offset` (fewer at the end of the file).
    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>>;
    fn exists(&self, path: &str) -> Result<bool>;
}

/// Opens the storage for a `file://` or `hdfs://` URL.
pub fn open(url: &str) -> Result<Arc<dyn Storage>> {
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(Error::Unsupported(format!(
                "[sink] root = \"{url}\": a file URL needs an absolute path (file:///data/lake)"
            )));
        }
        return Ok(Arc::new(LocalStorage::new(path)?));
    }
    if url.starts_with("hdfs://") {
        return Ok(Arc::new(super::hdfs::HdfsStorage::connect(url)?));
    }
    Err(Error::Unsupported(format!(
        "[sink] root = \"{url}\": use file:///path or hdfs://namenode:port/path"
    )))
}

/// `file://`: the local file system.
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    pub fn new(root: &str) -> Result<Self> {
        let root = PathBuf::from(root);
        std::fs::create_dir_all(&root).map_err(Error::storage(format!(
            "creating the lake root {}",
            root.display()
        )))?;
        Ok(LocalStorage { root })
    }

    fn full(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

struct LocalFile {
    file: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
}

impl FileSink for LocalFile {
    fn write(&mut self, buf: &[u8]) -> Result<()> {
        self.file
            .write_all(buf)
            .map_err(Error::storage(format!("writing {}", self.path.display())))
    }

    fn finish(self: Box<Self>) -> Result<()> {
        let path = self.path;
        let file = self
            .file
            .into_inner()
            .map_err(|e| Error::storage(format!("writing {}", path.display()))(e.error()))?;
        file.sync_all()
            .map_err(Error::storage(format!("syncing {}", path.display())))
    }
}

fn parent_dirs(p: &Path) -> Result<()> {
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)
            .map_err(Error::storage(format!("creating {}", parent.display())))?;
    }
    Ok(())
}

impl Storage for LocalStorage {
    fn root_url(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn create(&self, path: &str) -> Result<Box<dyn FileSink>> {
        let full = self.full(path);
        parent_dirs(&full)?;
        let file = std::fs::File::create(&full)
            .map_err(Error::storage(format!("creating {}", full.display())))?;
        Ok(Box::new(LocalFile {
            file: std::io::BufWriter::with_capacity(1 << 20, file),
            path: full,
        }))
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (from, to) = (self.full(from), self.full(to));
        parent_dirs(&to)?;
        let ctx = || format!("renaming {} to {}", from.display(), to.display());
        if to.exists() {
            return Err(Error::Storage {
                context: ctx(),
                detail: "the destination exists".into(),
            });
        }
        std::fs::rename(&from, &to).map_err(Error::storage(ctx()))?;
        // The rename is durable once the directories are synced.
        for dir in [to.parent(), from.parent()].into_iter().flatten() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    fn list(&self, dir: &str) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        let mut stack = vec![self.full(dir)];
        while let Some(d) = stack.pop() {
            let rd = match std::fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::storage(format!("listing {}", d.display()))(e)),
            };
            for e in rd {
                let e = e.map_err(Error::storage(format!("listing {}", d.display())))?;
                let meta = e
                    .metadata()
                    .map_err(Error::storage(format!("listing {}", d.display())))?;
                if meta.is_dir() {
                    stack.push(e.path());
                } else if let Ok(rel) = e.path().strip_prefix(&self.root) {
                    out.push(Entry {
                        path: rel.to_string_lossy().into_owned(),
                        len: meta.len(),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn list_dirs(&self, dir: &str) -> Result<Vec<String>> {
        let d = self.full(dir);
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::storage(format!("listing {}", d.display()))(e)),
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(Error::storage(format!("listing {}", d.display())))?;
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete(&self, path: &str) -> Result<()> {
        let full = self.full(path);
        let r = match std::fs::symlink_metadata(&full) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => Err(e),
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&full),
            Ok(_) => std::fs::remove_file(&full),
        };
        r.map_err(Error::storage(format!("deleting {}", full.display())))
    }

    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let full = self.full(path);
        let ctx = || format!("reading {}", full.display());
        let mut f = std::fs::File::open(&full).map_err(Error::storage(ctx()))?;
        f.seek(SeekFrom::Start(offset))
            .map_err(Error::storage(ctx()))?;
        let mut out = Vec::new();
        f.take(len)
            .read_to_end(&mut out)
            .map_err(Error::storage(ctx()))?;
        Ok(out)
    }

    fn exists(&self, path: &str) -> Result<bool> {
        Ok(self.full(path).exists())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_storage_does_what_the_trait_promises() {
        let dir = std::env::temp_dir().join(format!("binlake-storage-{}", std::process::id()));
        let s = LocalStorage::new(dir.to_str().expect("utf-8")).expect("root");
        let mut f = s.create("a/b/x.tmp").expect("create");
        f.write(b"hello world").expect("write");
        f.finish().expect("finish");
        s.rename("a/b/x.tmp", "a/c/x.bin").expect("rename");
        assert!(!s.exists("a/b/x.tmp").expect("exists"));
        let mut g = s.create("a/d.bin").expect("create");
        g.write(b"1").expect("write");
        g.finish().expect("finish");
        // Never replaces.
        assert!(s.rename("a/d.bin", "a/c/x.bin").is_err());
        let names: Vec<String> = s
            .list("a")
            .expect("list")
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(names, ["a/c/x.bin", "a/d.bin"]);
        assert_eq!(s.list_dirs("a").expect("dirs"), ["b", "c"]);
        assert_eq!(s.read_range("a/c/x.bin", 6, 100).expect("read"), b"world");
        assert!(s.list("missing").expect("list").is_empty());
        s.delete("a").expect("delete");
        s.delete("a").expect("delete twice");
        assert!(s.list("").expect("list").is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }
}
