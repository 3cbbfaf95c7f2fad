//! Live TLS endpoints (work in progress).
