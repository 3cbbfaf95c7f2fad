//! `certvigil issue`: issue managed certificates now and leave them in the staging area.

use std::sync::Arc;

use anyhow::{Result, bail};
use certvigil_config::Config;
use certvigil_core::timefmt::rfc3339;
use certvigil_renew::Issuers;

/// Issues every certificate in `names` (all configured ones with `all`) concurrently.
/// Exit status: 0 all issued, 1 at least one failed.
pub(crate) fn run(config: Config, names: Vec<String>, all: bool) -> Result<u8> {
    let names: Vec<String> = if all {
        config.certificates.iter().map(|c| c.name.clone()).collect()
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
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
