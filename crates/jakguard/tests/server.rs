//! The CDS Hooks service over a real socket: discovery, the three hooks with realistic
//! prefetch, fetching missing data from a FHIR server, feedback stored durably, JWT
//! enforcement, CORS, limits, and the HL7 validator's request/response vectors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::routing::get;
use jakguard::config::{Config, Flags, TrustedFile};
use jakguard::server::cds::{request_problems, response_problems, response_problems_strict};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example(name: &str) -> Value {
    let text =
        std::fs::read_to_string(root().join("examples/cds-hooks").join(name)).expect("example");
    serde_json::from_str(&text).expect("json")
}

struct Server {
    base: String,
    client: reqwest::Client,
    state: Arc<jakguard::server::AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    async fn start(name: &str, trusted: Vec<TrustedFile>) -> Server {
        Server::start_with(name, trusted, |_| {}).await
    }

    async fn start_with(
        name: &str,
        trusted: Vec<TrustedFile>,
        tweak: impl FnOnce(&mut Config),
    ) -> Server {
        let dir =
            std::env::temp_dir().join(format!("jakguard-server-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let flags = Flags {
            listen: Some(addr.to_string()),
            db: Some(dir.join("t.db")),
            public_url: None,
            dev_insecure: false,
        };
        let mut config = Config::build(None, &flags).unwrap();
        config.auth.trusted = trusted;
        config.max_body_bytes = 4 * 1024 * 1024;
        tweak(&mut config);
        let kb = jakguard::load_knowledge(None).unwrap();
        let as_of = chrono::NaiveDate::from_ymd_opt(2026, 11, 27);
        let state = jakguard::serve::state(kb, config, as_of).await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let s = Arc::clone(&state);
        let task = tokio::spawn(async move {
            jakguard::server::run(listener, s, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Server {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            state,
            stop: Some(tx),
            task: Some(task),
        }
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value, reqwest::header::HeaderMap) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            headers,
        )
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }
}

fn response_schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("docs/cds-hooks-response.schema.json")).unwrap();
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
}

fn assert_valid_response(v: &Value) {
    let p = response_problems_strict(v);
    assert!(p.is_empty(), "response problems: {p:?}\n{v:#}");
    let schema = response_schema();
    let errors: Vec<String> = schema
        .iter_errors(v)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "schema: {errors:?}");
}

