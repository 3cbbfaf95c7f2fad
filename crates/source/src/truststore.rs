//! The system trust store: the CA bundle file and OpenSSL's hashed certificate directory.

use std::env;
use std::path::PathBuf;

/// CA bundle files in the order distributions use them (Debian/Ubuntu, RHEL/Fedora, SUSE,
/// RHEL's extracted store, Alpine/BSD).
const BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

const DIRS: &[&str] = &["/etc/ssl/certs", "/etc/pki/tls/certs"];

#[derive(Clone, Debug, Default)]
pub struct TrustStore {
    pub bundle: Option<PathBuf>,
    pub dir: Option<PathBuf>,
}

impl TrustStore {
    /// Finds the host's trust store, honouring OpenSSL's `SSL_CERT_FILE` and `SSL_CERT_DIR`.
    pub fn locate() -> Self {
        let bundle = env::var_os("SSL_CERT_FILE")
            .map(PathBuf::from)
            .or_else(|| BUNDLES.iter().map(PathBuf::from).find(|p| p.is_file()));
        let dir = env::var_os("SSL_CERT_DIR")
            .map(PathBuf::from)
            .or_else(|| DIRS.iter().map(PathBuf::from).find(|p| p.is_dir()));
        Self { bundle, dir }
    }
}

/// Directories where certificates usually live on servers, scanned by a bare `certvigil scan`
/// when they exist.
pub const STANDARD_LOCATIONS: &[&str] = &[
    "/etc/ssl",
    "/etc/pki",
    "/etc/kubernetes",
    "/etc/etcd",
    "/etc/letsencrypt/live",
    "/var/lib/kubelet/pki",
    "/etc/docker/certs.d",
    "/etc/containerd/certs.d",
    "/usr/local/share/ca-certificates",
    "/etc/nginx",
    "/etc/apache2",
    "/etc/httpd",
    "/etc/haproxy",
    "/etc/postfix",
    "/etc/dovecot",
    "/etc/ipsec.d",
    "/etc/openvpn",
    "/etc/grafana",
    "/etc/prometheus",
];
