//! What Pebble 2.4 cannot exercise, against an in-process fake ACME CA (HTTPS, JWS bodies
//! decoded but not verified): ARI renewal windows, `replaces` on replacement orders and the
//! `alreadyReplaced` answer, 429 with Retry-After, ACME profiles, and how many newOrder
//! requests one account has in flight at once.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{self, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use certvigil_acme::{AcmeClient, AcmeSettings, ErrorClass, OrderRequest, Solver};
use certvigil_core::renewal::ari_point;
use certvigil_core::{DecodeOptions, decode};
use certvigil_issue::{Identifier, KeyChoice, KeyType};
use certvigil_testutil::servers::Certs;
use serde_json::{Value, json};
use tokio_rustls::TlsAcceptor;

/// A canned answer for the next newOrder request.
enum OrderAnswer {
    RateLimited { retry_after: &'static str },
    AlreadyReplacedIfReplacing,
    Unauthorized,
}

struct Fake {
    base: String,
    nonces: AtomicU64,
    /// The decoded payload of every newOrder request, in order.
    orders: Mutex<Vec<Value>>,
    script: Mutex<VecDeque<OrderAnswer>>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    order_state: Mutex<Value>,
    certificate: Mutex<String>,
    window: (String, String),
    ari_lookups: Mutex<Vec<String>>,
    new_orders_in_flight: AtomicUsize,
    most_new_orders_in_flight: AtomicUsize,
    /// TCP connections accepted, whether or not their TLS handshake succeeded.
    connections: AtomicUsize,
}

type Shared = Arc<Fake>;

/// A JSON body (axum's `Json` needs a feature the workspace does not enable).
struct J(Value);

impl IntoResponse for J {
    fn into_response(self) -> Response {
        ([("content-type", "application/json")], self.0.to_string()).into_response()
    }
}

fn nonce_headers(fake: &Fake) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let n = fake.nonces.fetch_add(1, Ordering::Relaxed);
    headers.insert("replay-nonce", format!("nonce-{n}").parse().unwrap());
    headers.insert("cache-control", "no-store".parse().unwrap());
    headers
}

fn payload(body: &Bytes) -> Value {
    let jws: Value = serde_json::from_slice(body).expect("JWS JSON");
    let encoded = jws["payload"].as_str().unwrap_or_default();
    if encoded.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).expect("base64url payload"))
        .expect("payload JSON")
}

