use std::fmt;

use zeroize::Zeroizing;

/// A PEM private key. Never printed: `Debug` and `Display` show a placeholder, and the memory is
/// wiped on drop.
#[derive(Clone)]
pub struct SecretPem(Zeroizing<String>);

impl SecretPem {
    pub fn new(pem: String) -> Self {
        Self(Zeroizing::new(pem))
    }

    /// The PEM text, for writing to a 0600 file or handing to a signer. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretPem(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_key() {
        let secret = SecretPem::new("-----BEGIN PRIVATE KEY-----\nMIGHAgEA\n".into());
        let shown = format!("{secret:?} {:?}", Some(&secret));
        assert!(!shown.contains("MIGHAgEA"), "{shown}");
        assert!(shown.contains("redacted"));
    }
}
