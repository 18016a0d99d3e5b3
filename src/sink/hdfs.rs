//! `hdfs://namenode:port/root` storage through the hdfs-native crate (native RPC to the
//! NameNode and DataNodes; no JVM, no libhdfs).
//!
//! Owns: mapping the [`Storage`] trait onto HDFS. Paths are relative to the URL's path (the
//! root), `/`-separated. The trait's invariants hold as HDFS provides them: `rename` is the
//! NameNode's atomic rename without OVERWRITE, so it never replaces an existing file (it
//! fails); a file is complete and visible with its full length only after
//! [`FileSink::finish`] (hsync, then close) returned.
//!
//! The sink calls storage from a blocking thread, so [`HdfsStorage`] owns a small tokio
//! runtime (one worker) and blocks on the client's async calls. Call it from a plain thread
//! or `spawn_blocking`, never from an async task (blocking there panics).

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use hdfs_native::{Client, ClientBuilder, HdfsError, WriteOptions};
use tokio::runtime::Runtime;

use super::storage::{Entry, FileSink, Storage};
use crate::error::{Error, Result};

/// How long `connect` waits for the NameNode's answer before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `connect` waits for the NameNode's port to accept a connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes a [`FileSink`] collects before handing them to the client (one copy, no more).
const WRITE_CHUNK: usize = 1 << 20;

pub struct HdfsStorage {
    /// `hdfs://authority/root` without a trailing slash, as given (normalized).
    url: String,
    /// Absolute root path on the file system: `/lake`, or `` for `/`.
    root: String,
    client: Client,
    /// Shared with the open files, so that the runtime outlives them.
    rt: Arc<Runtime>,
}