#[tokio::test]
async fn discovery_lists_three_services_with_knowledge_driven_prefetch() {
    let s = Server::start("discovery", vec![]).await;
    let r = s
        .client
        .get(format!("{}/cds-services", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("x-jakguard-security").is_some(),
        "insecure mode is announced in every response"
    );
    let v: Value = r.json().await.unwrap();
    let services = v["services"].as_array().unwrap();
    let hooks: Vec<&str> = services
        .iter()
        .map(|s| s["hook"].as_str().unwrap())
        .collect();
    assert_eq!(hooks, vec!["order-select", "order-sign", "patient-view"]);
    for svc in services {
        assert!(svc["description"].as_str().unwrap().len() > 20);
        assert_eq!(
            svc["prefetch"]["medicationRequests"],
            "MedicationRequest?patient={{context.patientId}}"
        );
        let obs = svc["prefetch"]["observations"].as_str().unwrap();
        for code in [
            "http://loinc.org|751-8",
            "http://loinc.org|731-0",
            "http://loinc.org|718-7",
            "http://loinc.org|71773-6",
        ] {
            assert!(obs.contains(code), "{code} missing from {obs}");
        }
        assert_eq!(svc["prefetch"]["patient"], "Patient/{{context.patientId}}");
    }
    s.stop().await;
}

#[tokio::test]
async fn order_sign_gives_a_cited_card_with_a_dose_change_suggestion() {
    let s = Server::start("sign", vec![]).await;
    let (status, v, _) = s
        .post(
            "/cds-services/jakguard-order-sign",
            &example("order-sign-tofacitinib.json"),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_valid_response(&v);
    let cards = v["cards"].as_array().unwrap();
    assert_eq!(cards.len(), 1);
    let c = &cards[0];
    assert!(
        c["summary"]
            .as_str()
            .unwrap()
            .starts_with("Tofacitinib: start with caution"),
        "{}",
        c["summary"]
    );
    assert_eq!(c["indicator"], "warning");
    let detail = c["detail"].as_str().unwrap();
    assert!(
        detail.contains("XELJANZ 5 mg once daily"),
        "moderate renal impairment: {detail}"
    );
    assert!(detail.contains("XELJANZ USPI"), "cited: {detail}");
    let labels: Vec<&str> = c["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["label"].as_str().unwrap())
        .collect();
    assert!(
        labels
            .iter()
            .any(|l| l.starts_with("Change to XELJANZ 5 mg once daily")),
        "{labels:?}"
    );
    let change = c["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["label"].as_str().unwrap().starts_with("Change"))
        .unwrap();
    assert_eq!(change["actions"][0]["type"], "delete");
    assert_eq!(
        change["actions"][0]["resourceId"],
        "MedicationRequest/draft-1"
    );
    assert_eq!(
        change["actions"][1]["resource"]["dosageInstruction"][0]["text"],
        "XELJANZ 5 mg once daily (patients on XELJANZ XR switch to XELJANZ 5 mg tablets once daily)"
    );
    assert!(!c["overrideReasons"].as_array().unwrap().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn order_select_with_missing_labs_suggests_the_orders() {
    let s = Server::start("select", vec![]).await;
    let (status, v, _) = s
        .post(
            "/cds-services/jakguard-order-select",
            &example("order-select-upadacitinib-missing-labs.json"),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_valid_response(&v);
    let c = &v["cards"][0];
    assert!(
        c["summary"]
            .as_str()
            .unwrap()
            .starts_with("Upadacitinib: data needed before starting"),
        "{}",
        c["summary"]
    );
    assert_eq!(c["indicator"], "warning");
    assert_eq!(c["selectionBehavior"], "any");
    let creates: Vec<&Value> = c["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["actions"].as_array().unwrap())
        .filter(|a| a["type"] == "create")
        .collect();
    let codes: Vec<&str> = creates
        .iter()
        .filter_map(|a| a["resource"]["code"]["coding"][0]["code"].as_str())
        .collect();
    assert!(codes.contains(&"71773-6"), "IGRA ordered: {codes:?}");
    assert!(
        creates
            .iter()
            .all(|a| a["resource"]["resourceType"] == "ServiceRequest"
                && a["resource"]["subject"]["reference"] == "Patient/p1")
    );
    s.stop().await;
}

#[tokio::test]
async fn patient_view_on_treatment_says_hold_when_neutrophils_persist_low() {
    let s = Server::start("view", vec![]).await;
    let (status, v, _) = s
        .post(
            "/cds-services/jakguard-patient-view",
            &example("patient-view-on-tofacitinib.json"),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_valid_response(&v);
    let cards = v["cards"].as_array().unwrap();
    assert_eq!(cards.len(), 1, "only the drug the patient takes: {v}");
    assert_eq!(cards[0]["indicator"], "critical");
    assert!(
        cards[0]["summary"]
            .as_str()
            .unwrap()
            .starts_with("Tofacitinib: hold or stop")
    );

    // The order on file names its drug by a Medication resource, which the EHR gives in the
    // same searchset Bundle (an `_include`): the same card.
    let mut by_reference = example("patient-view-on-tofacitinib.json");
    let bundle = &mut by_reference["prefetch"]["medicationRequests"];
    let order = &mut bundle["entry"][0]["resource"];
    let code = order["medicationCodeableConcept"].take();
    order
        .as_object_mut()
        .unwrap()
        .remove("medicationCodeableConcept");
    order["medicationReference"] = json!({"reference": "Medication/tofa-5"});
    let medication = json!({"resourceType": "Medication", "id": "tofa-5", "code": code});
    bundle["entry"].as_array_mut().unwrap().push(json!({
        "fullUrl": "http://ehr.example/fhir/Medication/tofa-5",
        "resource": medication,
        "search": {"mode": "include"}
    }));
    let (status, with_include, _) = s
        .post("/cds-services/jakguard-patient-view", &by_reference)
        .await;
    assert_eq!(status, 200, "{with_include}");
    assert_eq!(with_include["cards"][0]["summary"], cards[0]["summary"]);
    // Without it, and without a FHIR server to read it from, the drug is unknown (the record
    // says so as an input issue) and patient-view has nothing to say about it.
    bundle_without_include(&mut by_reference);
    let (status, without, _) = s
        .post("/cds-services/jakguard-patient-view", &by_reference)
        .await;
    assert_eq!(status, 200, "{without}");
    assert_eq!(without["cards"], json!([]), "{without}");
    // …unless the EHR's FHIR server can give it: read once, with the EHR's token.
    let (fhir, hits) = fhir_server(
        json!({"resourceType": "Bundle", "entry": [{"resource": medication}]}),
        "view-token",
    )
    .await;
    by_reference["fhirServer"] = json!(fhir);
    by_reference["fhirAuthorization"] = json!({"access_token": "view-token", "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read", "subject": "jakguard"});
    let (status, read, _) = s
        .post("/cds-services/jakguard-patient-view", &by_reference)
        .await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["cards"][0]["summary"], cards[0]["summary"]);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    s.stop().await;
}

fn bundle_without_include(req: &mut Value) {
    req["prefetch"]["medicationRequests"]["entry"]
        .as_array_mut()
        .unwrap()
        .retain(|e| e["search"]["mode"] != "include");
}

#[tokio::test]
async fn a_draft_order_naming_a_contained_medication_is_assessed_the_same() {
    // EHRs often send the drug as a Medication contained in the order. It must be found
    // (whatever its key order), or a JAK inhibitor order would pass without a card.
    let s = Server::start("contained", vec![]).await;
    let plain = example("order-sign-tofacitinib.json");
    let (_, want, _) = s.post("/cds-services/jakguard-order-sign", &plain).await;
    let mut req = plain.clone();
    let order = &mut req["context"]["draftOrders"]["entry"][0]["resource"];
    let concept = order["medicationCodeableConcept"].take();
    let map = order.as_object_mut().unwrap();
    map.remove("medicationCodeableConcept");
    map.insert("medicationReference".into(), json!({"reference": "#med"}));
    map.insert(
        "contained".into(),
        json!([{"id": "med", "code": concept, "resourceType": "Medication"}]),
    );
    let (status, got, _) = s.post("/cds-services/jakguard-order-sign", &req).await;
    assert_eq!(status, 200, "{got}");
    assert_valid_response(&got);
    let summaries = |v: &Value| -> Vec<String> {
        v["cards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["summary"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(!summaries(&want).is_empty());
    assert_eq!(summaries(&got), summaries(&want));

    // A Medication that is not at hand: the reference's display still names the drug (read
    // by name only), so the order is not waved through as "another drug".
    let order = &mut req["context"]["draftOrders"]["entry"][0]["resource"];
    order.as_object_mut().unwrap().remove("contained");
    order["medicationReference"] =
        json!({"reference": "Medication/not-sent", "display": "Xeljanz 5 mg tablet"});
    let (status, by_name, _) = s.post("/cds-services/jakguard-order-sign", &req).await;
    assert_eq!(status, 200, "{by_name}");
    assert_valid_response(&by_name);
    let names = summaries(&by_name);
    assert_eq!(names.len(), 1, "{by_name}");
    assert!(names[0].starts_with("Tofacitinib"), "{names:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_draft_order_for_another_drug_gets_no_cards() {
    let s = Server::start("other", vec![]).await;
    let mut req = example("order-sign-tofacitinib.json");
    req["context"]["draftOrders"]["entry"][0]["resource"]["medicationCodeableConcept"] = json!({"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "197361", "display": "amlodipine 5 MG Oral Tablet"}]});
    req["prefetch"] = json!({});
    let (status, v, _) = s.post("/cds-services/jakguard-order-sign", &req).await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({"cards": []}));
    s.stop().await;
}

#[tokio::test]
async fn missing_prefetch_without_a_fhir_server_is_412() {
    let s = Server::start("412", vec![]).await;
    let mut req = example("order-sign-tofacitinib.json");
    req["prefetch"]
        .as_object_mut()
        .unwrap()
        .remove("observations");
    let (status, v, _) = s.post("/cds-services/jakguard-order-sign", &req).await;
    assert_eq!(status, 412, "{v}");
    assert!(v["error"].as_str().unwrap().contains("observations"));
    // Failed requests are audited too, with a salted hash and never the patient id.
    s.state.store.flush();
    let conn = rusqlite::Connection::open(&s.state.config.db).unwrap();
    let (n, hash): (i64, String) = conn
        .query_row(
            "SELECT COUNT(*), MAX(patient_hash) FROM audit WHERE status = 412",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(n, 1);
    assert_ne!(hash, "p1");
    assert_eq!(hash, s.state.store.patient_hash("p1"));
    s.stop().await;
}

/// A small FHIR server for the tests: serves the resources of an example bundle as searches,
/// and only to the expected bearer token.
async fn fhir_server(
    bundle: Value,
    token: &'static str,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    fhir_server_paged(bundle, token, Next::None).await
}

/// What a search answer's `link[next]` says.
#[derive(Clone)]
enum Next {
    None,
    /// The same search again, on this server: the pages never end.
    Endless,
    /// A page on another server.
    Elsewhere(String),
}

async fn fhir_server_paged(
    bundle: Value,
    token: &'static str,
    next: Next,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    let bundle = Arc::new(bundle);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = move |axum::extract::Path(path): axum::extract::Path<String>,
                        headers: axum::http::HeaderMap| {
        let bundle = Arc::clone(&bundle);
        let h = Arc::clone(&h);
        let next = next.clone();
        async move {
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if headers.get("authorization").and_then(|v| v.to_str().ok())
                != Some(&format!("Bearer {token}"))
            {
                return (
                    axum::http::StatusCode::UNAUTHORIZED,
                    axum::Json(json!({"resourceType": "OperationOutcome"})),
                );
            }
            let ty = path.split('/').next().unwrap_or("").to_string();
            let entries: Vec<Value> = bundle["entry"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["resource"]["resourceType"] == ty.as_str())
                .cloned()
                .collect();
            if path.starts_with("Patient/") {
                return (
                    axum::http::StatusCode::OK,
                    axum::Json(entries[0]["resource"].clone()),
                );
            }
            // A read (`Type/id`) of any other type: that resource, or 404.
            if let Some((_, id)) = path.split_once('/') {
                return match entries.iter().find(|e| e["resource"]["id"] == id) {
                    Some(e) => (
                        axum::http::StatusCode::OK,
                        axum::Json(e["resource"].clone()),
                    ),
                    None => (
                        axum::http::StatusCode::NOT_FOUND,
                        axum::Json(json!({"resourceType": "OperationOutcome"})),
                    ),
                };
            }
            let mut answer =
                json!({"resourceType": "Bundle", "type": "searchset", "entry": entries});
            let next = match next {
                Next::None => None,
                Next::Endless => Some(format!("http://{addr}/fhir/{path}?page=more")),
                Next::Elsewhere(url) => Some(url),
            };
            if let Some(url) = next {
                answer["link"] = json!([{"relation": "next", "url": url}]);
            }
            (axum::http::StatusCode::OK, axum::Json(answer))
        }
    };
    let app = axum::Router::new().route("/fhir/{*path}", get(handler));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/fhir"), hits)
}

#[tokio::test]
async fn a_draft_order_naming_a_medication_elsewhere_finds_it_in_the_prefetch_or_the_fhir_server() {
    let s = Server::start("medref", vec![]).await;
    let plain = example("order-sign-tofacitinib.json");
    let (_, want, _) = s.post("/cds-services/jakguard-order-sign", &plain).await;
    let summaries = |v: &Value| -> Vec<String> {
        v["cards"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| c["summary"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(summaries(&want).len(), 1);

    // The order names `Medication/tofa` and nothing else about its drug.
    let mut req = plain.clone();
    let order = &mut req["context"]["draftOrders"]["entry"][0]["resource"];
    let code = order["medicationCodeableConcept"].take();
    order
        .as_object_mut()
        .unwrap()
        .remove("medicationCodeableConcept");
    order["medicationReference"] = json!({"reference": "Medication/tofa"});
    let medication = json!({"resourceType": "Medication", "id": "tofa", "code": code});

    // 1. The prefetch holds the Medication.
    let mut with_it = req.clone();
    with_it["prefetch"]["medication"] = medication.clone();
    let (status, v, _) = s.post("/cds-services/jakguard-order-sign", &with_it).await;
    assert_eq!(status, 200, "{v}");
    assert_valid_response(&v);
    assert_eq!(summaries(&v), summaries(&want));

    // 2. Only the EHR's FHIR server has it: read with the EHR's token.
    let bundle = json!({"resourceType": "Bundle", "entry": [{"resource": medication}]});
    let (fhir, hits) = fhir_server(bundle.clone(), "med-token").await;
    let mut fetch = req.clone();
    fetch["fhirServer"] = json!(fhir);
    fetch["fhirAuthorization"] = json!({"access_token": "med-token", "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read", "subject": "jakguard"});
    let (status, v, _) = s.post("/cds-services/jakguard-order-sign", &fetch).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(summaries(&v), summaries(&want));
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);

    // 3. The server does not have it: the order may be a JAK inhibitor, so that is an error
    // that says what is missing, not an empty answer.
    let mut absent = fetch.clone();
    absent["context"]["draftOrders"]["entry"][0]["resource"]["medicationReference"] =
        json!({"reference": "Medication/gone"});
    let (status, v, _) = s.post("/cds-services/jakguard-order-sign", &absent).await;
    assert_eq!(status, 412, "{v}");
    assert!(v.to_string().contains("Medication/gone"), "{v}");
    // …unless the reference's display names the drug: then it goes by that name.
    absent["context"]["draftOrders"]["entry"][0]["resource"]["medicationReference"]["display"] =
        json!("Xeljanz 5 mg tablet");
    let (status, v, _) = s.post("/cds-services/jakguard-order-sign", &absent).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(summaries(&v), summaries(&want));
    // Two such drafts for the same drug: both named, one card, still no error.
    let mut twice = absent.clone();
    let entry = twice["context"]["draftOrders"]["entry"][0].clone();
    let mut second = entry.clone();
    second["resource"]["id"] = json!("draft-2");
    twice["context"]["draftOrders"]["entry"] = json!([entry, second]);
    let (status, v, _) = s.post("/cds-services/jakguard-order-sign", &twice).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(summaries(&v), summaries(&want));

    // 4. Nowhere to look: the drug cannot be told, and it may be a JAK inhibitor.
    let (status, v, _) = s.post("/cds-services/jakguard-order-sign", &req).await;
    assert_eq!(status, 412, "{v}");
    assert!(v.to_string().contains("no fhirServer"), "{v}");

    // 5. The Medication is another entry of the draft orders, named by its full URL.
    let mut in_drafts = req.clone();
    in_drafts["context"]["draftOrders"]["entry"][0]["resource"]["medicationReference"] =
        json!({"reference": "urn:uuid:5e0c7b52-1d2f-4d6e-9a0b-2f8f3c1e7a11"});
    in_drafts["context"]["draftOrders"]["entry"]
        .as_array_mut()
        .unwrap()
        .push(json!({"fullUrl": "urn:uuid:5e0c7b52-1d2f-4d6e-9a0b-2f8f3c1e7a11", "resource": medication}));
    let (status, v, _) = s
        .post("/cds-services/jakguard-order-sign", &in_drafts)
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(summaries(&v), summaries(&want));

    // 6. A version of the Medication, and a full URL on the EHR's FHIR server: both read as
    // `Medication/tofa` from that server.
    let base = hits.load(std::sync::atomic::Ordering::SeqCst);
    for (i, reference) in [
        "Medication/tofa/_history/2".to_string(),
        format!("{fhir}/Medication/tofa"),
        format!("{fhir}/Medication/tofa/_history/2"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut named = fetch.clone();
        named["context"]["draftOrders"]["entry"][0]["resource"]["medicationReference"] =
            json!({ "reference": reference });
        let (status, v, _) = s.post("/cds-services/jakguard-order-sign", &named).await;
        assert_eq!(status, 200, "{reference}: {v}");
        assert_eq!(summaries(&v), summaries(&want), "{reference}");
        assert_eq!(
            hits.load(std::sync::atomic::Ordering::SeqCst),
            base + i + 1,
            "{reference}"
        );
    }
    // A full URL on another server (which has the Medication) is not read with the EHR's
    // token: that server is never asked.
    let (other, other_hits) = fhir_server(bundle.clone(), "med-token").await;
    let before = hits.load(std::sync::atomic::Ordering::SeqCst);
    let mut elsewhere = fetch.clone();
    elsewhere["context"]["draftOrders"]["entry"][0]["resource"]["medicationReference"] =
        json!({ "reference": format!("{other}/Medication/tofa") });
    let (status, v, _) = s
        .post("/cds-services/jakguard-order-sign", &elsewhere)
        .await;
    assert_eq!(status, 412, "{v}");
    assert!(v.to_string().contains("not a Medication on the EHR"), "{v}");
    assert_eq!(other_hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), before);

    // 7. The drug members of a draft MedicationRequest do not read: 400, naming them.
    let mut unreadable = plain.clone();
    unreadable["context"]["draftOrders"]["entry"][0]["resource"]["medicationCodeableConcept"]["coding"] =
        json!({"code": "x"});
    let (status, v, _) = s
        .post("/cds-services/jakguard-order-sign", &unreadable)
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("draftOrders.entry[0]"), "{v}");
    // Its other members do not matter for telling its drug.
    let mut odd = plain.clone();
    odd["context"]["draftOrders"]["entry"][0]["resource"]["dosageInstruction"] =
        json!([{"text": 5}]);
    let (status, v, _) = s.post("/cds-services/jakguard-order-sign", &odd).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(summaries(&v), summaries(&want));

    // 8. A contained `#id` the order does not have: 412. A contained Medication without a
    // code names nothing, so the display is the name to go by.
    let mut dangling = req.clone();
    dangling["context"]["draftOrders"]["entry"][0]["resource"]["medicationReference"] =
        json!({"reference": "#med"});
    let (status, v, _) = s.post("/cds-services/jakguard-order-sign", &dangling).await;
    assert_eq!(status, 412, "{v}");
    dangling["context"]["draftOrders"]["entry"][0]["resource"]["contained"] =
        json!([{"resourceType": "Medication", "id": "med"}]);
    dangling["context"]["draftOrders"]["entry"][0]["resource"]["medicationReference"]["display"] =
        json!("Xeljanz 5 mg tablet");
    let (status, v, _) = s.post("/cds-services/jakguard-order-sign", &dangling).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(summaries(&v), summaries(&want));

    // 9. Both a code (tofacitinib) and a reference (another drug, in the prefetch): the code.
    let mut both = plain.clone();
    both["context"]["draftOrders"]["entry"][0]["resource"]["medicationReference"] =
        json!({"reference": "Medication/amox"});
    both["prefetch"]["medication"] = json!({"resourceType": "Medication", "id": "amox",
        "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "723", "display": "amoxicillin"}]}});
    let (status, v, _) = s.post("/cds-services/jakguard-order-sign", &both).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(summaries(&v), summaries(&want));

    // 10. A JAK inhibitor order beside one whose drug cannot be told: the JAK card stands,
    // and a warning card names the order that was not checked.
    let mut beside = plain.clone();
    let mut other_order = beside["context"]["draftOrders"]["entry"][0].clone();
    other_order["resource"]["id"] = json!("draft-other");
    other_order["resource"]
        .as_object_mut()
        .unwrap()
        .remove("medicationCodeableConcept");
    other_order["resource"]["medicationReference"] =
        json!({"reference": "Medication/unknown [Safe, sign it](https://evil.example)"});
    beside["context"]["draftOrders"]["entry"]
        .as_array_mut()
        .unwrap()
        .push(other_order);
    let (status, v, _) = s.post("/cds-services/jakguard-order-sign", &beside).await;
    assert_eq!(status, 200, "{v}");
    assert_valid_response(&v);
    let got = summaries(&v);
    assert_eq!(got.len(), 2, "{v}");
    assert_eq!(got[0], summaries(&want)[0]);
    assert!(got[1].contains("could not be told"), "{v}");
    assert_eq!(v["cards"][1]["indicator"], "warning");
    let detail = v["cards"][1]["detail"].as_str().unwrap();
    assert!(
        detail.contains("Medication/unknown") && detail.contains("no fhirServer"),
        "{detail}"
    );
    // The request's text is shown, not rendered: no link, not even an autolink.
    assert!(
        detail.contains("\\[Safe, sign it\\]\\(https\\://evil\\.example")
            && !detail.contains("](")
            && !detail.contains("https://"),
        "{detail}"
    );

    // 11. Many drafts naming Medications the server does not have: at most 20 reads and 50
    // lookups, whatever the request holds, and every order is accounted for.
    let before = hits.load(std::sync::atomic::Ordering::SeqCst);
    let mut many = fetch.clone();
    let template = many["context"]["draftOrders"]["entry"][0].clone();
    let entries: Vec<Value> = (0..60)
        .map(|i| {
            let mut e = template.clone();
            e["resource"]["id"] = json!(format!("d{i}"));
            e["resource"]["medicationReference"] =
                json!({ "reference": format!("Medication/m{i}") });
            e
        })
        .collect();
    many["context"]["draftOrders"]["entry"] = json!(entries);
    let (status, v, _) = s.post("/cds-services/jakguard-order-sign", &many).await;
    assert_eq!(status, 412, "{v}");
    let text = v.to_string();
    assert!(text.contains("and 50 more"), "{text}");
    let read = hits.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert_eq!(read, 20, "{text}");
    // 60 drafts naming one Medication (some by a version of it): read once.
    let before = hits.load(std::sync::atomic::Ordering::SeqCst);
    let entries: Vec<Value> = (0..60)
        .map(|i| {
            let mut e = template.clone();
            e["resource"]["id"] = json!(format!("d{i}"));
            let reference = if i % 2 == 0 {
                "Medication/tofa".to_string()
            } else {
                format!("Medication/tofa/_history/{i}")
            };
            e["resource"]["medicationReference"] = json!({ "reference": reference });
            e
        })
        .collect();
    many["context"]["draftOrders"]["entry"] = json!(entries);
    let (status, v, _) = s.post("/cds-services/jakguard-order-sign", &many).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(summaries(&v), summaries(&want));
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst) - before, 1);
    s.stop().await;
}

#[tokio::test]
async fn a_sibling_draft_with_an_odd_member_still_counts_for_interactions() {
    // A clarithromycin order (a strong CYP3A4 inhibitor) signed with the tofacitinib order;
    // its dosage text is a number. It must still reach the interaction rule.
    let s = Server::start("sibling", vec![]).await;
    let mut req = example("order-sign-tofacitinib.json");
    let mut sibling = req["context"]["draftOrders"]["entry"][0].clone();
    sibling["resource"]["id"] = json!("clari");
    sibling["resource"]["medicationCodeableConcept"] = json!({"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "21212", "display": "clarithromycin"}], "text": "clarithromycin 500 mg tablet"});
    sibling["resource"]["dosageInstruction"] = json!([{"text": 5}]);
    req["context"]["draftOrders"]["entry"]
        .as_array_mut()
        .unwrap()
        .push(sibling);
    let (status, v, _) = s.post("/cds-services/jakguard-order-sign", &req).await;
    assert_eq!(status, 200, "{v}");
    assert_valid_response(&v);
    let cards = v["cards"].as_array().unwrap();
    assert_eq!(cards.len(), 1, "{v}");
    let detail = cards[0]["detail"].as_str().unwrap();
    assert!(detail.contains("CYP3A4"), "{detail}");
    s.stop().await;
}

#[tokio::test]
async fn missing_prefetch_is_fetched_from_the_fhir_server_with_the_bearer_token() {
    let bundle: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("examples/older-smoker-renal.json")).unwrap(),
    )
    .unwrap();
    let (fhir, hits) = fhir_server(bundle, "secret-token").await;
    let s = Server::start("fetch", vec![]).await;
    let mut req = example("order-sign-tofacitinib.json");
    req["prefetch"] = json!({"patient": req["prefetch"]["patient"].clone()});
    req["fhirServer"] = json!(fhir);
    req["fhirAuthorization"] = json!({"access_token": "secret-token", "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read", "subject": "jakguard"});
    let (status, v, _) = s.post("/cds-services/jakguard-order-sign", &req).await;
    assert_eq!(status, 200, "{v}");
    assert!(
        hits.load(std::sync::atomic::Ordering::SeqCst) >= 6,
        "every missing key fetched"
    );
    assert!(
        v["cards"][0]["summary"]
            .as_str()
            .unwrap()
            .starts_with("Tofacitinib: start with caution"),
        "same answer as with prefetch: {v}"
    );
    // A wrong token: the FHIR server refuses, the service answers 412.
    req["fhirAuthorization"]["access_token"] = json!("wrong");
    let (status, _, _) = s.post("/cds-services/jakguard-order-sign", &req).await;
    assert_eq!(status, 412);
    s.stop().await;
}

#[tokio::test]
async fn search_pages_are_followed_on_the_ehrs_server_only_and_a_cut_is_said() {
    let bundle: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("examples/older-smoker-renal.json")).unwrap(),
    )
    .unwrap();
    let s = Server::start("pages", vec![]).await;
    let mut req = example("order-sign-tofacitinib.json");
    req["prefetch"]
        .as_object_mut()
        .unwrap()
        .remove("observations");
    req["fhirAuthorization"] = json!({"access_token": "page-token", "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read", "subject": "jakguard"});
    let (_, complete, _) = s
        .post(
            "/cds-services/jakguard-order-sign",
            &example("order-sign-tofacitinib.json"),
        )
        .await;
    assert!(!complete.to_string().contains("Incomplete data"));

    // Pages that never end: 50 are read, and every card says the results were cut.
    let (fhir, hits) = fhir_server_paged(bundle.clone(), "page-token", Next::Endless).await;
    req["fhirServer"] = json!(fhir);
    let (status, v, _) = s.post("/cds-services/jakguard-order-sign", &req).await;
    assert_eq!(status, 200, "{v}");
    assert_valid_response(&v);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 50);
    let detail = v["cards"][0]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("**Incomplete data:**") && detail.contains("more than 50 pages"),
        "{detail}"
    );
    let summary = v["cards"][0]["summary"].as_str().unwrap();
    assert!(summary.starts_with("Incomplete data · "), "{summary}");
    assert_ne!(v["cards"][0]["indicator"], "info");
    // patient-view with no JAK inhibitor found in what was read: only labs cut, nothing to
    // say (the patient is not on one, by their orders); the orders cut, a card says the
    // record was not read in full, since the missing part may be the very order.
    let mut view = req.clone();
    view["hook"] = json!("patient-view");
    view["context"]
        .as_object_mut()
        .unwrap()
        .remove("draftOrders");
    let (status, v, _) = s.post("/cds-services/jakguard-patient-view", &view).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["cards"], json!([]), "{v}");
    view["prefetch"]
        .as_object_mut()
        .unwrap()
        .remove("medicationRequests");
    let (status, v, _) = s.post("/cds-services/jakguard-patient-view", &view).await;
    assert_eq!(status, 200, "{v}");
    assert_valid_response(&v);
    assert_eq!(v["cards"].as_array().unwrap().len(), 1, "{v}");
    assert!(
        v["cards"][0]["summary"]
            .as_str()
            .unwrap()
            .starts_with("Incomplete data · JAKGuard could not read"),
        "{v}"
    );
    assert_eq!(v["cards"][0]["indicator"], "warning");

    // A next page on another server is not asked for with the EHR's token.
    let (other, other_hits) = fhir_server(bundle.clone(), "page-token").await;
    let (fhir, hits) = fhir_server_paged(
        bundle,
        "page-token",
        Next::Elsewhere(format!("{other}/Observation?page=2")),
    )
    .await;
    req["fhirServer"] = json!(fhir);
    let (status, v, _) = s.post("/cds-services/jakguard-order-sign", &req).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(other_hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    let detail = v["cards"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("not on that server"), "{detail}");
    s.stop().await;
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let s = Server::start("bad", vec![]).await;
    let req = example("order-sign-tofacitinib.json");
    let (status, v, _) = s.post("/cds-services/jakguard-order-select", &req).await;
    assert_eq!(status, 400);
    assert!(
        v["problems"][0]
            .as_str()
            .unwrap()
            .contains("answers `order-select`"),
        "{v}"
    );
    let (status, _, _) = s.post("/cds-services/no-such-service", &req).await;
    assert_eq!(status, 404);
    let r = s
        .client
        .post(format!("{}/cds-services/jakguard-order-sign", s.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let mut bad = req.clone();
    bad["context"]["patientId"] = json!("Patient/p1");
    let (status, v, _) = s.post("/cds-services/jakguard-order-sign", &bad).await;
    assert_eq!(status, 400);
    assert!(
        v["problems"].to_string().contains("context.patientId"),
        "{v}"
    );
    let big = "x".repeat(5 * 1024 * 1024);
    let r = s
        .client
        .post(format!("{}/cds-services/jakguard-order-sign", s.base))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    s.stop().await;
}

#[tokio::test]
async fn cors_preflight_is_answered_for_allowed_origins() {
    let s = Server::start("cors", vec![]).await;
    let r = s
        .client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/cds-services/jakguard-order-sign", s.base),
        )
        .header("origin", "https://sandbox.cds-hooks.org")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://sandbox.cds-hooks.org"
    );
    let r = s
        .client
        .get(format!("{}/cds-services", s.base))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    s.stop().await;
}

#[tokio::test]
async fn feedback_is_stored_and_reported_per_rule() {
    let s = Server::start("feedback", vec![]).await;
    let (_, v, _) = s
        .post(
            "/cds-services/jakguard-order-sign",
            &example("order-sign-tofacitinib.json"),
        )
        .await;
    let card = v["cards"][0]["uuid"].as_str().unwrap().to_string();
    // Card ids are time-ordered (UUID version 7), so the store's index on them grows at its
    // end instead of at random places: a later card's id sorts after an earlier one's.
    let id = uuid::Uuid::parse_str(&card).unwrap();
    assert_eq!(id.get_version_num(), 7, "{card}");
    std::thread::sleep(std::time::Duration::from_millis(2));
    let (_, later, _) = s
        .post(
            "/cds-services/jakguard-order-sign",
            &example("order-sign-tofacitinib.json"),
        )
        .await;
    let later = later["cards"][0]["uuid"].as_str().unwrap();
    assert!(later > card.as_str(), "{later} after {card}");
    let fb = json!({"feedback": [
        {"card": card, "outcome": "overridden", "overrideReason": {"reason": {"code": "benefit-outweighs-risk", "system": "urn:jakguard:override-reason", "display": "Benefit outweighs the risk for this patient"}, "userComment": "patient name here"}, "outcomeTimestamp": "2026-11-27T10:05:31Z"}
    ]});
    let (status, v, _) = s
        .post("/cds-services/jakguard-order-sign/feedback", &fb)
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, _, _) = s
        .post(
            "/cds-services/jakguard-order-sign/feedback",
            &json!({"feedback": [{"card": "x", "outcome": "maybe", "outcomeTimestamp": "now"}]}),
        )
        .await;
    assert_eq!(status, 400);
    let report = s.state.store.feedback_report().unwrap();
    let smoker = report
        .iter()
        .find(|r| r.rule == "tofa-smoker")
        .expect("rule counted");
    assert_eq!((smoker.cards, smoker.overridden), (2, 1));
    assert_eq!(
        smoker.reasons[0].0,
        "Benefit outweighs the risk for this patient"
    );
    s.stop().await;
}

#[tokio::test]
async fn hl7_validator_vectors_agree_with_our_checks() {
    let dir = std::env::var_os("JAKGUARD_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared"))
        .join("data/cdshooks-vectors");
    if !dir.is_dir() {
        assert!(
            std::env::var("JAKGUARD_REQUIRE_SHARED").is_err(),
            "{} missing in CI",
            dir.display()
        );
        return;
    }
    let mut checked = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        let expected = dir.join("expected").join(format!(
            "R4.{}-logical.json",
            stem.replace(
                "cdshooks-request-order-sign-bad-1",
                "cdshooks-request-bad-1"
            )
        ));
        let Ok(expected) = std::fs::read_to_string(&expected) else {
            continue;
        };
        let expected: Value = serde_json::from_str(&expected).unwrap();
        let validator_errors = expected["issue"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|i| matches!(i["severity"].as_str(), Some("error" | "fatal")))
                    .count()
            })
            .unwrap_or(0);
        let v: Value = serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap();
        let ours = if stem.contains("-request-") {
            match serde_json::from_value::<jakguard::server::cds::HookRequest>(v.clone()) {
                Ok(req) => request_problems(&req),
                Err(e) => vec![e.to_string()],
            }
        } else if stem.contains("-response-") {
            response_problems(&v)
        } else {
            continue;
        };
        assert_eq!(
            ours.is_empty(),
            validator_errors == 0,
            "{name}: the HL7 validator found {validator_errors} error(s); we found {ours:?}"
        );
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} vectors checked");
}

/// The record the careful reading gives: the envelope parsed with each prefetch value as raw
/// text, then every value read on its own (the reading the one-pass reader falls back to).
fn careful_record(body: &[u8]) -> Option<engine::record::Record> {
    let req: jakguard::server::cds::HookRequest = serde_json::from_slice(body).ok()?;
    let mut b = engine::fhir::RecordBuilder::new();
    for (key, raw) in req.prefetch.iter().flatten() {
        if raw.get().trim() != "null" {
            b.add_json(raw.get(), &format!("prefetch.{key}"), None);
        }
    }
    b.finish().ok()
}

fn one_pass_record(body: &[u8]) -> Option<(engine::record::Record, Vec<String>)> {
    let read = jakguard::server::cds::read_request_one_pass(body, |_| true)?;
    let p = read.prefetch?;
    Some((p.builder.finish().ok()?, p.keys))
}

#[test]
fn one_pass_reading_gives_the_same_record_as_the_careful_reading() {
    let mut bodies: Vec<(String, Vec<u8>)> = vec![];
    for dir in [root().join("examples/cds-hooks"), root().join("bench")] {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "json") {
                bodies.push((
                    e.path().display().to_string(),
                    std::fs::read(e.path()).unwrap(),
                ));
            }
        }
    }
    assert!(bodies.len() >= 4);
    let mut compared = 0;
    for (name, body) in &bodies {
        let (fast, keys) = one_pass_record(body).unwrap_or_else(|| panic!("{name}: not read"));
        let careful = careful_record(body).unwrap();
        assert_eq!(format!("{fast:?}"), format!("{careful:?}"), "{name}");
        assert!(fast.resource_count > 0, "{name}: nothing read");
        let v: Value = serde_json::from_slice(body).unwrap();
        let mut expected_keys: Vec<String> =
            v["prefetch"].as_object().unwrap().keys().cloned().collect();
        let mut keys = keys;
        keys.sort();
        expected_keys.sort();
        assert_eq!(keys, expected_keys, "{name}");
        compared += 1;
    }
    assert_eq!(compared, bodies.len());

    // What the one-pass reader does not take, it leaves to the careful reading (`None`),
    // which then explains the problem; it never accepts a request the careful reading
    // rejects. Requests are assembled from raw text: re-serialising a `Value` would sort the
    // members and move every `resourceType` out of first place.
    let good = &bodies[0].1;
    let with_patient = |patient: &str| assemble(good, Some(("patient", patient)), true);
    assert!(
        one_pass_record(with_patient(r#"{"resourceType": "Patient", "id": "p1"}"#).as_bytes())
            .is_some()
    );
    for (what, patient) in [
        (
            "resourceType not first",
            r#"{"id": "p1", "resourceType": "Patient"}"#,
        ),
        ("a value that is not a resource", r#""Patient/p1""#),
        (
            "a type error inside a resource",
            r#"{"resourceType": "Patient", "birthDate": 1980}"#,
        ),
    ] {
        assert!(
            one_pass_record(with_patient(patient).as_bytes()).is_none(),
            "{what}"
        );
    }
    let text = String::from_utf8(good.clone()).unwrap();
    let repeated = text.replacen("\"hook\"", "\"hook\": \"x\", \"hook\"", 1);
    assert!(
        one_pass_record(repeated.as_bytes()).is_none(),
        "a repeated member"
    );
    let missing = text.replacen("\"hookInstance\"", "\"hookInstanceX\"", 1);
    assert!(
        one_pass_record(missing.as_bytes()).is_none(),
        "a required member missing"
    );
    assert!(one_pass_record(b"{\"hook\": ").is_none(), "truncated");

    // `null` prefetch values count as present (the EHR has no data), and a request without
    // prefetch reads as an empty record with every key missing.
    let (_, keys) = one_pass_record(with_patient("null").as_bytes()).unwrap();
    assert!(keys.contains(&"patient".to_string()));
    let (record, keys) = one_pass_record(assemble(good, None, false).as_bytes()).unwrap();
    assert!(keys.is_empty());
    assert_eq!(record.resource_count, 0);
}

/// The request `body` rebuilt from its raw parts, context first, with one prefetch value
/// replaced, or without the prefetch.
fn assemble(body: &[u8], replace: Option<(&str, &str)>, with_prefetch: bool) -> String {
    let req: jakguard::server::cds::HookRequest = serde_json::from_slice(body).unwrap();
    let mut prefetch = vec![];
    for (k, raw) in req.prefetch.iter().flatten() {
        let text = match replace {
            Some((key, t)) if key == k => t,
            _ => raw.get(),
        };
        prefetch.push(format!("{}: {text}", json!(k)));
    }
    let prefetch = if with_prefetch {
        format!(", \"prefetch\": {{{}}}", prefetch.join(", "))
    } else {
        String::new()
    };
    format!(
        "{{\"hook\": {}, \"hookInstance\": {}, \"context\": {}{prefetch}}}",
        json!(req.hook),
        json!(req.hook_instance),
        json!(req.context)
    )
}

/// Truncated and byte-flipped requests: the one-pass reader gives up (`None`) or reads
/// something, and never panics; what it reads the careful reading accepts too.
#[test]
fn the_one_pass_reader_survives_truncated_and_corrupted_requests() {
    let body = std::fs::read(root().join("bench/order-sign-50.json")).unwrap();
    let mut taken = 0;
    for cut in (0..body.len()).step_by(61) {
        if one_pass_record(&body[..cut]).is_some() {
            taken += 1;
        }
    }
    assert_eq!(taken, 0, "a truncated request was read as complete");
    let mut read = 0;
    for (i, pos) in (0..body.len()).step_by(211).enumerate() {
        let mut b = body.clone();
        b[pos] = [b'"', b'{', b']', b'x', 0xff, b'0'][i % 6];
        if let Some((fast, _)) = one_pass_record(&b) {
            let careful = careful_record(&b).expect("the careful reading accepts it too");
            assert_eq!(format!("{fast:?}"), format!("{careful:?}"), "byte {pos}");
            read += 1;
        }
    }
    assert!(read > 0, "some corruptions (inside a string) still read");
}

/// The one-pass reader (simd-json) reads strings with escapes as serde_json does, whether it
/// borrows them or not, and leaves nesting deeper than serde_json allows to the careful reading.
#[test]
fn the_one_pass_reader_agrees_on_escapes_and_depth() {
    let text = std::fs::read_to_string(root().join("bench/order-sign-50.json")).unwrap();
    let escaped = text
        .replace(
            "\"effectiveDateTime\": \"2026-",
            "\"effectiveDateTime\": \"\\u0032026-",
        )
        .replace("\"status\": \"final\"", "\"status\": \"fin\\u0061l\"");
    assert_ne!(escaped, text);
    let (fast, _) = one_pass_record(escaped.as_bytes()).expect("read in one pass");
    let careful = careful_record(escaped.as_bytes()).unwrap();
    assert_eq!(format!("{fast:?}"), format!("{careful:?}"));
    let (plain, _) = one_pass_record(text.as_bytes()).unwrap();
    assert_eq!(format!("{fast:?}"), format!("{plain:?}"));

    let nested = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let deep = text.replacen(
        "\"context\": {",
        &format!("\"context\": {{\"x\": {nested}, "),
        1,
    );
    assert_ne!(deep, text);
    assert!(serde_json::from_str::<Value>(&deep).is_err());
    assert!(one_pass_record(deep.as_bytes()).is_none());
}

/// A draft order for another drug: the one-pass reader skips the prefetch when the context
/// says so, and reads it when the context comes after it (it cannot know in time).
#[test]
fn the_prefetch_is_skipped_only_when_the_context_came_first_and_says_so() {
    let body =
        std::fs::read(root().join("examples/cds-hooks/order-sign-tofacitinib.json")).unwrap();
    let read = jakguard::server::cds::read_request_one_pass(&body, |_| false).unwrap();
    let text = String::from_utf8(body.clone()).unwrap();
    let context_first = text.find("\"context\"").unwrap() < text.find("\"prefetch\"").unwrap();
    assert!(
        context_first,
        "the example writes the context first, as EHRs do"
    );
    assert!(read.prefetch.is_none());
    let read = jakguard::server::cds::read_request_one_pass(&body, |_| true).unwrap();
    assert!(read.prefetch.is_some());
    // Prefetch first: read whatever `wanted` says.
    let context_first = assemble(&body, None, true);
    let (head, prefetch) = context_first.split_once(", \"prefetch\": ").unwrap();
    let reordered = format!(
        "{{\"prefetch\": {}, {}}}",
        prefetch.strip_suffix('}').unwrap(),
        head.strip_prefix('{').unwrap()
    );
    let read =
        jakguard::server::cds::read_request_one_pass(reordered.as_bytes(), |_| false).unwrap();
    assert!(read.prefetch.is_some());
}

// ---------------------------------------------------------------------------------------
// JWT enforcement through the real server (the verifier's own cases are unit tests in
// src/server/auth.rs).
// ---------------------------------------------------------------------------------------

const RS384_PRIVATE: &str = include_str!("fixtures/keys/rs384-private.pem");

fn pem_to_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

fn token(aud: &str, jti: &str) -> String {
    let now = jakguard::server::unix_now();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS384);
    header.kid = Some("test-rs384".into());
    header.typ = Some("JWT".into());
    let claims =
        json!({"iss": "https://ehr.test", "aud": aud, "exp": now + 300, "iat": now, "jti": jti});
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_der(&pem_to_der(RS384_PRIVATE)),
    )
    .unwrap()
}

async fn secured() -> Server {
    let trusted = vec![TrustedFile {
        iss: "https://ehr.test".into(),
        jwks_file: Some(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys/jwks.json"),
        ),
        jwks_url: None,
        jku: None,
    }];
    Server::start(&format!("jwt-{}", uuid::Uuid::new_v4()), trusted).await
}

#[tokio::test]
async fn with_a_trusted_issuer_every_endpoint_needs_a_valid_token() {
    let s = secured().await;
    let url = format!("{}/cds-services/jakguard-order-sign", s.base);
    let req = example("order-sign-tofacitinib.json");
    // No token.
    let r = s.client.post(&url).json(&req).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert!(
        r.headers().get("x-jakguard-security").is_none(),
        "secure mode does not announce insecurity"
    );
    // Discovery too.
    let r = s
        .client
        .get(format!("{}/cds-services", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = s
        .client
        .get(format!("{}/cds-services", s.base))
        .bearer_auth(token(&format!("{}/cds-services", s.base), "d1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A valid token for this endpoint.
    let t = token(&url, "t1");
    let r = s
        .client
        .post(&url)
        .bearer_auth(&t)
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    // Replayed.
    let r = s
        .client
        .post(&url)
        .bearer_auth(&t)
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("used before"),
        "{body}"
    );
    // Another endpoint's audience.
    let r = s
        .client
        .post(&url)
        .bearer_auth(token(
            &format!("{}/cds-services/jakguard-order-select", s.base),
            "t2",
        ))
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Feedback: the feedback URL is the audience.
    let card = v["cards"][0]["uuid"].as_str().unwrap();
    let fb = json!({"feedback": [{"card": card, "outcome": "accepted", "acceptedSuggestions": [{"id": "x"}], "outcomeTimestamp": "2026-11-27T10:05:31Z"}]});
    let r = s
        .client
        .post(format!("{url}/feedback"))
        .bearer_auth(token(&format!("{url}/feedback"), "t3"))
        .json(&fb)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .client
        .post(format!("{url}/feedback"))
        .json(&fb)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    s.stop().await;
}

#[tokio::test]
async fn no_trusted_issuer_on_a_public_address_refuses_to_start() {
    let flags = Flags {
        listen: Some("0.0.0.0:0".into()),
        db: Some(std::env::temp_dir().join(format!("jg-refuse-{}.db", std::process::id()))),
        public_url: None,
        dev_insecure: false,
    };
    let config = Config::build(None, &flags).unwrap();
    let kb = jakguard::load_knowledge(None).unwrap();
    let err = jakguard::serve::state(kb, config, None)
        .await
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("no trusted issuer"), "{err}");
}

/// Starts the real `jakguard serve` binary on a free port with its own database; returns the
/// process, the base URL and the database path once it answers.
async fn spawn_serve(name: &str) -> (std::process::Child, String, PathBuf) {
    let dir = std::env::temp_dir().join(format!("jakguard-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("serve.db");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_jakguard"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--db",
            db.to_str().unwrap(),
            "--as-of",
            "2026-11-27",
        ])
        .current_dir(root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            return (child, base, db);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("server did not start");
}

#[tokio::test]
async fn acknowledged_feedback_survives_the_process_being_killed() {
    let (mut child, base, db) = spawn_serve("kill").await;
    let client = reqwest::Client::new();
    let v: Value = client
        .post(format!("{base}/cds-services/jakguard-order-sign"))
        .json(&example("order-sign-tofacitinib.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let card = v["cards"][0]["uuid"].as_str().unwrap().to_string();
    let fb = json!({"feedback": [{"card": card, "outcome": "overridden", "overrideReason": {"reason": {"code": "already-addressed", "system": "urn:jakguard:override-reason", "display": "Already addressed or ordered"}}, "outcomeTimestamp": "2026-11-27T10:05:31Z"}]});
    let r = client
        .post(format!("{base}/cds-services/jakguard-order-sign/feedback"))
        .json(&fb)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // SIGKILL right after the acknowledgement: no shutdown code runs.
    child.kill().unwrap();
    child.wait().unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let n: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM feedback WHERE card = ?1",
            [&card],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1, "the acknowledged feedback must be on disk");
    let comments: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM feedback WHERE has_comment = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(comments, 0);
}

#[tokio::test]
async fn sigterm_stops_gracefully_and_writes_the_audit() {
    let (mut child, base, db) = spawn_serve("term").await;
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let r = client
            .post(format!("{base}/cds-services/jakguard-order-sign"))
            .json(&example("order-sign-tofacitinib.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 5, "the queued audit rows are written before exit");
}

#[tokio::test]
async fn the_concurrency_limit_is_one_limit_for_every_route() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start_with("concurrency", vec![], |c| c.concurrency_limit = 1).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    // A request whose body has not all arrived keeps its place while the handler waits.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(
        b"POST /cds-services/jakguard-order-sign HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{",
    )
    .await
    .unwrap();
    // A request to another route waits for it: the limit is the server's, not the route's.
    // It is sent again (a fresh connection each time) until one waits, in case the slow request
    // had not reached the server yet; with a limit per route, every one would be answered.
    let mut waiting = None;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut other = Box::pin(
            reqwest::Client::new()
                .get(format!("{}/healthz", server.base))
                .send(),
        );
        if tokio::time::timeout(Duration::from_millis(700), &mut other)
            .await
            .is_err()
        {
            waiting = Some(other);
            break;
        }
    }
    let other = waiting.expect("/healthz waits while the only permit is taken");
    slow.write_all(b"}").await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), other)
        .await
        .expect("answered once the permit was back")
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(slow);
    server.stop().await;
}
