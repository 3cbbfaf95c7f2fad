//! Where certificates come from: files, directories, the system trust store, Kubernetes
//! objects and live TLS endpoints. Everything here does I/O and hands bytes to the core.

pub mod endpoint;
pub mod filecache;
pub mod files;
pub mod kube;
pub mod scan;
pub mod schedule;
mod starttls;
pub mod truststore;

pub use endpoint::{EndpointSpec, StartTls};
pub use filecache::{CacheDir, FileCache};
pub use scan::{DeploymentSpec, ScanOptions, Target, scan};
pub use schedule::ProbeSchedule;
