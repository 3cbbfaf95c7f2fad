//! docs/metrics.md lists exactly the families the code emits, with the same type and help.

use certvigil_report::prom::FAMILIES;

#[test]
fn metrics_doc_matches_the_code() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/metrics.md"
    ))
    .expect("docs/metrics.md");
    let documented: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `certvigil_"))
        .filter_map(|l| l.split('`').next())
        .collect();
    let mut in_code: Vec<String> = FAMILIES
        .iter()
        .map(|(n, _, _)| n.trim_start_matches("certvigil_").to_owned())
        .collect();
    let mut documented: Vec<String> = documented.into_iter().map(str::to_owned).collect();
    in_code.sort();
    documented.sort();
    assert_eq!(
        documented, in_code,
        "docs/metrics.md and prom::FAMILIES disagree"
    );
    for (name, kind, help) in FAMILIES {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}`")))
            .unwrap();
        assert!(
            row.contains(&format!("| {kind} |")),
            "{name}: type {kind} not documented"
        );
        assert!(
            row.contains(help),
            "{name}: help text differs from the code"
        );
    }
}
