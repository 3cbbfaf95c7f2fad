//! Kubernetes: kubeconfig files and objects as printed by `kubectl get secret,configmap -o
//! json|yaml`. Only the certificate-bearing parts are extracted; decoding is the core's job.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certvigil_core::inventory::{Location, SourceKind};
use serde_json::Value;

/// Certificate (and key) bytes found inside a kube document.
#[derive(Debug)]
pub struct Entry {
    pub location: Location,
    /// PEM or DER; a TLS secret's certificate and key are concatenated so they are checked
    /// as a pair.
    pub data: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct Extracted {
    pub entries: Vec<Entry>,
    /// Files a kubeconfig refers to: (certificate, key) pairs and CA files.
    pub referenced: Vec<(PathBuf, Option<PathBuf>)>,
    pub errors: Vec<(Location, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocumentKind {
    Kubeconfig,
    Objects,
}

/// Cheap sniff before a full parse: JSON objects, or YAML with a kube-style top-level key.
pub fn looks_like_kube(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(64 * 1024)];
    let Ok(text) = std::str::from_utf8(head) else {
        return false;
    };
    let trimmed = text.trim_start();
    trimmed.starts_with('{')
        || text.lines().any(|l| {
            l.starts_with("apiVersion:") || l.starts_with("kind:") || l.starts_with("clusters:")
        })
}

/// Parses JSON or (multi-document) YAML into values. `None` when the text is neither.
pub fn parse_documents(text: &str) -> Option<Vec<Value>> {
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        return Some(vec![value]);
    }
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        match serde::Deserialize::deserialize(doc) {
            Ok(Value::Null) => {}
            Ok(value) => docs.push(value),
            Err(_) => return None,
        }
    }
    if docs.is_empty() { None } else { Some(docs) }
}

/// What kind of kube document this is, if any.
pub fn classify(doc: &Value) -> Option<DocumentKind> {
    let obj = doc.as_object()?;
    if obj.contains_key("clusters") || obj.contains_key("users") {
        return Some(DocumentKind::Kubeconfig);
    }
    if obj.contains_key("items") || obj.get("kind").is_some_and(Value::is_string) {
        return Some(DocumentKind::Objects);
    }
    None
}

pub fn extract_kubeconfig(doc: &Value, path: &str) -> Extracted {
    let mut out = Extracted::default();
    let base = Path::new(path).parent().unwrap_or(Path::new("."));
    let resolve = |p: &str| {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let location = |detail: String| Location::new(SourceKind::Kubeconfig, path).with_detail(detail);

    for cluster in doc
        .get("clusters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = cluster.get("name").and_then(Value::as_str).unwrap_or("?");
        let Some(spec) = cluster.get("cluster") else {
            continue;
        };
        let detail = format!("clusters[{name}].certificate-authority-data");
        if let Some(data) = spec
            .get("certificate-authority-data")
            .and_then(Value::as_str)
        {
            match STANDARD.decode(data.trim()) {
                Ok(bytes) => out.entries.push(Entry {
                    location: location(detail),
                    data: bytes,
                }),
                Err(e) => out
                    .errors
                    .push((location(detail), format!("invalid base64: {e}"))),
            }
        }
        if let Some(file) = spec.get("certificate-authority").and_then(Value::as_str) {
            out.referenced.push((resolve(file), None));
        }
    }
    for user in doc
        .get("users")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = user.get("name").and_then(Value::as_str).unwrap_or("?");
        let Some(spec) = user.get("user") else {
            continue;
        };
        let detail = format!("users[{name}].client-certificate-data");
        if let Some(cert) = spec.get("client-certificate-data").and_then(Value::as_str) {
            let key = spec
                .get("client-key-data")
                .and_then(Value::as_str)
                .unwrap_or("");
            match (STANDARD.decode(cert.trim()), STANDARD.decode(key.trim())) {
                (Ok(mut bytes), Ok(key)) => {
                    bytes.push(b'\n');
                    bytes.extend(key);
                    out.entries.push(Entry {
                        location: location(detail),
                        data: bytes,
                    });
                }
                (Err(e), _) | (_, Err(e)) => {
                    out.errors
                        .push((location(detail), format!("invalid base64: {e}")));
                }
            }
        }
        if let Some(cert) = spec.get("client-certificate").and_then(Value::as_str) {
            let key = spec.get("client-key").and_then(Value::as_str).map(&resolve);
            out.referenced.push((resolve(cert), key));
        }
    }
    out
}

