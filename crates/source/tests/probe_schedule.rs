//! A scan with a probe schedule connects to an endpoint only when its interval has come
//! round, and still reports it in between.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use certvigil_core::inventory::ProblemKind;
use certvigil_source::{EndpointSpec, ProbeSchedule, ScanOptions, Target, scan};
use certvigil_testutil::servers::Listener;

/// What the counting server answers: the probe fails at the handshake.
const NOT_TLS: &[u8] = b"HTTP/1.0 400 no tls here\r\n\r\n";

fn options(spec: &EndpointSpec, schedule: &Arc<ProbeSchedule>) -> ScanOptions {
    ScanOptions {
        targets: vec![Target::Endpoint(spec.clone())],
        system_trust: false,
        probe_schedule: Some(schedule.clone()),
        ..ScanOptions::default()
    }
}

fn endpoint_problems(inventory: &certvigil_core::inventory::Inventory) -> usize {
    inventory
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::Endpoint)
        .count()
}

#[test]
fn endpoints_are_probed_on_their_own_interval() {
    let schedule = Arc::new(ProbeSchedule::new());

    let (server, connections) = Listener::garbage_counted(NOT_TLS);
    let mut hourly = EndpointSpec::new("127.0.0.1", server.port);
    hourly.timeout = Duration::from_secs(5);
    hourly.interval = Some(Duration::from_secs(3600));
    for _ in 0..3 {
        let inventory = scan(&options(&hourly, &schedule));
        assert_eq!(endpoint_problems(&inventory), 1, "reported at every scan");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1, "probed once an hour");

    let (server, connections) = Listener::garbage_counted(NOT_TLS);
    let mut every_scan = EndpointSpec::new("127.0.0.1", server.port);
    every_scan.timeout = Duration::from_secs(5);
    for _ in 0..3 {
        scan(&options(&every_scan, &schedule));
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        3,
        "no interval: every scan"
    );

    let (server, connections) = Listener::garbage_counted(NOT_TLS);
    let mut soon = EndpointSpec::new("127.0.0.1", server.port);
    soon.timeout = Duration::from_secs(5);
    soon.interval = Some(Duration::from_secs(1));
    scan(&options(&soon, &schedule));
    std::thread::sleep(Duration::from_millis(1100));
    scan(&options(&soon, &schedule));
    assert_eq!(
        connections.load(Ordering::SeqCst),
        2,
        "due again after its interval"
    );
}
