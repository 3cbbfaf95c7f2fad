//! Does a certificate cover a host name? RFC 6125 rules as browsers apply them: SANs only (no
//! fallback to the common name), a wildcard only as the whole left-most label, IP addresses
//! only against IP SANs.

use std::net::IpAddr;

use crate::cert::{Certificate, SanRef};

pub fn covers(cert: &Certificate, host: &str) -> bool {
    let host = host.trim_end_matches('.');
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return cert
            .sans
            .iter()
            .any(|san| matches!(san, SanRef::Ip(s) if s == ip));
    }
    cert.dns_names().any(|pattern| dns_matches(pattern, host))
}

pub fn dns_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.');
    if let Some(suffix) = pattern.strip_prefix("*.") {
        // `*.example.com` needs at least two labels after the wildcard and covers one label.
        if !suffix.contains('.') {
            return false;
        }
        return match host.split_once('.') {
            Some((first, rest)) => !first.is_empty() && rest.eq_ignore_ascii_case(suffix),
            None => false,
        };
    }
    !pattern.contains('*') && pattern.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_exactly_one_label() {
        assert!(dns_matches("*.example.com", "www.example.com"));
        assert!(dns_matches("*.example.com", "WWW.Example.COM"));
        assert!(!dns_matches("*.example.com", "example.com"));
        assert!(!dns_matches("*.example.com", "a.b.example.com"));
        assert!(!dns_matches("*.com", "example.com"));
        assert!(!dns_matches("w*.example.com", "www.example.com"));
        assert!(dns_matches("example.com.", "example.com"));
    }
}
