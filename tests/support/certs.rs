//! Test certificates made with the openssl command line (through [`super::tls`]): a CA of its
//! own per call and a server certificate it signed for the given subject alternative names.
//! Nothing is shared between calls: two calls give two CAs that do not trust each other's
//! certificates.

use std::path::{Path, PathBuf};

use super::tls::Ca;

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
    let ca = Ca::new(dir, "ca");
    let server = ca.server("server", sans);
    Certs {
        ca: ca.cert,
        cert: server.cert,
        key: server.key,
    }
}
