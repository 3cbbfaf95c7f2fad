//! `certvigil audit`: check the hash chain of a deploy audit log (certvigil-deploy's
//! `audit` module, format in docs/reload-and-audit.md).

use std::path::PathBuf;

use anyhow::Result;
use certvigil_deploy::audit::{self, VerifyError};
use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// Check every line of an audit log and report the first one where the chain breaks.
    ///
    /// Exit status: 0 the chain is intact, 1 it is broken, 2 the file cannot be read.
    Verify {
        /// The audit log, e.g. <state_dir>/audit.log.
        file: PathBuf,
    },
}

pub(crate) fn run(command: AuditCommand) -> Result<u8> {
    match command {
        AuditCommand::Verify { file } => match audit::verify(&file) {
            Ok(report) => {
                let repaired = if report.repaired.is_empty() {
                    String::new()
                } else {
                    let lines: Vec<String> =
                        report.repaired.iter().map(ToString::to_string).collect();
                    format!(" (interrupted write repaired at line {})", lines.join(", "))
                };
                println!(
                    "{}: {} lines, chain intact{repaired}",
                    file.display(),
                    report.lines
                );
                Ok(0)
            }
            Err(VerifyError::Broken(broken)) => {
                println!(
                    "{}: chain broken at line {}: {}",
                    file.display(),
                    broken.line,
                    broken.reason
                );
                Ok(1)
            }
            Err(e) => Err(e.into()),
        },
    }
}
