//! The propagation check: ask each authoritative server directly (no recursion, no host
//! resolver, no cache in between) until all of them answer the TXT value.
//!
//! Every server is polled on its own, all at the same time: a dead server does not delay the
//! verdict on the others. After a miss the next query follows after 50 ms, then the pause grows
//! by half each time up to 1 s, so a local primary is seen within one round trip and a slow
//! secondary is not hammered.

use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::join_all;
use hickory_net::proto::op::{DnsResponse, ResponseCode};
use hickory_net::proto::rr::{Name, RData, RecordType};
use tokio::time::Instant;

use crate::dns::{Conn, mnemonic};
use crate::error::ErrorKind;

const FIRST_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Waits until every server in `servers` answers `value` among the TXT records of `name`.
pub(crate) async fn wait(
    name: &Name,
    value: &str,
    servers: &[SocketAddr],
    timeout: Duration,
    query_timeout: Duration,
) -> Result<(), ErrorKind> {
    let started = Instant::now();
    // What each server answered last; `Ok` once it has the value.
    let seen: Mutex<Vec<Option<Result<(), String>>>> = Mutex::new(vec![None; servers.len()]);
    let polls = servers.iter().enumerate().map(|(i, server)| {
        let seen = &seen;
        async move {
            let conn = Conn::new(*server, query_timeout);
            let mut pause = FIRST_PAUSE;
            for round in 1u32.. {
                let observed = observe(&conn, name, value).await;
                let done = observed.is_ok();
                seen.lock().unwrap_or_else(PoisonError::into_inner)[i] = Some(observed);
                if done {
                    tracing::debug!(
                        %server,
                        %name,
                        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                        round,
                        "TXT value visible"
                    );
                    return;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 3 / 2).min(MAX_PAUSE);
            }
        }
    });
    if tokio::time::timeout_at(started + timeout, join_all(polls))
        .await
        .is_ok()
    {
        return Ok(());
    }
    let seen = seen.into_inner().unwrap_or_else(PoisonError::into_inner);
    Err(ErrorKind::NotPropagated {
        timeout,
        missing: servers
            .iter()
            .zip(seen)
            .filter_map(|(server, seen)| match seen {
                Some(Ok(())) => None,
                Some(Err(last)) => Some((*server, last)),
                None => Some((*server, "no answer before the deadline".to_owned())),
            })
            .collect(),
    })
}

/// `Ok` when the server answers the value authoritatively; otherwise what it answered.
async fn observe(conn: &Conn, name: &Name, value: &str) -> Result<(), String> {
    let response = conn
        .query(name, RecordType::TXT)
        .await
        .map_err(|e| match e {
            ErrorKind::Timeout { after, .. } => {
                format!("no answer within {}", humantime::format_duration(after))
            }
            other => other.to_string(),
        })?;
    judge(&response, name, value)
}

fn judge(response: &DnsResponse, name: &Name, value: &str) -> Result<(), String> {
    match response.response_code {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return Err("answered NXDOMAIN".into()),
        code => return Err(format!("answered {}", mnemonic(code))),
    }
    if !response.authoritative {
        return Err("answered without authority (not authoritative for the zone?)".into());
    }
    if response.truncation {
        // EDNS allows 1232 bytes: dozens of challenge values. More would need TCP.
        return Err("answer truncated (too many TXT values for UDP)".into());
    }
    let values: Vec<Vec<u8>> = response
        .answers
        .iter()
        .filter(|r| &r.name == name)
        .filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .flat_map(|s| s.iter().copied())
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    if values.iter().any(|v| v == value.as_bytes()) {
        return Ok(());
    }
    let cname = response
        .answers
        .iter()
        .any(|r| r.record_type() == RecordType::CNAME);
    Err(match (values.len(), cname) {
        (_, true) => "answered a CNAME (not followed)".into(),
        (0, _) => "answered no TXT record".into(),
        (1, _) => "answered 1 other TXT value".into(),
        (n, _) => format!("answered {n} other TXT values"),
    })
}
