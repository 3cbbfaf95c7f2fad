//! Remembered signature checks: "this exact certificate verifies under this exact key".
//!
//! A signature never changes its verdict, and checking one costs 20-60 µs against 6 µs for
//! parsing the certificate, so a host or daemon rescanning 100k certificates keeps the positive
//! verdicts. The key covers the certificate's whole DER (its fingerprint) and the issuer's whole
//! SubjectPublicKeyInfo; only successes are remembered, so a bad signature is re-checked, and
//! reported, on every scan.

use std::collections::HashSet;

use crate::cert::{Fingerprint, sha256};

const MAGIC: &[u8; 8] = b"CVLINK1\n";
const ENTRY: usize = 16;

/// Entries kept at most (16 bytes each): enough for a million certificates.
pub const MAX_ENTRIES: usize = 1 << 20;

#[derive(Debug, Default)]
pub struct LinkCache {
    known: HashSet<[u8; ENTRY]>,
}

impl LinkCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn key(child: &Fingerprint, issuer_spki: &Fingerprint) -> [u8; ENTRY] {
        let mut both = [0u8; 64];
        both[..32].copy_from_slice(child);
        both[32..].copy_from_slice(issuer_spki);
        let hash = sha256(&both);
        let mut key = [0u8; ENTRY];
        key.copy_from_slice(&hash[..ENTRY]);
        key
    }

    pub fn contains(&self, child: &Fingerprint, issuer_spki: &Fingerprint) -> bool {
        !self.known.is_empty() && self.known.contains(&Self::key(child, issuer_spki))
    }

    pub fn insert(&mut self, key: [u8; ENTRY]) -> bool {
        self.known.insert(key)
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// Reads a cache file's bytes; anything malformed yields an empty cache, never an error.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let Some(body) = bytes.strip_prefix(MAGIC.as_slice()) else {
            return Self::new();
        };
        if body.len() % ENTRY != 0 {
            return Self::new();
        }
        let known = body
            .chunks_exact(ENTRY)
            .take(MAX_ENTRIES)
            .map(|c| c.try_into().unwrap_or_default())
            .collect();
        Self { known }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAGIC.len() + self.known.len() * ENTRY);
        out.extend_from_slice(MAGIC);
        for key in self.known.iter().take(MAX_ENTRIES) {
            out.extend_from_slice(key);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let mut cache = LinkCache::new();
        cache.insert(LinkCache::key(&[1; 32], &[2; 32]));
        let back = LinkCache::from_bytes(&cache.to_bytes());
        assert!(back.contains(&[1; 32], &[2; 32]));
        assert!(!back.contains(&[2; 32], &[1; 32]));
        assert!(LinkCache::from_bytes(b"CVLINK1\nshort").is_empty());
        assert!(LinkCache::from_bytes(b"garbage").is_empty());
    }
}
