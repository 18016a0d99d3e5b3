//! Test certificates made with the openssl command line: a CA of its own per call and a server
//! certificate it signed for the given subject alternative names. Nothing is shared between
//! calls: two calls give two CAs that do not trust each other's certificates.

use std::path::{Path, PathBuf};

/// The files of one [`make_certs_for`] call, all PEM.
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA and a certificate it signed for 127.0.0.1, in `dir`: (ca, cert, key).
pub fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let c = make_certs_for(dir, "IP:127.0.0.1");
    (c.ca, c.cert, c.key)
}

/// A CA and a certificate it signed whose subjectAltName is `sans` (openssl syntax, e.g.
/// `IP:127.0.0.1,DNS:localhost`), in `dir` (created if missing; files named ca.pem,
/// server.pem, server.key, overwritten).
pub fn make_certs_for(dir: &Path, sans: &str) -> Certs {
    std::fs::create_dir_all(dir).expect("certs dir");
    let (ca_key, ca, key, csr, cert) = (
        dir.join("ca.key"),
        dir.join("ca.pem"),
        dir.join("server.key"),
        dir.join("server.csr"),
        dir.join("server.pem"),
    );
    let ext = dir.join("san.ext");
    std::fs::write(
        &ext,
        format!("subjectAltName={sans}\nbasicConstraints=CA:FALSE\n"),
    )
    .expect("ext");
    let p = |p: &Path| p.to_str().expect("path").to_string();
    for args in [
        vec![
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &p(&ca_key),
            "-out",
            &p(&ca),
            "-days",
            "2",
            "-subj",
            "/CN=binlake test CA",
        ],
        vec![
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &p(&key),
            "-out",
            &p(&csr),
            "-subj",
            "/CN=binlake test server",
        ],
        vec![
            "x509",
            "-req",
            "-in",
            &p(&csr),
            "-CA",
            &p(&ca),
            "-CAkey",
            &p(&ca_key),
            "-CAcreateserial",
            "-out",
            &p(&cert),
            "-days",
            "2",
            "-extfile",
            &p(&ext),
        ],
    ] {
        let out = std::process::Command::new("openssl")
            .args(&args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Certs { ca, cert, key }
}
