//! RFC 2136 dynamic updates signed with TSIG (RFC 8945), sent to the zone's primary server.
//!
//! `present` adds one TXT record to the RRset (other values stay: `example.test` and
//! `*.example.test` share `_acme-challenge.example.test` and need two values at once);
//! `cleanup` deletes exactly that record (same name, type and rdata).
//!
//! Messages are built and signed here with hickory-proto and sent through a hickory-net UDP
//! exchange without a signer attached. Letting hickory-net sign would also make it verify the
//! answer first, and an answer to a wrong key (NOTAUTH with TSIG error BADSIG and an empty MAC)
//! would then come back as an opaque verification error instead of the response code and TSIG
//! error that tell the operator what is wrong. Successful answers are verified against the key
//! here, as hickory-net would.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_net::proto::op::{DnsResponse, ResponseCode, update_message};
use hickory_net::proto::rr::rdata::TXT;
use hickory_net::proto::rr::rdata::tsig::{TsigAlgorithm, TsigError};
use hickory_net::proto::rr::{Name, RData, Record, RecordSet, RecordType, TSigner};
use zeroize::Zeroizing;

use crate::TxtRecord;
use crate::config::Rfc2136Config;
use crate::dns::{Conn, mnemonic};
use crate::error::{Dns01Error, ErrorKind, Step};
use crate::propagation;

/// Allowed clock difference between us and the server for TSIG, seconds (RFC 8945 recommends
/// 300).
const TSIG_FUDGE: u16 = 300;

/// How long one propagation query may wait: a server that does not answer within this is
/// asked again on the next round.
const PROPAGATION_QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// An RFC 2136 provider ready to send signed updates. `Debug` never shows the secret.
pub struct Rfc2136 {
    server: SocketAddr,
    zone: Option<Name>,
    key_name: String,
    algorithm: TsigAlgorithm,
    signer: TSigner,
    ttl: u32,
    timeout: Duration,
    propagation_timeout: Duration,
    propagation_servers: Vec<SocketAddr>,
}

impl fmt::Debug for Rfc2136 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rfc2136")
            .field("server", &self.server)
            .field("zone", &self.zone.as_ref().map(ToString::to_string))
            .field("tsig_key_name", &self.key_name)
            .field("tsig_algorithm", &self.algorithm.to_string())
            .field("tsig_secret", &"<redacted>")
            .field("ttl", &self.ttl)
            .field("timeout", &self.timeout)
            .field("propagation_timeout", &self.propagation_timeout)
            .field("propagation_servers", &self.propagation_servers)
            .finish()
    }
}

impl Rfc2136 {
    /// Reads the TSIG secret (base64) from `tsig_secret_file` or the environment variable
    /// `tsig_secret_env` (exactly one of them) and checks every setting.
    pub fn from_config(config: &Rfc2136Config) -> Result<Self, Dns01Error> {
        Self::from_config_with_env(config, |var| std::env::var(var).ok())
    }