/// Secrets and ConfigMaps, from a `List`, a single object, or several YAML documents.
pub fn extract_objects(doc: &Value, origin: &str, out: &mut Extracted) {
    if let Some(items) = doc.get("items").and_then(Value::as_array) {
        for item in items {
            extract_objects(item, origin, out);
        }
        return;
    }
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    let meta = doc.get("metadata");
    let field = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_str);
    let namespace = field("namespace").unwrap_or("default");
    let name = field("name").unwrap_or("?");
    let object = format!("{}/{namespace}/{name}", kind.to_lowercase());
    let location = |key: &str| {
        Location::new(SourceKind::Kube, object.as_str()).with_detail(format!("{origin}: {key}"))
    };
    match kind {
        "Secret" => {
            let Some(data) = doc.get("data").and_then(Value::as_object) else {
                return;
            };
            let mut decoded = Vec::new();
            for (key, value) in data {
                let Some(text) = value.as_str() else { continue };
                match STANDARD.decode(text.trim()) {
                    Ok(bytes) => decoded.push((key.as_str(), bytes)),
                    Err(e) => out
                        .errors
                        .push((location(key), format!("invalid base64: {e}"))),
                }
            }
            let tls_key = decoded
                .iter()
                .find(|(k, _)| *k == "tls.key")
                .map(|(_, v)| v.clone());
            for (key, mut bytes) in decoded {
                if key == "tls.key" || !holds_certificate(&bytes, key) {
                    continue;
                }
                if key == "tls.crt"
                    && let Some(tls_key) = &tls_key
                {
                    bytes.push(b'\n');
                    bytes.extend_from_slice(tls_key);
                }
                out.entries.push(Entry {
                    location: location(key),
                    data: bytes,
                });
            }
        }
        "ConfigMap" => {
            for (key, value) in doc
                .get("data")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                if let Some(text) = value.as_str()
                    && text.contains("-----BEGIN CERTIFICATE")
                {
                    out.entries.push(Entry {
                        location: location(key),
                        data: text.into(),
                    });
                }
            }
            let binary = doc.get("binaryData").and_then(Value::as_object);
            for (key, value) in binary.into_iter().flatten() {
                let Some(text) = value.as_str() else { continue };
                if let Ok(bytes) = STANDARD.decode(text.trim())
                    && holds_certificate(&bytes, key)
                {
                    out.entries.push(Entry {
                        location: location(key),
                        data: bytes,
                    });
                }
            }
        }
        _ => {}
    }
}

/// PEM with a certificate, or DER under a key name that says certificate.
fn holds_certificate(bytes: &[u8], key: &str) -> bool {
    let pem = bytes
        .windows(17)
        .any(|w| w == b"BEGIN CERTIFICATE" || w == b"BEGIN TRUSTED CER");
    pem || (bytes.first() == Some(&0x30)
        && [".crt", ".der", ".cer"]
            .iter()
            .any(|ext| key.ends_with(ext)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tls_secret_and_configmap_bundle() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n";
        let b64 = STANDARD.encode(pem);
        let json = format!(
            r#"{{"kind":"List","items":[
              {{"kind":"Secret","metadata":{{"namespace":"ns","name":"web"}},
                "type":"kubernetes.io/tls","data":{{"tls.crt":"{b64}","tls.key":"{}","other":"aGk="}}}},
              {{"kind":"ConfigMap","metadata":{{"namespace":"kube-system","name":"root-ca"}},
                "data":{{"ca.crt":{pem:?},"note":"hello"}}}}]}}"#,
            STANDARD.encode("-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n")
        );
        let docs = parse_documents(&json).unwrap();
        assert_eq!(classify(&docs[0]), Some(DocumentKind::Objects));
        let mut out = Extracted::default();
        extract_objects(&docs[0], "stdin", &mut out);
        assert_eq!(out.entries.len(), 2);
        assert_eq!(&*out.entries[0].location.name, "secret/ns/web");
        assert!(String::from_utf8_lossy(&out.entries[0].data).contains("PRIVATE KEY"));
        assert_eq!(
            &*out.entries[1].location.name,
            "configmap/kube-system/root-ca"
        );
    }

    #[test]
    fn yaml_multi_document_and_kubeconfig() {
        let yaml = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    \
                    certificate-authority: ca.crt\nusers:\n- name: u\n  user:\n    \
                    client-certificate: /abs/u.crt\n    client-key: u.key\n";
        let docs = parse_documents(yaml).unwrap();
        assert_eq!(classify(&docs[0]), Some(DocumentKind::Kubeconfig));
        let out = extract_kubeconfig(&docs[0], "/home/me/.kube/config");
        assert_eq!(out.referenced[0].0, Path::new("/home/me/.kube/ca.crt"));
        assert_eq!(out.referenced[1].0, Path::new("/abs/u.crt"));
        assert_eq!(
            out.referenced[1].1.as_deref(),
            Some(Path::new("/home/me/.kube/u.key"))
        );
        assert!(parse_documents("a: [unclosed").is_none());
    }
}