/// Splits `hdfs://authority/path` into (`hdfs://authority`, `/path` without a trailing
/// slash, `` for the root).
fn parse_url(url: &str) -> Result<(String, String)> {
    let bad = |why: &str| {
        Error::Unsupported(format!(
            "[sink] root = \"{url}\": {why} (expected hdfs://namenode:port/path)"
        ))
    };
    let rest = url
        .strip_prefix("hdfs://")
        .ok_or_else(|| bad("not an hdfs:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(bad("the NameNode host is missing"));
    }
    if path.contains("//") || path.split('/').any(|c| c == "." || c == "..") {
        return Err(bad("the path must be a plain absolute path"));
    }
    Ok((
        format!("hdfs://{authority}"),
        path.trim_end_matches('/').to_string(),
    ))
}

/// A TCP connection to `hdfs://host:port` (when the URL names a port; a logical name
/// service is left to the client).
fn probe(fs: &str) -> std::result::Result<(), String> {
    let authority = fs.trim_start_matches("hdfs://");
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
    if !has_port {
        return Ok(());
    }
    let addrs = authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?;
    let mut last = format!("{authority} resolves to no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}

fn not_found(e: &HdfsError) -> bool {
    match e {
        HdfsError::FileNotFound(_) => true,
        HdfsError::RPCError(class, _) => class.ends_with("FileNotFoundException"),
        _ => false,
    }
}

impl HdfsStorage {
    /// Connects to the NameNode of `url` (`hdfs://host:port/root`) and creates the root
    /// directory if missing. Fails with one error naming the URL when the NameNode cannot be
    /// reached.
    pub fn connect(url: &str) -> Result<HdfsStorage> {
        let (fs, root) = parse_url(url)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("binlake-hdfs")
            .enable_all()
            .build()
            .map_err(Error::storage(format!(
                "starting the HDFS client runtime for {url}"
            )))?;
        let rt = Arc::new(rt);
        let client = ClientBuilder::new()
            .with_url(fs.clone())
            .with_io_runtime(rt.handle().clone())
            .build()
            .map_err(Error::storage(format!("[sink] root = \"{url}\"")))?;
        let storage = HdfsStorage {
            url: format!("{fs}{root}"),
            root,
            client,
            rt,
        };
        let dir = storage.full("");
        let unreachable = |detail: String| Error::Storage {
            context: format!("cannot reach the HDFS NameNode of {url}"),
            detail: format!(
                "{detail}; check that the NameNode runs and listens there (locally: bash \
                 deploy/local/hadoop.sh start), or fix [sink] root"
            ),
        };
        // The client retries a refused connection for minutes (HA failover); a NameNode that
        // is not there at start is a configuration problem, said at once.
        probe(&fs).map_err(unreachable)?;
        let made = storage.rt.block_on(async {
            tokio::time::timeout(CONNECT_TIMEOUT, storage.client.mkdirs(&dir, 0o755, true)).await
        });
        match made {
            Ok(Ok(())) => Ok(storage),
            Ok(Err(e @ HdfsError::IOError(_))) => Err(unreachable(e.to_string())),
            Ok(Err(e)) => Err(Error::Storage {
                context: format!("creating the lake root {}", storage.url),
                detail: e.to_string(),
            }),
            Err(_) => Err(unreachable(format!(
                "no answer within {} s",
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }

    /// The absolute HDFS path of `path` (relative to the root).
    fn full(&self, path: &str) -> String {
        let rel = path.trim_matches('/');
        match (self.root.is_empty(), rel.is_empty()) {
            (true, true) => "/".to_string(),
            (false, true) => self.root.clone(),
            _ => format!("{}/{rel}", self.root),
        }
    }

    /// `path` (absolute on HDFS) relative to the root; None when outside it.
    fn relative<'a>(&self, path: &'a str) -> Option<&'a str> {
        path.strip_prefix(self.root.as_str())?.strip_prefix('/')
    }

    fn show(&self, path: &str) -> String {
        format!("{}/{}", self.url, path.trim_matches('/'))
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

/// A file being written: collects up to [`WRITE_CHUNK`] bytes, then hands them to the
/// client's writer (which streams them to the DataNode pipeline).
///
/// At each block boundary the file is closed and reopened for append. HDFS refuses a new
/// block (`NotReplicatedYetException`) until the NameNode has heard that the previous one is
/// stored; Hadoop's Java client retries that, hdfs-native does not and loses its writer state
/// on the error. Closing waits for the NameNode (hdfs-native retries `complete`), so the
/// append after it always starts from a complete, consistent file; an append that fails is
/// simply tried again.
struct HdfsFile {
    writer: hdfs_native::file::FileWriter,
    client: Client,
    /// Absolute HDFS path.
    full: String,
    /// The file's block size; None when the NameNode did not say (no rolling then).
    block: Option<u64>,
    /// Bytes in the current (last) block.
    in_block: u64,
    buf: Vec<u8>,
    shown: String,
    rt: Arc<Runtime>,
}

/// Attempts to reopen a file for append after a block boundary, with doubling waits from
/// [`APPEND_FIRST_WAIT`] (about 25 s in all, as long as Hadoop's client waits for a block).
const APPEND_ATTEMPTS: u32 = 7;
const APPEND_FIRST_WAIT: Duration = Duration::from_millis(200);

impl HdfsFile {
    fn flush_buf(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(WRITE_CHUNK));
        let mut chunk = bytes::Bytes::from(chunk);
        while !chunk.is_empty() {
            if self.block.is_some_and(|b| self.in_block >= b) {
                self.next_block()?;
            }
            let room = self.block.map_or(u64::MAX, |b| b - self.in_block);
            let n = usize::try_from(room).unwrap_or(usize::MAX).min(chunk.len());
            let piece = chunk.split_to(n);
            self.rt
                .block_on(self.writer.write_bytes(piece))
                .map_err(Error::storage(format!("writing {}", self.shown)))?;
            self.in_block += n as u64;
        }
        Ok(())
    }

    /// Closes the file (its blocks complete) and reopens it for append at a new block.
    fn next_block(&mut self) -> Result<()> {
        let rt = Arc::clone(&self.rt);
        rt.block_on(self.writer.close())
            .map_err(Error::storage(format!(
                "closing a full block of {}",
                self.shown
            )))?;
        let mut wait = APPEND_FIRST_WAIT;
        let mut attempt = 1;
        loop {
            match rt.block_on(self.client.append(&self.full)) {
                Ok(w) => {
                    self.writer = w;
                    self.in_block = 0;
                    return Ok(());
                }
                Err(e) if attempt < APPEND_ATTEMPTS => {
                    tracing::debug!(file = %self.shown, error = %e, attempt, "reopening for the next block");
                    std::thread::sleep(wait);
                    wait *= 2;
                    attempt += 1;
                }
                Err(e) => {
                    return Err(Error::Storage {
                        context: format!("reopening {} for its next block", self.shown),
                        detail: format!("{e} (after {APPEND_ATTEMPTS} attempts)"),
                    })
                }
            }
        }
    }
}

impl FileSink for HdfsFile {
    fn write(&mut self, mut buf: &[u8]) -> Result<()> {
        while !buf.is_empty() {
            let room = WRITE_CHUNK - self.buf.len();
            let n = room.min(buf.len());
            self.buf.extend_from_slice(&buf[..n]);
            buf = &buf[n..];
            if self.buf.len() == WRITE_CHUNK {
                self.flush_buf()?;
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        self.flush_buf()?;
        let shown = std::mem::take(&mut self.shown);
        let in_block = self.in_block;
        let rt = Arc::clone(&self.rt);
        rt.block_on(async {
            if in_block > 0 {
                // The DataNodes persist the last block before the NameNode completes the file.
                self.writer.hsync().await?;
            }
            self.writer.close().await
        })
        .map_err(Error::storage(format!("closing {shown}")))
    }
}

impl Storage for HdfsStorage {
    fn root_url(&self) -> String {
        self.url.clone()
    }

    fn create(&self, path: &str) -> Result<Box<dyn FileSink>> {
        let full = self.full(path);
        let options = WriteOptions {
            overwrite: true,
            create_parent: true,
            ..WriteOptions::default()
        };
        let writer = self
            .block_on(self.client.create(&full, options))
            .map_err(Error::storage(format!("creating {}", self.show(path))))?;
        let block = self
            .block_on(self.client.get_file_info(&full))
            .map_err(Error::storage(format!(
                "reading the block size of {}",
                self.show(path)
            )))?
            .blocksize
            .filter(|b| *b > 0);
        Ok(Box::new(HdfsFile {
            writer,
            client: self.client.clone(),
            full,
            block,
            in_block: 0,
            buf: Vec::with_capacity(WRITE_CHUNK),
            shown: self.show(path),
            rt: Arc::clone(&self.rt),
        }))
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (src, dst) = (self.full(from), self.full(to));
        let ctx = || format!("renaming {} to {}", self.show(from), self.show(to));
        if self.exists(to)? {
            return Err(Error::Storage {
                context: ctx(),
                detail: "the destination exists".into(),
            });
        }
        if let Some((parent, _)) = dst.rsplit_once('/') {
            if !parent.is_empty() {
                self.block_on(self.client.mkdirs(parent, 0o755, true))
                    .map_err(Error::storage(ctx()))?;
            }
        }
        // Without OVERWRITE the NameNode refuses an existing destination, atomically.
        self.block_on(self.client.rename(&src, &dst, false))
            .map_err(Error::storage(ctx()))
    }

    fn list(&self, dir: &str) -> Result<Vec<Entry>> {
        let full = self.full(dir);
        let statuses = match self.block_on(self.client.list_status(&full, true)) {
            Ok(s) => s,
            Err(e) if not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(Error::storage(format!("listing {}", self.show(dir)))(e)),
        };
        let mut out: Vec<Entry> = statuses
            .into_iter()
            .filter(|s| !s.isdir)
            .filter_map(|s| {
                self.relative(&s.path).map(|rel| Entry {
                    path: rel.to_string(),
                    len: s.length as u64,
                })
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn list_dirs(&self, dir: &str) -> Result<Vec<String>> {
        let full = self.full(dir);
        let statuses = match self.block_on(self.client.list_status(&full, false)) {
            Ok(s) => s,
            Err(e) if not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(Error::storage(format!("listing {}", self.show(dir)))(e)),
        };
        let mut out: Vec<String> = statuses
            .into_iter()
            .filter(|s| s.isdir)
            .filter_map(|s| s.path.rsplit('/').next().map(str::to_string))
            .collect();
        out.sort();
        Ok(out)
    }

    fn delete(&self, path: &str) -> Result<()> {
        let full = self.full(path);
        match self.block_on(self.client.delete(&full, true)) {
            // false: it did not exist.
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(Error::storage(format!("deleting {}", self.show(path)))(e)),
        }
    }

    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let full = self.full(path);
        let ctx = || format!("reading {}", self.show(path));
        self.block_on(async {
            let reader = self.client.read(&full).await?;
            let size = reader.file_length() as u64;
            let n = len.min(size.saturating_sub(offset));
            let mut out = vec![0u8; n as usize];
            if n > 0 {
                reader.read_range_buf(&mut out, offset as usize).await?;
            }
            Ok::<_, HdfsError>(out)
        })
        .map_err(Error::storage(ctx()))
    }

    fn exists(&self, path: &str) -> Result<bool> {
        let full = self.full(path);
        match self.block_on(self.client.get_file_info(&full)) {
            Ok(_) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(Error::storage(format!("checking {}", self.show(path)))(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_namenode_and_root() {
        let p = |u: &str| parse_url(u).expect(u);
        assert_eq!(
            p("hdfs://127.0.0.1:9000/lake/"),
            ("hdfs://127.0.0.1:9000".into(), "/lake".into())
        );
        assert_eq!(p("hdfs://nn:9000"), ("hdfs://nn:9000".into(), "".into()));
        assert_eq!(p("hdfs://nn/"), ("hdfs://nn".into(), "".into()));
        assert_eq!(p("hdfs://nn:1/a/b"), ("hdfs://nn:1".into(), "/a/b".into()));
        assert!(parse_url("hdfs:///lake").is_err());
        assert!(parse_url("hdfs://nn/a/../b").is_err());
        assert!(parse_url("file:///lake").is_err());
    }
}
