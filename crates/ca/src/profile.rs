//! Role profiles: what a leaf is for decides its extended key usages, which names it needs and
//! how long it lives.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// The roles the internal CA issues for.
///
/// | profile | EKU | names |
/// |---|---|---|
/// | `etcd-server` | serverAuth, clientAuth | DNS and/or IP SANs required |
/// | `etcd-peer` | serverAuth, clientAuth | DNS and/or IP SANs required (peers dial IPs) |
/// | `etcd-client` | clientAuth | CN required (the etcd user name); SANs optional |
/// | `grpc-server` | serverAuth | SANs required |
/// | `grpc-client` | clientAuth | CN or SANs required |
/// | `tls-server` | serverAuth | SANs required |
///
/// `etcd-server` carries clientAuth too: etcd 3.4 reuses its serving certificate as the client
/// certificate of its gRPC gateway and when it dials peers, and a certificate without clientAuth
/// then fails those handshakes.
///
/// Certificates from every profile are meant to be renewed when 2/3 of their lifetime has passed
/// (the renewal planner decides; see docs/internal-ca.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Profile {
    EtcdServer,
    EtcdPeer,
    EtcdClient,
    GrpcServer,
    GrpcClient,
    TlsServer,
}

impl Profile {
    pub const ALL: [Self; 6] = [
        Self::EtcdServer,
        Self::EtcdPeer,
        Self::EtcdClient,
        Self::GrpcServer,
        Self::GrpcClient,
        Self::TlsServer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EtcdServer => "etcd-server",
            Self::EtcdPeer => "etcd-peer",
            Self::EtcdClient => "etcd-client",
            Self::GrpcServer => "grpc-server",
            Self::GrpcClient => "grpc-client",
            Self::TlsServer => "tls-server",
        }
    }

    /// Whether the leaf carries the serverAuth EKU (id-kp-serverAuth, RFC 5280 §4.2.1.12).
    pub fn server_auth(self) -> bool {
        !matches!(self, Self::EtcdClient | Self::GrpcClient)
    }

    /// Whether the leaf carries the clientAuth EKU.
    pub fn client_auth(self) -> bool {
        matches!(
            self,
            Self::EtcdServer | Self::EtcdPeer | Self::EtcdClient | Self::GrpcClient
        )
    }

    /// Servers and peers are reached by name or address, so they need at least one SAN.
    pub fn requires_identifiers(self) -> bool {
        self.server_auth()
    }

    /// etcd maps a client certificate's CN to the user name when auth is on.
    pub fn requires_common_name(self) -> bool {
        self == Self::EtcdClient
    }

    /// Short lifetimes: servers and peers 7 days, clients 24 hours. With renewal at 2/3 of the
    /// lifetime a server certificate is replaced with about 2.3 days left and a client
    /// certificate with 8 hours left, so an outage of the renewal pipeline has that much slack.
    pub fn default_lifetime(self) -> Duration {
        Duration::from_secs(match self {
            Self::EtcdServer | Self::EtcdPeer | Self::GrpcServer | Self::TlsServer => 7 * DAY,
            Self::EtcdClient | Self::GrpcClient => 24 * HOUR,
        })
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a profile name; lists the known names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown profile {name:?} (known: etcd-server, etcd-peer, etcd-client, grpc-server, grpc-client, tls-server)"
)]
pub struct UnknownProfile {
    pub name: String,
}

impl FromStr for Profile {
    type Err = UnknownProfile;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.to_ascii_lowercase().replace('_', "-");
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == wanted)
            .ok_or_else(|| UnknownProfile { name: s.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_fromstr_display_and_serde() {
        for p in Profile::ALL {
            assert_eq!(p.to_string().parse::<Profile>(), Ok(p));
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{p}\""));
            assert_eq!(serde_json::from_str::<Profile>(&json).unwrap(), p);
        }
        assert_eq!("ETCD_PEER".parse::<Profile>(), Ok(Profile::EtcdPeer));
        let err = "etcd".parse::<Profile>().unwrap_err().to_string();
        assert!(
            err.contains("\"etcd\"") && err.contains("grpc-client"),
            "{err}"
        );
    }

    #[test]
    fn every_profile_has_a_short_lifetime_and_some_usage() {
        for p in Profile::ALL {
            let life = p.default_lifetime();
            assert!(life >= Duration::from_secs(HOUR) && life <= Duration::from_secs(7 * DAY));
            assert!(p.server_auth() || p.client_auth(), "{p}");
        }
        assert!(Profile::EtcdServer.server_auth() && Profile::EtcdServer.client_auth());
        assert!(!Profile::EtcdClient.server_auth());
        assert!(!Profile::TlsServer.client_auth());
    }
}
