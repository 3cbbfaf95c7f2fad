//! The Prometheus alerting rules in deploy/prometheus: valid for promtool, unit-tested, every
//! alert with a runbook section and with firing and quiet test cases, and only on metric
//! families certvigil emits.
//!
//! promtool comes with the Debian package `prometheus` (scripts/install-deps); a missing
//! promtool fails these tests rather than skipping them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;

const RULES: &str = "deploy/prometheus/certvigil-alerts.yml";
const RULE_TESTS: &str = "deploy/prometheus/certvigil-alerts.test.yml";
const RUNBOOKS: &str = "docs/runbooks.md";
const RUNBOOK_URL: &str = "https://github.com/certvigil/certvigil/blob/main/docs/runbooks.md#";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_yaml_ng::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs promtool in the workspace root and asserts it succeeded, showing all it said if not.
fn promtool(args: &[&str]) {
    let output = match Command::new("promtool")
        .args(args)
        .current_dir(root())
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "promtool is not installed: install the Debian package prometheus \
             (scripts/install-deps does)"
        ),
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    assert!(
        output.status.success(),
        "promtool {} failed ({}):\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every alerting rule of the file (an alert may have several rules, e.g. per severity).
fn alert_rules() -> Vec<Value> {
    let rules = yaml(RULES);
    let groups = rules["groups"].as_sequence().expect("groups");
    assert_eq!(groups.len(), 1, "one rule group");
    assert_eq!(groups[0]["name"].as_str(), Some("certvigil"));
    let alerts: Vec<Value> = groups[0]["rules"]
        .as_sequence()
        .expect("rules")
        .iter()
        .filter(|r| r.get("alert").is_some())
        .cloned()
        .collect();
    assert!(!alerts.is_empty(), "{RULES} has no alerts");
    alerts
}

fn alert_names() -> BTreeSet<String> {
    alert_rules()
        .iter()
        .map(|r| r["alert"].as_str().expect("alert name").to_owned())
        .collect()
}

/// GitHub's anchor for a Markdown heading: lowercase, punctuation dropped, spaces to dashes.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Anchors of the headings of a Markdown file, outside fenced code blocks (where `#` starts
/// shell comments).
fn heading_anchors(markdown: &str) -> BTreeSet<String> {
    let mut in_fence = false;
    let mut anchors = BTreeSet::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence && line.starts_with('#') {
            let text = line.trim_start_matches('#');
            if text.starts_with(' ') {
                anchors.insert(anchor(text));
            }
        }
    }
    anchors
}

#[test]
fn promtool_checks_the_rules() {
    promtool(&["check", "rules", RULES]);
}

#[test]
fn promtool_unit_tests_pass() {
    promtool(&["test", "rules", RULE_TESTS]);
}

#[test]
fn every_alert_has_severity_annotations_and_a_runbook_section() {
    let anchors = heading_anchors(&read(RUNBOOKS));
    for rule in alert_rules() {
        let name = rule["alert"].as_str().unwrap();
        let severity = rule["labels"]["severity"].as_str();
        assert!(
            matches!(severity, Some("warning" | "critical")),
            "{name}: severity label is {severity:?}, not warning or critical"
        );
        for key in ["summary", "description"] {
            let text = rule["annotations"][key].as_str().unwrap_or("");
            assert!(!text.trim().is_empty(), "{name}: no {key} annotation");
        }
        let url = rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no runbook_url annotation"));
        let fragment = url
            .strip_prefix(RUNBOOK_URL)
            .unwrap_or_else(|| panic!("{name}: runbook_url {url} is not under {RUNBOOK_URL}"));
        assert_eq!(
            fragment,
            name.to_lowercase(),
            "{name}: the runbook anchor is the lowercase alert name"
        );
        assert!(
            anchors.contains(fragment),
            "{name}: {RUNBOOKS} has no heading with anchor #{fragment} (it has {anchors:?})"
        );
    }
}

#[test]
fn every_alert_is_tested_firing_and_quiet() {
    let tests = yaml(RULE_TESTS);
    assert_eq!(
        tests["rule_files"].as_sequence().map(Vec::as_slice),
        Some(&[Value::from("certvigil-alerts.yml")][..]),
        "{RULE_TESTS} must test {RULES}"
    );
    // alert name -> (cases where it fires, cases where it must not)
    let mut cases: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for test in tests["tests"].as_sequence().expect("tests") {
        for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = case["alertname"].as_str().expect("alertname").to_owned();
            let firing = case["exp_alerts"]
                .as_sequence()
                .is_some_and(|alerts| !alerts.is_empty());
            let entry = cases.entry(name).or_default();
            if firing {
                entry.0 += 1;
            } else {
                entry.1 += 1;
            }
        }
    }
    let names = alert_names();
    // A misspelled name would make "exp_alerts: []" pass without testing anything.
    for tested in cases.keys() {
        assert!(
            names.contains(tested),
            "{RULE_TESTS} tests {tested}, which {RULES} does not define"
        );
    }
    for name in &names {
        let (firing, quiet) = cases.get(name).copied().unwrap_or_default();
        assert!(firing > 0, "{RULE_TESTS} never expects {name} to fire");
        assert!(quiet > 0, "{RULE_TESTS} never expects {name} to stay quiet");
    }
}

#[test]
fn alerts_use_only_metric_families_certvigil_emits() {
    let families: BTreeSet<&str> = certvigil_report::prom::FAMILIES
        .iter()
        .map(|(name, _, _)| *name)
        .collect();
    for rule in alert_rules() {
        let name = rule["alert"].as_str().unwrap();
        let expr = rule["expr"].as_str().expect("expr");
        let mut rest = expr;
        while let Some(at) = rest.find("certvigil_") {
            let metric: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                families.contains(metric.as_str()),
                "{name} uses {metric}, which certvigil does not emit"
            );
            rest = &rest[at + metric.len()..];
        }
    }
}

#[test]
fn anchors_follow_github() {
    assert_eq!(anchor(" CertvigilDown"), "certvigildown");
    assert_eq!(
        anchor(" Silencing: safely, please"),
        "silencing-safely-please"
    );
    let md = "# Title\n```sh\n# not a heading\n```\n## CertificateExpired\n#nospace\n";
    assert_eq!(
        heading_anchors(md),
        BTreeSet::from(["title".to_owned(), "certificateexpired".to_owned()])
    );
}