fn problem(fake: &Fake, status: StatusCode, kind: &str, extra: &[(&str, &str)]) -> Response {
    let mut headers = nonce_headers(fake);
    headers.insert("content-type", "application/problem+json".parse().unwrap());
    for (k, v) in extra {
        headers.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let body = json!({
        "type": format!("urn:ietf:params:acme:error:{kind}"),
        "detail": format!("fake CA says {kind}"),
        "status": status.as_u16(),
    });
    (status, headers, body.to_string()).into_response()
}

async fn directory(State(fake): State<Shared>) -> Response {
    let b = &fake.base;
    J(json!({
        "newNonce": format!("{b}/nonce"),
        "newAccount": format!("{b}/account"),
        "newOrder": format!("{b}/order"),
        "revokeCert": format!("{b}/revoke"),
        "keyChange": format!("{b}/key-change"),
        "renewalInfo": format!("{b}/renewal-info"),
        "meta": {"profiles": {"shortlived": "six days", "classic": "90 days"}},
    }))
    .into_response()
}

async fn nonce(State(fake): State<Shared>) -> Response {
    (StatusCode::OK, nonce_headers(&fake)).into_response()
}

async fn account(State(fake): State<Shared>) -> Response {
    let mut headers = nonce_headers(&fake);
    headers.insert(
        "location",
        format!("{}/account/1", fake.base).parse().unwrap(),
    );
    (StatusCode::CREATED, headers, J(json!({"status": "valid"}))).into_response()
}

/// Each newOrder answer takes 50 ms, long enough for concurrent requests to overlap.
async fn new_order(State(fake): State<Shared>, body: Bytes) -> Response {
    let now = fake.new_orders_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    fake.most_new_orders_in_flight
        .fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let response = answer_new_order(&fake, &body);
    fake.new_orders_in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

fn answer_new_order(fake: &Fake, body: &Bytes) -> Response {
    let request = payload(body);
    fake.orders.lock().unwrap().push(request.clone());
    let answer = fake.script.lock().unwrap().pop_front();
    match answer {
        Some(OrderAnswer::RateLimited { retry_after }) => {
            return problem(
                fake,
                StatusCode::TOO_MANY_REQUESTS,
                "rateLimited",
                &[("retry-after", retry_after)],
            );
        }
        Some(OrderAnswer::AlreadyReplacedIfReplacing) if request.get("replaces").is_some() => {
            return problem(fake, StatusCode::CONFLICT, "alreadyReplaced", &[]);
        }
        Some(OrderAnswer::Unauthorized) => {
            return problem(fake, StatusCode::FORBIDDEN, "unauthorized", &[]);
        }
        _ => {}
    }
    let mut state = json!({
        "status": "ready",
        "identifiers": request["identifiers"],
        "authorizations": [],
        "finalize": format!("{}/finalize", fake.base),
    });
    for field in ["replaces", "profile"] {
        if let Some(v) = request.get(field) {
            state[field] = v.clone();
        }
    }
    *fake.order_state.lock().unwrap() = state.clone();
    let mut headers = nonce_headers(fake);
    headers.insert(
        "location",
        format!("{}/order/1", fake.base).parse().unwrap(),
    );
    (StatusCode::CREATED, headers, J(state)).into_response()
}

async fn order(State(fake): State<Shared>) -> Response {
    let state = fake.order_state.lock().unwrap().clone();
    (nonce_headers(&fake), J(state)).into_response()
}

async fn finalize(State(fake): State<Shared>, body: Bytes) -> Response {
    let csr_der = URL_SAFE_NO_PAD
        .decode(payload(&body)["csr"].as_str().unwrap())
        .unwrap();
    let mut csr = rcgen::CertificateSigningRequestParams::from_der(&csr_der.into()).unwrap();
    let now = time::OffsetDateTime::now_utc();
    csr.params.not_before = now - time::Duration::minutes(1);
    csr.params.not_after = now + time::Duration::days(6);
    csr.params.use_authority_key_identifier_extension = true;
    let cert = csr.signed_by(&fake.issuer).unwrap();
    *fake.certificate.lock().unwrap() = cert.pem();
    let mut state = fake.order_state.lock().unwrap();
    state["status"] = json!("valid");
    state["certificate"] = json!(format!("{}/cert/1", fake.base));
    (nonce_headers(&fake), J(state.clone())).into_response()
}

async fn certificate(State(fake): State<Shared>) -> Response {
    let mut headers = nonce_headers(&fake);
    headers.insert(
        "content-type",
        "application/pem-certificate-chain".parse().unwrap(),
    );
    (headers, fake.certificate.lock().unwrap().clone()).into_response()
}

async fn renewal_info(State(fake): State<Shared>, Path(id): Path<String>) -> Response {
    fake.ari_lookups.lock().unwrap().push(id);
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", "21600".parse().unwrap());
    let (start, end) = &fake.window;
    (
        headers,
        J(json!({"suggestedWindow": {"start": start, "end": end}})),
    )
        .into_response()
}

struct Running {
    fake: Shared,
    listener_ca: std::path::PathBuf,
    directory: String,
    _dir: tempfile::TempDir,
}

async fn start(script: Vec<OrderAnswer>) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::new("fake acme listener", dir.path());
    let leaf = certs.local_leaf("localhost");
    let (cert_path, key_path) = certs.write_pair("listener", &leaf, false);
    let listener_ca = certs.write_root();

    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = tcp.local_addr().unwrap();
    let base = format!("https://127.0.0.1:{}", addr.port());

    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let fake = Arc::new(Fake {
        base: base.clone(),
        nonces: AtomicU64::new(0),
        orders: Mutex::default(),
        script: Mutex::new(script.into()),
        issuer: rcgen::Issuer::new(ca_params, ca_key),
        order_state: Mutex::new(Value::Null),
        certificate: Mutex::default(),
        window: (
            "2026-12-01T00:00:00Z".to_owned(),
            "2026-12-03T00:00:00Z".to_owned(),
        ),
        ari_lookups: Mutex::default(),
        new_orders_in_flight: AtomicUsize::new(0),
        most_new_orders_in_flight: AtomicUsize::new(0),
        connections: AtomicUsize::new(0),
    });
    let app = Router::new()
        .route("/dir", get(directory))
        .route("/nonce", get(nonce).head(nonce))
        .route("/account", post(account))
        .route("/order", post(new_order))
        .route("/order/1", post(order))
        .route("/finalize", post(finalize))
        .route("/cert/1", post(certificate))
        .route("/renewal-info/{id}", get(renewal_info))
        .with_state(fake.clone());

    let chain = rustls_pki_types::CertificateDer::pem_file_iter(&cert_path)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(&key_path).unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let counted = fake.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = tcp.accept().await else {
                continue;
            };
            counted.connections.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Running {
        fake,
        listener_ca,
        directory: format!("{base}/dir"),
        _dir: dir,
    }
}

use rustls_pki_types::pem::PemObject;

async fn client(running: &Running, profile: Option<&str>) -> AcmeClient {
    let mut settings = AcmeSettings::new(&running.directory);
    settings.ca_roots = vec![running.listener_ca.clone()];
    settings.profile = profile.map(str::to_owned);
    let account = running._dir.path().join("account.json");
    AcmeClient::connect(settings, &account).await.unwrap()
}

/// The fake's orders are ready at once: no challenge is ever presented.
static NO_CHALLENGES: std::sync::LazyLock<Solver> =
    std::sync::LazyLock::new(|| Solver::Webroot("/nonexistent".into()));

fn request(replaces: Option<Vec<u8>>) -> OrderRequest {
    OrderRequest {
        identifiers: vec![Identifier::parse("fake.certvigil.test")],
        key: KeyChoice::Generate(KeyType::EcdsaP256),
        replaces,
    }
}

fn leaf_der(pem: &str) -> Vec<u8> {
    decode(pem.as_bytes(), &DecodeOptions::default())
        .certs
        .remove(0)
}

#[tokio::test]
async fn ari_window_is_read_and_the_planned_point_lies_inside_it() {
    let running = start(Vec::new()).await;
    let client = client(&running, None).await;
    let outcome = client.issue(&request(None), &NO_CHALLENGES).await.unwrap();
    let window = client
        .renewal_window(&leaf_der(&outcome.issued.leaf_pem))
        .await
        .unwrap()
        .expect("the fake directory offers renewalInfo");
    assert_eq!(window.start, 1_796_083_200, "2026-12-01T00:00:00Z");
    assert_eq!(window.end, 1_796_256_000, "2026-12-03T00:00:00Z");
    let next = window.next_check.duration_since(SystemTime::now()).unwrap();
    assert!(
        next > Duration::from_secs(21_000),
        "Retry-After 21600 s honoured: {next:?}"
    );
    for random in [0.0, 0.37, 0.999] {
        let at = ari_point(window.start, window.end, random);
        assert!((window.start..window.end).contains(&at));
    }
    // The lookup names the certificate as RFC 9773 §4.1 says: base64url(AKI).base64url(serial).
    let lookups = running.fake.ari_lookups.lock().unwrap().clone();
    assert_eq!(lookups.len(), 1);
    let (aki, serial) = lookups[0].split_once('.').unwrap();
    assert!(URL_SAFE_NO_PAD.decode(aki).unwrap().len() >= 8, "{aki}");
    let serial = URL_SAFE_NO_PAD.decode(serial).unwrap();
    let cert = certvigil_core::Certificate::from_der(&leaf_der(&outcome.issued.leaf_pem)).unwrap();
    assert_eq!(
        certvigil_core::cert::hex(&serial).trim_start_matches("00"),
        cert.serial_hex()
            .trim_start_matches("00")
            .to_lowercase()
            .replace(':', "")
    );
}

#[tokio::test]
async fn a_replacement_names_the_old_certificate_and_survives_already_replaced() {
    let running = start(vec![]).await;
    let client = client(&running, Some("shortlived")).await;
    let first = client.issue(&request(None), &NO_CHALLENGES).await.unwrap();
    let old_der = leaf_der(&first.issued.leaf_pem);

    running
        .fake
        .script
        .lock()
        .unwrap()
        .push_back(OrderAnswer::AlreadyReplacedIfReplacing);
    let second = client
        .issue(&request(Some(old_der.clone())), &NO_CHALLENGES)
        .await
        .unwrap();
    assert_ne!(second.leaf.serial_hex(), first.leaf.serial_hex());

    let orders = running.fake.orders.lock().unwrap().clone();
    assert_eq!(orders.len(), 3, "{orders:#?}");
    assert_eq!(
        orders[0]["profile"], "shortlived",
        "the profile goes on every order"
    );
    assert!(orders[0].get("replaces").is_none());
    let replaces = orders[1]["replaces"].as_str().expect("replaces sent");
    let (_, serial) = replaces.split_once('.').unwrap();
    assert!(!serial.is_empty());
    assert!(
        orders[2].get("replaces").is_none(),
        "after alreadyReplaced the order goes out without `replaces`"
    );

    // Without the CA objecting, `replaces` is kept and the order is accepted as a replacement.
    let third = client
        .issue(
            &request(Some(leaf_der(&second.issued.leaf_pem))),
            &NO_CHALLENGES,
        )
        .await;
    assert!(third.is_ok(), "{:?}", third.err());
    let orders = running.fake.orders.lock().unwrap().clone();
    assert!(orders[3].get("replaces").is_some());
}

#[tokio::test]
async fn a_short_rate_limit_is_waited_out_and_a_long_one_is_reported_with_its_time() {
    let running = start(vec![OrderAnswer::RateLimited { retry_after: "1" }]).await;
    let client = client(&running, None).await;
    let started = Instant::now();
    client.issue(&request(None), &NO_CHALLENGES).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After: 1 was honoured: {:?}",
        started.elapsed()
    );

    running
        .fake
        .script
        .lock()
        .unwrap()
        .push_back(OrderAnswer::RateLimited {
            retry_after: "3600",
        });
    let started = Instant::now();
    let err = client
        .issue(&request(None), &NO_CHALLENGES)
        .await
        .expect_err("rate limited");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no hour-long sleep"
    );
    assert_eq!(err.class(), ErrorClass::RateLimited, "{err}");
    let wait = err
        .retry_at()
        .expect("the CA's Retry-After is kept for the scheduler")
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(wait > Duration::from_secs(3590), "{wait:?}");
    assert!(err.to_string().contains("rateLimited"), "{err}");
}