    /// [`Self::from_config`] with the environment given as a function (for tests).
    pub fn from_config_with_env(
        config: &Rfc2136Config,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Dns01Error> {
        let secret = read_secret(config, env)?;
        let algorithm = parse_algorithm(&config.tsig_algorithm)?;
        let key = Name::from_ascii(&config.tsig_key_name).map_err(|e| {
            Dns01Error::config(
                "tsig_key_name",
                format!("{:?} is not a DNS name: {e}", config.tsig_key_name),
            )
        })?;
        let signer = TSigner::new(secret.to_vec(), algorithm.clone(), key, TSIG_FUDGE)
            .map_err(|e| Dns01Error::config("tsig_algorithm", e.to_string()))?;
        let zone = match &config.zone {
            None => None,
            Some(zone) => Some(absolute_name(zone).map_err(|e| {
                Dns01Error::config("zone", format!("{zone:?} is not a DNS name: {e}"))
            })?),
        };
        if config.timeout.is_zero() {
            return Err(Dns01Error::config("timeout", "must be more than 0s"));
        }
        Ok(Self {
            server: config.server,
            zone,
            key_name: config.tsig_key_name.clone(),
            algorithm,
            signer,
            ttl: config.ttl,
            timeout: config.timeout,
            propagation_timeout: config.propagation_timeout,
            propagation_servers: config.propagation_servers.clone(),
        })
    }

    /// Adds the TXT value to the name's RRset, keeping the values already there.
    pub async fn present(&self, record: &TxtRecord) -> Result<(), Dns01Error> {
        self.update(Step::Present, record).await
    }

    /// Deletes exactly this TXT value (name, type and rdata); other values stay.
    pub async fn cleanup(&self, record: &TxtRecord) -> Result<(), Dns01Error> {
        self.update(Step::Cleanup, record).await
    }

    /// Waits until every authoritative server (see [`Self::authoritative_servers`]) answers
    /// the value, or the propagation timeout passes.
    pub async fn wait_propagated(&self, record: &TxtRecord) -> Result<(), Dns01Error> {
        let fqdn = record.fqdn();
        let err = |kind| Dns01Error::new(Step::Propagation, &fqdn, kind);
        let name = record_name(record).map_err(err)?;
        let servers = if self.propagation_servers.is_empty() {
            self.discover_servers(&name).await.map_err(err)?
        } else {
            self.propagation_servers.clone()
        };
        propagation::wait(
            &name,
            &record.value,
            &servers,
            self.propagation_timeout,
            PROPAGATION_QUERY_TIMEOUT.min(self.timeout),
        )
        .await
        .map_err(err)
    }

    /// The zone the record goes to: the configured one, or the owner of the SOA the update
    /// server returns for the record name.
    pub async fn zone(&self, record: &TxtRecord) -> Result<String, Dns01Error> {
        let fqdn = record.fqdn();
        let err = |kind| Dns01Error::new(Step::Present, &fqdn, kind);
        let name = record_name(record).map_err(err)?;
        let conn = Conn::new(self.server, self.timeout);
        Ok(self.find_zone(&conn, &name).await.map_err(err)?.to_string())
    }

    /// The servers the propagation check asks: `propagation_servers` when configured, else the
    /// update server followed by the addresses of the zone's NS hosts on port 53, all learnt
    /// from the update server itself (no recursion, no host resolver).
    pub async fn authoritative_servers(
        &self,
        record: &TxtRecord,
    ) -> Result<Vec<SocketAddr>, Dns01Error> {
        if !self.propagation_servers.is_empty() {
            return Ok(self.propagation_servers.clone());
        }
        let fqdn = record.fqdn();
        let err = |kind| Dns01Error::new(Step::Propagation, &fqdn, kind);
        let name = record_name(record).map_err(err)?;
        self.discover_servers(&name).await.map_err(err)
    }

    async fn update(&self, step: Step, record: &TxtRecord) -> Result<(), Dns01Error> {
        let fqdn = record.fqdn();
        let err = |kind| Dns01Error::new(step, &fqdn, kind);
        let name = record_name(record).map_err(err)?;
        let txt = txt_rdata(&record.value).map_err(err)?;
        let conn = Conn::new(self.server, self.timeout);
        let zone = self.find_zone(&conn, &name).await.map_err(err)?;
        if !zone.zone_of(&name) {
            return Err(err(ErrorKind::Config(format!(
                "the name is not inside the zone {zone}"
            ))));
        }
        let rrset = RecordSet::from(Record::from_rdata(name, self.ttl, RData::TXT(txt)));
        let mut message = match step {
            Step::Cleanup => update_message::delete_by_rdata(rrset, zone, true),
            _ => update_message::append(rrset, zone, false, true),
        };
        let verifier = message
            .finalize(&self.signer, unix_now())
            .map_err(|e| err(ErrorKind::Config(format!("cannot sign the update: {e}"))))?;
        let started = std::time::Instant::now();
        let response = conn.send(message).await.map_err(err)?;
        tracing::debug!(
            server = %self.server,
            name = %fqdn,
            %step,
            rcode = %mnemonic(response.response_code),
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "RFC 2136 update answered"
        );
        check_update_answer(self.server, &response).map_err(err)?;
        let Some(mut verifier) = verifier else {
            return Ok(());
        };
        verifier
            .verify(response.as_buffer())
            .map(drop)
            .map_err(|e| {
                err(ErrorKind::BadResponse {
                    server: self.server,
                    reason: format!(
                        "the server answered NOERROR but its TSIG signature does not verify \
                         with our key ({e}); not trusting it"
                    ),
                })
            })
    }

    async fn find_zone(&self, conn: &Conn, name: &Name) -> Result<Name, ErrorKind> {
        if let Some(zone) = &self.zone {
            return Ok(zone.clone());
        }
        let response = conn.query(name, RecordType::SOA).await?;
        let server = self.server;
        match response.response_code {
            ResponseCode::NoError | ResponseCode::NXDomain => {}
            ResponseCode::ServFail => {
                return Err(ErrorKind::ServerFailure {
                    server,
                    code: "SERVFAIL".into(),
                });
            }
            code => {
                return Err(ErrorKind::ZoneNotFound {
                    server,
                    reason: format!(
                        "it answered {} to the SOA query: it is not authoritative for a zone \
                         holding the name",
                        mnemonic(code)
                    ),
                });
            }
        }
        if !response.authoritative {
            return Err(ErrorKind::ZoneNotFound {
                server,
                reason: "the answer to the SOA query is not authoritative".into(),
            });
        }
        response
            .answers
            .iter()
            .chain(response.authorities.iter())
            .find(|r| r.record_type() == RecordType::SOA && r.name.zone_of(name))
            .map(|r| r.name.clone())
            .ok_or_else(|| ErrorKind::ZoneNotFound {
                server,
                reason: "no SOA record in its answer; set `zone`".into(),
            })
    }

    /// The update server, then every address of every NS host of the zone on port 53.
    async fn discover_servers(&self, name: &Name) -> Result<Vec<SocketAddr>, ErrorKind> {
        let conn = Conn::new(self.server, self.timeout);
        let zone = self.find_zone(&conn, name).await?;
        let ns_answer = conn.query(&zone, RecordType::NS).await?;
        if ns_answer.response_code != ResponseCode::NoError {
            return Err(ErrorKind::Rejected {
                server: self.server,
                code: format!(
                    "{} to the NS query for {zone}",
                    mnemonic(ns_answer.response_code)
                ),
            });
        }
        let mut servers = vec![self.server];
        for ns in ns_answer.answers.iter().filter_map(|r| match &r.data {
            RData::NS(ns) if r.name == zone => Some(ns.0.clone()),
            _ => None,
        }) {
            let mut addrs = glue(&ns_answer, &ns);
            if addrs.is_empty() {
                for rtype in [RecordType::A, RecordType::AAAA] {
                    let answer = conn.query(&ns, rtype).await?;
                    addrs.extend(glue(&answer, &ns));
                }
            }
            if addrs.is_empty() {
                return Err(ErrorKind::Config(format!(
                    "cannot find the address of the NS host {ns} of {zone} through {} (it \
                     answers only for its own zones); list the authoritative servers in \
                     propagation_servers",
                    self.server
                )));
            }
            for ip in addrs {
                let addr = SocketAddr::new(ip, 53);
                if !servers.contains(&addr) {
                    servers.push(addr);
                }
            }
        }
        Ok(servers)
    }
}

/// NOERROR passes; everything else becomes an error naming the server and the code.
fn check_update_answer(server: SocketAddr, response: &DnsResponse) -> Result<(), ErrorKind> {
    let tsig_error = response
        .signature()
        .and_then(|sig| sig.data.error.as_ref())
        .map(|e| {
            match e {
                TsigError::BadSig => "BADSIG",
                TsigError::BadKey => "BADKEY",
                TsigError::BadTime => "BADTIME",
                TsigError::BadTrunc => "BADTRUNC",
                TsigError::Unknown(_) => "unknown",
            }
            .to_owned()
        });
    let code = mnemonic(response.response_code);
    match response.response_code {
        ResponseCode::NoError if tsig_error.is_none() => Ok(()),
        ResponseCode::NotAuth
        | ResponseCode::Refused
        | ResponseCode::BADSIG
        | ResponseCode::BADKEY
        | ResponseCode::BADTIME => Err(ErrorKind::NotAuthorized {
            server,
            code,
            tsig_error,
        }),
        _ if tsig_error.is_some() => Err(ErrorKind::NotAuthorized {
            server,
            code,
            tsig_error,
        }),
        ResponseCode::ServFail => Err(ErrorKind::ServerFailure { server, code }),
        _ => Err(ErrorKind::Rejected { server, code }),
    }
}

fn glue(response: &DnsResponse, host: &Name) -> Vec<std::net::IpAddr> {
    response
        .answers
        .iter()
        .chain(response.additionals.iter())
        .filter(|r| &r.name == host)
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(std::net::IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(std::net::IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

/// The record name on the wire: IDN labels become punycode, the name is absolute.
pub(crate) fn record_name(record: &TxtRecord) -> Result<Name, ErrorKind> {
    let domain = record.domain.trim().trim_end_matches('.');
    if domain.is_empty() || domain == "*" {
        return Err(ErrorKind::Config(format!(
            "{:?} is not a domain name",
            record.domain
        )));
    }
    absolute_name(&record.fqdn()).map_err(|e| ErrorKind::Config(format!("not a DNS name: {e}")))
}

fn absolute_name(text: &str) -> Result<Name, hickory_net::proto::ProtoError> {
    let mut name = Name::from_utf8(text)?;
    name.set_fqdn(true);
    Ok(name)
}

fn txt_rdata(value: &str) -> Result<TXT, ErrorKind> {
    if value.is_empty() || value.len() > 255 {
        return Err(ErrorKind::Config(format!(
            "a TXT value must be 1 to 255 bytes, got {}",
            value.len()
        )));
    }
    Ok(TXT::new(vec![value.to_owned()]))
}

fn parse_algorithm(text: &str) -> Result<TsigAlgorithm, Dns01Error> {
    match text.trim_end_matches('.').to_ascii_lowercase().as_str() {
        "hmac-sha256" => Ok(TsigAlgorithm::HmacSha256),
        "hmac-sha384" => Ok(TsigAlgorithm::HmacSha384),
        "hmac-sha512" => Ok(TsigAlgorithm::HmacSha512),
        _ => Err(Dns01Error::config(
            "tsig_algorithm",
            format!("{text:?} is not supported: use hmac-sha256, hmac-sha384 or hmac-sha512"),
        )),
    }
}

/// The decoded secret, wiped from memory when dropped.
fn read_secret(
    config: &Rfc2136Config,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Zeroizing<Vec<u8>>, Dns01Error> {
    let (origin, text) = match (&config.tsig_secret_file, &config.tsig_secret_env) {
        (Some(_), Some(_)) => {
            return Err(Dns01Error::config(
                "tsig_secret_file",
                "set tsig_secret_file or tsig_secret_env, not both",
            ));
        }
        (None, None) => {
            return Err(Dns01Error::config(
                "tsig_secret_file",
                "the TSIG secret is missing: set tsig_secret_file or tsig_secret_env",
            ));
        }
        (Some(path), None) => (
            format!("tsig_secret_file {}", path.display()),
            read_secret_file(path)?,
        ),
        (None, Some(var)) => (
            format!("tsig_secret_env {var}"),
            Zeroizing::new(env(var).ok_or_else(|| {
                Dns01Error::config(
                    "tsig_secret_env",
                    format!("the environment variable {var} is not set"),
                )
            })?),
        ),
    };
    decode_secret(&text).map_err(|reason| Dns01Error::config(origin, reason))
}

fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, Dns01Error> {
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|e| {
            Dns01Error::config(
                "tsig_secret_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })
}

/// Accepts the base64 secret alone, or a whole `tsig-keygen` key block (its `secret "...";`).
/// Error messages never quote the text.
fn decode_secret(text: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    use base64::Engine as _;
    let b64 = text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("secret")
                .map(str::trim_start)
                .and_then(|l| l.strip_prefix('"'))
                .and_then(|l| l.split('"').next())
        })
        .unwrap_or(text)
        .trim();
    if b64.is_empty() {
        return Err("the TSIG secret is empty".into());
    }
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map(Zeroizing::new)
        .map_err(|_| "the TSIG secret is not valid base64".to_owned())?;
    if key.len() < 16 {
        return Err(format!(
            "the TSIG secret is only {} bytes; use a key from tsig-keygen",
            key.len()
        ));
    }
    Ok(key)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
