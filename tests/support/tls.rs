//! Throw-away certificates for TLS tests, made with the `openssl` CLI: a CA, and server
//! certificates it signs for chosen subjectAltNames.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA: its certificate (`ca.pem`) and key, in `dir`.
pub struct Ca {
    pub cert: PathBuf,
    key: PathBuf,
    dir: PathBuf,
}

/// A server certificate signed by a [`Ca`] and its (unencrypted PEM) key.
pub struct ServerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

impl Ca {
    /// A new CA named `name` (files `{name}.pem`, `{name}.key` in `dir`).
    pub fn new(dir: &Path, name: &str) -> Ca {
        std::fs::create_dir_all(dir).expect("cert dir");
        let (cert, key) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            s(&key),
            "-out",
            s(&cert),
            "-days",
            "2",
            "-subj",
            &format!("/CN=binlake test {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        Ca {
            cert,
            key,
            dir: dir.to_path_buf(),
        }
    }

    /// A server certificate `{name}.pem`/`{name}.key` for `san` (e.g.
    /// `"IP:127.0.0.1,DNS:localhost"`), signed by this CA.
    pub fn server(&self, name: &str, san: &str) -> ServerCert {
        let (cert, key, csr, ext) = (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
            self.dir.join(format!("{name}.csr")),
            self.dir.join(format!("{name}.ext")),
        );
        std::fs::write(
            &ext,
            format!(
                "subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
            ),
        )
        .expect("write ext");
        // -traditional is not needed: rustls and MariaDB both read PKCS#8 keys.
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            s(&key),
            "-out",
            s(&csr),
            "-subj",
            &format!("/CN=binlake test {name}"),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            s(&csr),
            "-CA",
            s(&self.cert),
            "-CAkey",
            s(&self.key),
            "-CAcreateserial",
            "-out",
            s(&cert),
            "-days",
            "2",
            "-extfile",
            s(&ext),
        ]);
        ServerCert { cert, key }
    }
}

/// A directory of certificates, removed on drop.
pub struct CertDir(pub PathBuf);

impl CertDir {
    pub fn new() -> CertDir {
        CertDir(super::mariadb::unique_dir())
    }
}

impl Drop for CertDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
