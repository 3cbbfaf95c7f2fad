//! `certvigil ca`: create the internal CA and issue certificates from it by hand. The library
//! is certvigil-ca; this is flags in, files and a summary out.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use certvigil_ca::{Ca, InitOptions, IssueRequest, KeyChoice, Profile, write_bundle};
use certvigil_core::timefmt::rfc3339;
use certvigil_core::{Certificate, DecodeOptions, decode};
use certvigil_issue::{Identifier, KeyType, SecretPem};
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub(crate) enum CaCommand {
    /// Create a CA in a new directory: a root, optionally an intermediate that issues.
    ///
    /// Keys are written 0600, certificates 0644; an existing CA is never overwritten.
    Init(InitArgs),
    /// Issue one certificate for a role profile and write cert.pem, chain.pem, fullchain.pem,
    /// privkey.pem (0600) and ca.pem (the root) into --out.
    ///
    /// Profiles: etcd-server, etcd-peer (serverAuth + clientAuth), etcd-client (clientAuth,
    /// --cn is the etcd user), grpc-server, grpc-client, tls-server.
    Issue(IssueArgs),
}

#[derive(Args)]
pub(crate) struct InitArgs {
    /// Directory of the new CA (must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Common name of the root.
    #[arg(long, value_name = "NAME", default_value = "certvigil internal CA")]
    cn: String,
    /// Key type: ecdsa-p256, ecdsa-p384, rsa2048, rsa3072, rsa4096, ed25519, sm2.
    #[arg(long, value_name = "TYPE", default_value_t = KeyType::EcdsaP256, value_parser = parse_key_type)]
    key_type: KeyType,
    /// Also create an intermediate that does the issuing (the root key can then go offline).
    #[arg(long)]
    intermediate: bool,
    /// Lifetime of the root, e.g. 10y.
    #[arg(long, value_name = "DURATION", default_value = "10y", value_parser = parse_lifetime)]
    root_lifetime: Duration,
    /// Lifetime of the intermediate, e.g. 5y (never beyond the root).
    #[arg(long, value_name = "DURATION", default_value = "5y", value_parser = parse_lifetime)]
    intermediate_lifetime: Duration,
}

#[derive(Args)]
pub(crate) struct IssueArgs {
    /// Directory of the CA (made by `certvigil ca init`).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Role profile of the certificate.
    #[arg(long, value_parser = parse_profile)]
    profile: Profile,
    /// Subject common name (etcd-client: the etcd user name). Default: the first --name.
    #[arg(long, value_name = "CN")]
    cn: Option<String>,
    /// DNS name or IP address for the subjectAltName (repeatable).
    #[arg(long = "name", value_name = "DNS_OR_IP")]
    names: Vec<String>,
    /// Lifetime, e.g. 24h or 7d. Default: the profile's (7 days for servers and peers,
    /// 24 hours for clients).
    #[arg(long, value_name = "DURATION", value_parser = parse_lifetime)]
    lifetime: Option<Duration>,
    /// Key type of the new key.
    #[arg(long, value_name = "TYPE", default_value_t = KeyType::EcdsaP256, value_parser = parse_key_type)]
    key_type: KeyType,
    /// Certify this existing private key (PEM) instead of generating one.
    #[arg(long, value_name = "FILE", conflicts_with = "key_type")]
    reuse_key: Option<PathBuf>,
    /// Directory to write the files into (created if missing; files replaced atomically).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

fn parse_key_type(s: &str) -> Result<KeyType, String> {
    s.parse()
}

fn parse_profile(s: &str) -> Result<Profile, String> {
    s.parse()
        .map_err(|e: certvigil_ca::UnknownProfile| e.to_string())
}

fn parse_lifetime(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (e.g. 24h, 7d, 10y)"))
}

pub(crate) fn run(command: CaCommand) -> Result<u8> {
    match command {
        CaCommand::Init(args) => init(args),
        CaCommand::Issue(args) => issue(args),
    }
}

fn init(args: InitArgs) -> Result<u8> {
    let ca = Ca::init(
        &args.dir,
        &InitOptions {
            common_name: args.cn,
            key_type: args.key_type,
            intermediate: args.intermediate,
            root_lifetime: args.root_lifetime,
            intermediate_lifetime: args.intermediate_lifetime,
        },
    )?;
    let issuing = ca.issuing_cert();
    println!("created CA in {}", ca.dir().display());
    println!("  key type: {}", args.key_type);
    println!(
        "  issuing:  {} (valid until {})",
        issuing.subject,
        rfc3339(ca.not_after())
    );
    println!("  trust:    {}", ca.dir().join("root.pem").display());
    Ok(0)
}

fn issue(args: IssueArgs) -> Result<u8> {
    let ca = Ca::open(&args.dir)?;
    let key = match &args.reuse_key {
        Some(path) => KeyChoice::Reuse(SecretPem::new(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        )),
        None => KeyChoice::Generate(args.key_type),
    };
    let request = IssueRequest {
        profile: args.profile,
        common_name: args.cn,
        identifiers: args.names.iter().map(|n| Identifier::parse(n)).collect(),
        lifetime: args
            .lifetime
            .unwrap_or_else(|| args.profile.default_lifetime()),
        key,
    };
    let issued = ca.issue(&request)?;
    // `issue` validated the bundle against the root already; parse the leaf for the summary.
    let leaf_der = decode(issued.leaf_pem.as_bytes(), &DecodeOptions::default()).certs;
    let cert = Certificate::from_der(leaf_der.first().context("no leaf certificate")?)?;
    write_bundle(&args.out, &issued, ca.root_pem())?;
    println!(
        "issued {} ({}) serial {}, valid until {}",
        cert.subject,
        args.profile,
        cert.serial
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        rfc3339(cert.not_after)
    );
    println!(
        "  wrote cert.pem chain.pem fullchain.pem privkey.pem (0600) ca.pem to {}",
        args.out.display()
    );
    Ok(0)
}
