//! Where certificates come from: files, directories, the system trust store, Kubernetes
//! objects and live TLS endpoints. Everything here does I/O and hands bytes to the core.

pub mod endpoint;