#[tokio::test]
async fn an_unknown_profile_is_a_configuration_error() {
    let running = start(Vec::new()).await;
    let client = client(&running, Some("no-such-profile")).await;
    let err = client
        .issue(&request(None), &NO_CHALLENGES)
        .await
        .expect_err("refused");
    assert_eq!(err.class(), ErrorClass::Configuration, "{err}");
    assert!(
        err.to_string().contains("offered: classic, shortlived"),
        "{err}"
    );
    assert!(
        running.fake.orders.lock().unwrap().is_empty(),
        "nothing was ordered"
    );
}

/// Pebble 2.4.0 deadlocks for good when a newOrder request of an account is in flight with
/// another one or with an authorization fetch, so an account sends them alone; the rest of
/// each issuance still runs concurrently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_has_one_new_order_in_flight_at_a_time() {
    let running = start((0..4).map(|_| OrderAnswer::Unauthorized).collect()).await;
    let client = client(&running, None).await;
    let requests: Vec<OrderRequest> = (0..4).map(|_| request(None)).collect();
    let issuances = requests.iter().map(|r| client.issue(r, &NO_CHALLENGES));
    for outcome in futures_util::future::join_all(issuances).await {
        let err = outcome.expect_err("the fake refuses every order");
        assert!(err.to_string().contains("unauthorized"), "{err}");
    }
    assert_eq!(running.fake.orders.lock().unwrap().len(), 4);
    assert_eq!(
        running
            .fake
            .most_new_orders_in_flight
            .load(Ordering::SeqCst),
        1
    );
}

/// A CA whose HTTPS certificate the configured roots do not trust is a configuration error,
/// reported at once: asking again would only get the same certificate.
#[tokio::test]
async fn an_untrusted_ca_certificate_is_a_configuration_error_and_not_retried() {
    let running = start(Vec::new()).await;
    let other = tempfile::tempdir().unwrap();
    let unrelated_root = Certs::new("unrelated", other.path()).write_root();
    let mut settings = AcmeSettings::new(&running.directory);
    settings.ca_roots = vec![unrelated_root];
    let account = other.path().join("account.json");
    let Err(err) = AcmeClient::connect(settings, &account).await else {
        panic!("connected through an untrusted certificate");
    };
    assert_eq!(err.class(), ErrorClass::Configuration, "{err}");
    assert!(err.to_string().contains("ca_roots"), "{err}");
    assert_eq!(
        running.fake.connections.load(Ordering::SeqCst),
        1,
        "one handshake, no retries"
    );
    assert!(!account.exists());
}
