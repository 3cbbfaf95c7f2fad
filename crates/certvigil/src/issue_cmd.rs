//! `certvigil issue` (issue managed certificates now, into the staging area) and
//! `certvigil plan` (when each one is due) and `certvigil renew` (the whole pipeline).

use std::sync::Arc;

use anyhow::{Result, bail};
use certvigil_config::Config;
use certvigil_core::renewal::{DueReason, Plan};
use certvigil_core::timefmt::rfc3339;
use certvigil_renew::{Issuers, RenewOptions, exit_code};

/// Issues every certificate in `names` (all configured ones with `all`) concurrently.
/// Exit status: 0 all issued, 1 at least one failed.
pub(crate) fn run(config: Config, names: Vec<String>, all: bool) -> Result<u8> {
    let names = if all {
        names_or_all(&config, Vec::new())
    } else {
        names
    };
    if names.is_empty() {
        bail!("name the certificates to issue (or --all); the configuration has none");
    }
    for name in &names {
        if !config.certificates.iter().any(|c| &c.name == name) {
            let known: Vec<&str> = config
                .certificates
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            bail!(
                "no [[certificate]] named {name:?} (configured: {})",
                known.join(", ")
            );
        }
    }
    runtime()?.block_on(async move {
        let issuers = Arc::new(Issuers::new(config));
        let mut tasks = tokio::task::JoinSet::new();
        for (index, name) in names.iter().enumerate() {
            let issuers = issuers.clone();
            let name = name.clone();
            tasks.spawn(async move { (index, issuers.issue(&name).await) });
        }
        let mut results = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            results.push(joined?);
        }
        results.sort_by_key(|(index, _)| *index);
        let mut failed = 0;
        for (index, result) in results {
            let name = &names[index];
            match result {
                Ok(staged) => println!(
                    "{name}: issued serial {} valid until {}, staged in {}",
                    staged.leaf.serial_hex(),
                    rfc3339(staged.leaf.not_after),
                    staged.generation.dir.display()
                ),
                Err(e) => {
                    failed += 1;
                    eprintln!("{name}: not issued: {e}");
                }
            }
        }
        Ok(u8::from(failed > 0))
    })
}

/// `certvigil plan`: what the renewal planner says about each managed certificate.
pub(crate) fn plan(config: Config, names: Vec<String>) -> Result<u8> {
    let names = names_or_all(&config, names);
    runtime()?.block_on(async move {
        let issuers = Issuers::new(config);
        let now = certvigil_core::timefmt::unix_now();
        for name in &names {
            let report = issuers.plan(name, now).await?;
            let basis = match &report.current {
                Some(leaf) => format!(
                    "serial {} valid {} to {}",
                    leaf.serial_hex(),
                    rfc3339(leaf.not_before),
                    rfc3339(leaf.not_after)
                ),
                None => "nothing staged yet".to_owned(),
            };
            let ari = report
                .ari
                .as_ref()
                .map(|a| {
                    format!(
                        "; ARI window {} to {}",
                        rfc3339(a.window_start),
                        rfc3339(a.window_end)
                    )
                })
                .unwrap_or_default();
            let verdict = match report.plan {
                Plan::NotYet { at } => format!("renew at {}", rfc3339(at)),
                Plan::Due(reason) => format!("due now ({})", describe_due(reason)),
            };
            println!("{name}: {verdict}; {basis}{ari}");
        }
        Ok(0)
    })
}

fn describe_due(reason: DueReason) -> String {
    match reason {
        DueReason::Missing => "never issued".into(),
        DueReason::RequestChanged => "the names or key type changed".into(),
        DueReason::Expired => "expired".into(),
        DueReason::Window { since } => format!("renewal window opened {}", rfc3339(since)),
        DueReason::Ari { since } => format!("the CA's ARI window asked for {}", rfc3339(since)),
        DueReason::Forced => "forced".into(),
        DueReason::Emergency { since } => format!(
            "less than 1/20 of the lifetime left since {}",
            rfc3339(since)
        ),
    }
}

/// `certvigil renew`: one renewal pass (issue what is due, activate, reload, verify).
pub(crate) fn renew(config: Config, names: Vec<String>, force: bool, dry_run: bool) -> Result<u8> {
    let names = names_or_all(&config, names);
    if names.is_empty() {
        bail!("the configuration has no [[certificate]] to renew");
    }
    runtime()?.block_on(async move {
        let issuers = Issuers::new(config);
        let outcomes = issuers.renew(&names, RenewOptions { force, dry_run }).await;
        for (name, outcome) in &outcomes {
            println!("{name}: {}", outcome.describe());
        }
        Ok(exit_code(&outcomes))
    })
}

/// `certvigil status`: where each managed certificate stands (state, what is live, what is
/// next), as text or JSON.
pub(crate) fn status(config: Config, names: Vec<String>, as_json: bool) -> Result<u8> {
    let names = names_or_all(&config, names);
    runtime()?.block_on(async move {
        let issuers = Issuers::new(config);
        let now = certvigil_core::timefmt::unix_now();
        let mut entries = Vec::new();
        for name in &names {
            let report = issuers.plan(name, now).await?;
            let state = issuers.state(name)?;
            let (due, next) = match report.plan {
                Plan::NotYet { at } => (None, Some(at)),
                Plan::Due(reason) => (Some(reason.as_str()), Some(now)),
            };
            let stamp = |t: Option<i64>| t.map(rfc3339);
            entries.push(serde_json::json!({
                "certificate": name,
                "stage": state.stage.as_str(),
                "generation": report.generation.as_ref().map(|g| g.id.clone()),
                "serial": report.current.as_ref().map(|c| c.serial_hex()),
                "not_after": stamp(report.current.as_ref().map(|c| c.not_after)),
                "due": due,
                "next_renewal": stamp(next),
                "ari_window": report.ari.as_ref().map(|a| [rfc3339(a.window_start), rfc3339(a.window_end)]),
                "last_attempt": stamp(state.last_attempt),
                "last_success": stamp(state.last_success),
                "failure": state.failure.as_ref().map(|f| serde_json::json!({
                    "step": f.step,
                    "class": f.class,
                    "attempt": f.attempt,
                    "message": f.message,
                    "retry_at": (f.next_at != i64::MAX).then(|| rfc3339(f.next_at)),
                })),
            }));
        }
        if as_json {
            println!("{}", serde_json::to_string_pretty(&entries)?);
        } else {
            for e in &entries {
                let get = |k: &str| e[k].as_str().unwrap_or("-").to_owned();
                let due = match e["due"].as_str() {
                    Some(reason) => format!("due now ({reason})"),
                    None => format!("next renewal {}", get("next_renewal")),
                };
                println!(
                    "{}: {}; stage {}; serial {} valid until {}; last success {}",
                    get("certificate"),
                    due,
                    get("stage"),
                    get("serial"),
                    get("not_after"),
                    get("last_success")
                );
                if let Some(f) = e["failure"].as_object() {
                    println!(
                        "  failing at {} ({}, attempt {}): {}",
                        f["step"].as_str().unwrap_or("?"),
                        f["class"].as_str().unwrap_or("?"),
                        f["attempt"],
                        f["message"].as_str().unwrap_or("")
                    );
                }
            }
        }
        Ok(0)
    })
}

/// The names given, or every configured certificate when none are.
fn names_or_all(config: &Config, names: Vec<String>) -> Vec<String> {
    if names.is_empty() {
        config.certificates.iter().map(|c| c.name.clone()).collect()
    } else {
        names
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}
