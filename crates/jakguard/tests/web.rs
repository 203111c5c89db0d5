//! The web app: every route through the router (status codes, security headers, forms with
//! bad input, content derived from the knowledge, no template leftovers), the downloads
//! validated (the QuestionnaireResponse against the Questionnaire, the .ics parsed as RFC
//! 5545), the CDS Hooks card link, and the whole app driven in headless Chromium with axe-core
//! (`tests/browser/run.mjs`, one browser session for every check).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use engine::Knowledge;
use engine::kb::patient::{QuestionType, TriageLevel};
use http_body_util::BodyExt;
use jakguard::config::{Config, Flags};
use jakguard::server::AppState;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tower::ServiceExt;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

async fn state(name: &str) -> Arc<AppState> {
    let dir = std::env::temp_dir().join(format!("jakguard-web-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let flags = Flags {
        listen: Some("127.0.0.1:0".into()),
        db: Some(dir.join("t.db")),
        public_url: Some("http://jakguard.test".into()),
        dev_insecure: false,
    };
    let config = Config::build(None, &flags).unwrap();
    let kb = jakguard::load_knowledge(None).unwrap();
    let as_of = chrono::NaiveDate::from_ymd_opt(2026, 11, 27);
    jakguard::serve::state(kb, config, as_of).await.unwrap()
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn send(app: &Router, req: Request<Body>) -> Resp {
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn get(app: &Router, path: &str) -> Resp {
    send(app, Request::get(path).body(Body::empty()).unwrap()).await
}

fn form_body(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn post_form(app: &Router, path: &str, fields: &[(&str, &str)]) -> Resp {
    send(
        app,
        Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form_body(fields)))
            .unwrap(),
    )
    .await
}

/// The text of an HTML page with tags removed and entities for quotes decoded, for content
/// checks against knowledge text (which askama escapes).
fn text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    let out = out
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">");
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn norm(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What every HTML page must have: the security headers, the landmarks, one h1, the
/// disclaimer, and no template syntax left over.
fn assert_page(path: &str, r: &Resp) {
    let ct = r.headers[header::CONTENT_TYPE].to_str().unwrap();
    assert!(ct.starts_with("text/html"), "{path}: {ct}");
    let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{path}: {csp}"
    );
    assert_eq!(
        r.headers[header::X_CONTENT_TYPE_OPTIONS],
        "nosniff",
        "{path}"
    );
    assert_eq!(r.headers[header::REFERRER_POLICY], "no-referrer", "{path}");
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store", "{path}");
    for leftover in ["{{", "}}", "{%", "%}", "{#"] {
        assert!(
            !r.body.contains(leftover),
            "{path}: template leftover `{leftover}`"
        );
    }
    assert!(r.body.starts_with("<!doctype html>"), "{path}");
    assert!(r.body.contains("<html lang=\"en\">"), "{path}");
    for landmark in ["<header", "<nav", "<main", "<footer"] {
        assert!(r.body.contains(landmark), "{path}: no {landmark}");
    }
    assert_eq!(r.body.matches("<h1").count(), 1, "{path}: one h1");
    assert!(
        r.body.contains("it never replaces it"),
        "{path}: disclaimer"
    );
    assert!(!r.body.contains("<script>"), "{path}: inline script");
}

fn choice_questions(kb: &Knowledge) -> impl Iterator<Item = &engine::kb::patient::Question> {
    kb.patient
        .questions
        .iter()
        .filter(|q| q.kind == QuestionType::Choice)
}

/// Answers "no" (an unflagged option) everywhere except the given questions.
fn answers<'a>(kb: &'a Knowledge, flagged: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut out = vec![];
    for q in choice_questions(kb) {
        match flagged.iter().find(|(l, _)| *l == q.link_id) {
            Some(&(l, v)) => out.push((l, v)),
            None => {
                let no = q.options.iter().find(|o| !o.flag).unwrap();
                out.push((q.link_id.as_str(), no.code.as_str()));
            }
        }
    }
    out
}

#[tokio::test]
async fn every_page_renders_with_security_headers_and_no_template_leftovers() {
    let state = state("pages").await;
    let app = jakguard::server::app(Arc::clone(&state));
    let mut pages = vec![
        "/".to_string(),
        "/patient/before-you-start".into(),
        "/patient/symptoms".into(),
        "/patient/calendar".into(),
        "/clinician".into(),
    ];
    for d in &state.kb.drugs {
        pages.push(format!("/patient/drugs/{}", d.id));
    }
    for p in &pages {
        let r = get(&app, p).await;
        assert_eq!(r.status, StatusCode::OK, "{p}");
        assert_page(p, &r);
    }
    // The home page leads to every part and to each demo patient.
    let home = get(&app, "/").await.body;
    for p in &pages[1..] {
        assert!(home.contains(&format!("href=\"{p}\"")), "home lacks {p}");
    }
    for d in ["as-eligible", "older-smoker-renal", "screening-not-done"] {
        assert!(
            home.contains(&format!("value=\"{d}\"")),
            "home lacks demo {d}"
        );
    }
    // Unknown pages and drugs: an HTML 404 with the same headers.
    for p in ["/nope", "/patient/drugs/baricitinib"] {
        let r = get(&app, p).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{p}");
        assert_page(p, &r);
    }
    // Static files.
    let css = get(&app, "/static/site.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert!(css.body.contains("@media print"));
    // The CDS Hooks CORS policy does not reach the pages.
    let r = send(
        &app,
        Request::get("/")
            .header(header::ORIGIN, "https://sandbox.cds-hooks.org")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(!r.headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    let r = send(
        &app,
        Request::get("/cds-services")
            .header(header::ORIGIN, "https://sandbox.cds-hooks.org")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(r.headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
}

#[tokio::test]
async fn drug_pages_show_every_section_of_the_knowledge() {
    let state = state("drugs").await;
    let app = jakguard::server::app(Arc::clone(&state));
    let kb = &state.kb;
    for page in &kb.patient.drug_pages {
        let d = &kb.drugs[page.drug];
        let body = text(&get(&app, &format!("/patient/drugs/{}", d.id)).await.body);
        for s in &page.sections {
            assert!(body.contains(&norm(&s.heading)), "{}: {}", d.id, s.heading);
            for t in s.text.iter().chain(&s.points) {
                assert!(body.contains(&norm(t)), "{}: missing `{t}`", d.id);
            }
        }
    }
}

#[tokio::test]
async fn questionnaire_summary_highlights_flagged_answers_and_their_tests() {
    let state = state("questionnaire").await;
    let app = jakguard::server::app(Arc::clone(&state));
    let kb = &state.kb;
    let qs = &kb.patient.questions;
    let q = |id: &str| qs.iter().find(|q| q.link_id == id).unwrap();
    let mut fields = answers(kb, &[("smoking", "yes"), ("pregnant", "unsure")]);
    fields.push(("other-medicines", "naproxen 500 mg; vitamin D"));
    let r = post_form(&app, "/patient/before-you-start", &fields).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_page("summary", &r);
    let body = text(&r.body);
    // Flagged answers bring their discussion point; unflagged ones do not.
    assert!(body.contains(&norm(&q("smoking").discuss)));
    assert!(body.contains(&norm(&q("pregnant").discuss)));
    assert!(!body.contains(&norm(&q("heart-stroke").discuss)));
    assert!(body.contains("naproxen 500 mg; vitamin D"));
    // Baseline tests always; a pregnancy test because of the "not sure".
    let qdef = kb.patient.questionnaire.as_ref().unwrap();
    for &t in &qdef.baseline_tests {
        assert!(
            body.contains(&norm(&kb.patient.tests[t].name)),
            "{}",
            kb.patient.tests[t].id
        );
    }
    for &t in &q("pregnant").tests {
        assert!(body.contains(&norm(&kb.patient.tests[t].name)));
    }
    // The printed page lists only what to discuss, and says what the other answers were.
    let no = &choice_questions(kb)
        .next()
        .unwrap()
        .options
        .iter()
        .find(|o| !o.flag)
        .unwrap()
        .display;
    let others = format!(
        "The other {} questions were answered \"{no}\".",
        choice_questions(kb).count() - 2
    );
    assert!(body.contains(&others), "{others}");
    // The answers travel as hidden fields for the download.
    assert!(
        r.body
            .contains("type=\"hidden\" name=\"smoking\" value=\"yes\"")
    );

    // Nothing flagged: no discussion points and no pregnancy test.
    let r = post_form(&app, "/patient/before-you-start", &answers(kb, &[])).await;
    assert_eq!(r.status, StatusCode::OK);
    let body = text(&r.body);
    assert!(!body.contains(&norm(&q("smoking").discuss)));
    for &t in &q("pregnant").tests {
        assert!(!body.contains(&norm(&kb.patient.tests[t].name)));
    }
}

#[tokio::test]
async fn questionnaire_with_bad_input_comes_back_with_the_answers_kept() {
    let state = state("questionnaire-bad").await;
    let app = jakguard::server::app(Arc::clone(&state));
    let kb = &state.kb;
    // One required answer missing, one tampered, a text kept.
    let mut fields: Vec<(&str, &str)> = answers(kb, &[("smoking", "yes")])
        .into_iter()
        .filter(|(l, _)| *l != "diabetes")
        .map(|(l, v)| {
            if l == "shingles" {
                (l, "maybe")
            } else {
                (l, v)
            }
        })
        .collect();
    fields.push(("other-medicines", "ibuprofen <b>400</b>"));
    let r = post_form(&app, "/patient/before-you-start", &fields).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_page("questionnaire errors", &r);
    assert!(r.body.contains("role=\"alert\""));
    assert!(r.body.contains("href=\"#q-diabetes\""));
    assert!(r.body.contains("href=\"#q-shingles\""));
    assert!(r.body.contains("Please check 2 answers"));
    // Kept: the smoking answer is still ticked, the text is still there (escaped).
    assert!(r.body.contains("name=\"smoking\" value=\"yes\" checked"));
    assert!(
        r.body.contains("ibuprofen &#60;b&#62;400&#60;/b&#62;")
            || r.body.contains("ibuprofen &lt;b&gt;400&lt;/b&gt;"),
        "{}",
        r.body
    );
    // The download refuses the same input the same way.
    let r = post_form(&app, "/patient/before-you-start/response", &fields).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // A body that is not a form at all.
    let r = send(
        &app,
        Request::post("/patient/before-you-start")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_page("bad form", &r);
    // An over-long text.
    let long = "x".repeat(2001);
    let mut fields = answers(kb, &[]);
    fields.push(("anything-else", &long));
    let r = post_form(&app, "/patient/before-you-start", &fields).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("href=\"#q-anything-else\""));
}

/// Checks a QuestionnaireResponse against the Questionnaire: FHIR R4 shape, canonical, every
/// linkId defined at the same place, answer types matching item types, answers among the
/// options. Returns the answers by linkId.
fn validate_response(questionnaire: &Value, qr: &Value) -> HashMap<String, Value> {
    assert_eq!(qr["resourceType"], "QuestionnaireResponse");
    assert_eq!(qr["status"], "completed");
    let canonical = format!(
        "{}|{}",
        questionnaire["url"].as_str().unwrap(),
        questionnaire["version"].as_str().unwrap()
    );
    assert_eq!(qr["questionnaire"], canonical.as_str());
    chrono::DateTime::parse_from_rfc3339(qr["authored"].as_str().unwrap()).expect("authored");
    let mut found = HashMap::new();
    fn walk(q_items: &Value, r_items: &Value, found: &mut HashMap<String, Value>) {
        for ri in r_items.as_array().unwrap() {
            let link = ri["linkId"].as_str().unwrap();
            let qi = q_items
                .as_array()
                .unwrap()
                .iter()
                .find(|q| q["linkId"] == link)
                .unwrap_or_else(|| panic!("linkId `{link}` is not in the Questionnaire here"));
            assert_eq!(ri["text"], qi["text"], "{link}");
            let has_answer = ri.get("answer").is_some();
            let has_items = ri.get("item").is_some();
            assert!(
                has_answer != has_items,
                "{link}: answer or items, not both, not neither"
            );
            match qi["type"].as_str().unwrap() {
                "group" => walk(&qi["item"], &ri["item"], found),
                "choice" => {
                    let a = &ri["answer"].as_array().unwrap()[0]["valueCoding"];
                    assert!(
                        qi["answerOption"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|o| o["valueCoding"] == *a),
                        "{link}: {a} is not an answer option"
                    );
                    found.insert(link.to_string(), a["code"].clone());
                }
                "text" | "string" => {
                    let a = &ri["answer"].as_array().unwrap()[0];
                    assert!(a["valueString"].is_string(), "{link}: {a}");
                    found.insert(link.to_string(), a["valueString"].clone());
                }
                other => panic!("{link}: unexpected item type {other}"),
            }
        }
    }
    walk(&questionnaire["item"], &qr["item"], &mut found);
    found
}

#[tokio::test]
async fn questionnaire_and_response_are_fhir_and_agree() {
    let state = state("fhir").await;
    let app = jakguard::server::app(Arc::clone(&state));
    let kb = &state.kb;
    let r = get(&app, "/patient/before-you-start/Questionnaire.json").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/fhir+json")
    );
    let questionnaire: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(questionnaire["resourceType"], "Questionnaire");
    assert_eq!(questionnaire["status"], "active");
    // Every question of the knowledge is an item, once, with its type.
    let mut n = 0;
    for g in questionnaire["item"].as_array().unwrap() {
        assert_eq!(g["type"], "group");
        for i in g["item"].as_array().unwrap() {
            n += 1;
            let q = kb
                .patient
                .questions
                .iter()
                .find(|q| q.link_id == i["linkId"])
                .unwrap();
            assert_eq!(i["required"], q.required);
            assert_eq!(
                i["type"],
                if q.kind == QuestionType::Choice {
                    "choice"
                } else {
                    "text"
                }
            );
        }
    }
    assert_eq!(n, kb.patient.questions.len());

    let mut fields = answers(kb, &[("tuberculosis", "unsure")]);
    fields.push(("other-medicines", "methotrexate"));
    let r = post_form(&app, "/patient/before-you-start/response", &fields).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let qr: Value = serde_json::from_str(&r.body).unwrap();
    let found = validate_response(&questionnaire, &qr);
    assert_eq!(found["tuberculosis"], "unsure");
    assert_eq!(found["other-medicines"], "methotrexate");
    assert!(
        !found.contains_key("anything-else"),
        "unanswered items are left out"
    );
    assert_eq!(found.len(), choice_questions(kb).count() + 1);
}

#[tokio::test]
async fn symptom_checker_gives_the_most_urgent_level_with_why() {
    let state = state("symptoms").await;
    let app = jakguard::server::app(Arc::clone(&state));
    let kb = &state.kb;
    let of = |level: TriageLevel| kb.patient.symptoms.iter().filter(move |s| s.level == level);
    // Every symptom alone gives its own level.
    for s in &kb.patient.symptoms {
        let r = post_form(&app, "/patient/symptoms", &[("symptom", &s.id)]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", s.id);
        assert!(
            r.body
                .contains(&format!("data-level=\"{}\"", s.level.as_str())),
            "{}",
            s.id
        );
        assert!(text(&r.body).contains(&norm(&s.why)), "{}", s.id);
    }
    // Mixed: the most urgent wins, the others are still listed.
    let common = of(TriageLevel::NextVisit).next().unwrap();
    let today = of(TriageLevel::CallToday).next().unwrap();
    let emergency = of(TriageLevel::Emergency).next().unwrap();
    let r = post_form(
        &app,
        "/patient/symptoms",
        &[
            ("symptom", &common.id),
            ("symptom", &emergency.id),
            ("symptom", &today.id),
        ],
    )
    .await;
    assert_page("triage", &r);
    assert!(
        r.body
            .contains("<h1 id=\"answer\" data-level=\"emergency\">")
    );
    let body = text(&r.body);
    for s in [common, today, emergency] {
        assert!(body.contains(&norm(&s.text)), "{}", s.id);
    }
    let r = post_form(
        &app,
        "/patient/symptoms",
        &[("symptom", &common.id), ("symptom", &today.id)],
    )
    .await;
    assert!(r.body.contains("data-level=\"call-today\">"));
    // Nothing ticked, or an unknown symptom: the form again, with the choice kept.
    let r = post_form(&app, "/patient/symptoms", &[]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_page("symptoms empty", &r);
    let r = post_form(
        &app,
        "/patient/symptoms",
        &[("symptom", &today.id), ("symptom", "x")],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains(&format!("value=\"{}\" checked", today.id)));
}

/// Checks an .ics file as RFC 5545 and against the plan: parses, CRLF line ends, lines of at
/// most 75 octets, one all-day event per visit with UID, DTSTAMP and a later DTEND.
fn validate_ics(ics: &str, expected: &[jakguard_visit::Visit]) {
    use icalendar::{Calendar, CalendarComponent, Component, DatePerhapsTime};
    assert!(ics.starts_with("BEGIN:VCALENDAR\r\n"));
    assert!(ics.ends_with("END:VCALENDAR\r\n"));
    for line in ics.split("\r\n") {
        assert!(line.len() <= 75, "line longer than 75 octets: {line}");
        assert!(
            !line.contains('\n') && !line.contains('\r'),
            "bare line break"
        );
    }
    let cal: Calendar = ics.parse().expect("parses as iCalendar");
    let events: Vec<_> = cal
        .components
        .iter()
        .filter_map(|c| match c {
            CalendarComponent::Event(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(events.len(), expected.len());
    let mut uids = std::collections::HashSet::new();
    for (e, v) in events.iter().zip(expected) {
        assert!(uids.insert(e.get_uid().unwrap().to_string()));
        assert!(e.get_timestamp().is_some(), "DTSTAMP");
        let (Some(DatePerhapsTime::Date(start)), Some(DatePerhapsTime::Date(end))) =
            (e.get_start(), e.get_end())
        else {
            panic!("all-day events need VALUE=DATE start and end")
        };
        assert_eq!(start, v.from);
        assert!(end > start, "DTEND must be after DTSTART");
        let summary = e.get_description().unwrap();
        for t in &v.tests {
            assert!(summary.contains(t.as_str()), "{t} not in {summary}");
        }
    }
}

/// The calendar plan as the tests compute it, straight from the engine's monitoring plan.
mod jakguard_visit {
    use chrono::NaiveDate;
    use engine::Knowledge;

    pub struct Visit {
        pub from: NaiveDate,
        pub tests: Vec<String>,
    }

    pub fn expected(kb: &Knowledge, drug: &str, start: NaiveDate) -> Vec<Visit> {
        let d = kb.drug_by_name(drug).unwrap();
        let mut v: Vec<(NaiveDate, String)> = kb
            .monitoring
            .iter()
            .filter(|m| m.drug == d)
            .flat_map(|m| {
                engine::monitoring::plan(m, start)
                    .into_iter()
                    .map(|c| (c.from, m.title.clone()))
            })
            .collect();
        v.sort();
        let mut out: Vec<Visit> = vec![];
        for (date, t) in v {
            match out.last_mut() {
                Some(last) if last.from == date => last.tests.push(t),
                _ => out.push(Visit {
                    from: date,
                    tests: vec![t],
                }),
            }
        }
        out
    }
}

#[tokio::test]
async fn calendar_page_and_ics_follow_the_monitoring_knowledge() {
    let state = state("calendar").await;
    let app = jakguard::server::app(Arc::clone(&state));
    let kb = &state.kb;
    let start = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
    for drug in ["tofacitinib", "upadacitinib"] {
        let expected = jakguard_visit::expected(kb, drug, start);
        assert!(expected.len() >= 3, "{drug}");
        let r = post_form(
            &app,
            "/patient/calendar",
            &[("drug", drug), ("start", "2026-12-01")],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_page("calendar", &r);
        assert_eq!(r.body.matches("<tr><td>").count(), expected.len(), "{drug}");
        let r = post_form(
            &app,
            "/patient/calendar.ics",
            &[("drug", drug), ("start", "2026-12-01")],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            r.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/calendar")
        );
        validate_ics(&r.body, &expected);
    }
    // Bad input: the form again, with what was entered.
    for (drug, start, msg) in [
        ("tofacitinib", "", "Enter the date"),
        ("tofacitinib", "1/12/2026", "year-month-day"),
        ("tofacitinib", "1890-01-01", "between the years"),
        ("aspirin", "2026-12-01", "Choose your medicine"),
    ] {
        let r = post_form(
            &app,
            "/patient/calendar",
            &[("drug", drug), ("start", start)],
        )
        .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{drug} {start}");
        assert_page("calendar error", &r);
        assert!(r.body.contains(msg), "{msg}");
        assert!(r.body.contains(&format!("value=\"{start}\"")));
        let r = post_form(
            &app,
            "/patient/calendar.ics",
            &[("drug", drug), ("start", start)],
        )
        .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
}

fn multipart(fields: &[(&str, Option<&str>, &str)]) -> (String, String) {
    let boundary = "jakguardtestboundary7MA4YWxk";
    let mut body = String::new();
    for (name, file, value) in fields {
        body.push_str(&format!("--{boundary}\r\n"));
        match file {
            Some(f) => body.push_str(&format!(
                "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/json\r\n\r\n"
            )),
            None => body.push_str(&format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n")),
        }
        body.push_str(value);
        body.push_str("\r\n");
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn upload(app: &Router, fields: &[(&str, Option<&str>, &str)]) -> Resp {
    let (ct, body) = multipart(fields);
    send(
        app,
        Request::post("/clinician/assess")
            .header(header::CONTENT_TYPE, ct)
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

fn decision_class(d: engine::kb::Decision) -> &'static str {
    serde_json::to_value(d)
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
        .leak()
}

fn expected_decisions(
    kb: &Knowledge,
    example: &str,
    as_of: chrono::NaiveDate,
) -> Vec<(String, &'static str)> {
    let text = std::fs::read_to_string(root().join("examples").join(example)).unwrap();
    let record = engine::fhir::parse_bundle(&text).unwrap();
    let report = engine::assess(
        kb,
        &record,
        &engine::Options {
            as_of,
            drugs: (0..kb.drugs.len()).collect(),
        },
    );
    report
        .assessments
        .iter()
        .map(|a| (a.drug.clone(), decision_class(a.decision)))
        .collect()
}

#[tokio::test]
async fn clinician_upload_shows_the_engine_decision_and_a_checklist() {
    let state = state("clinician").await;
    let app = jakguard::server::app(Arc::clone(&state));
    let kb = &state.kb;
    let as_of = chrono::NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
    for example in [
        "older-smoker-renal.json",
        "screening-not-done.json",
        "on-tofacitinib-low-neutrophils.json",
    ] {
        let json = std::fs::read_to_string(root().join("examples").join(example)).unwrap();
        let r = upload(
            &app,
            &[
                ("bundle_file", Some(example), &json),
                ("bundle_text", None, ""),
                ("as_of", None, "2026-11-27"),
            ],
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{example}: {}", r.body);
        let location = r.headers[header::LOCATION].to_str().unwrap().to_string();
        assert!(location.starts_with("/clinician/assessment/"), "{location}");
        let page = get(&app, &location).await;
        assert_eq!(page.status, StatusCode::OK);
        assert_page("assessment", &page);
        for (drug, decision) in expected_decisions(kb, example, as_of) {
            assert!(
                page.body.contains(&format!(
                    "data-drug=\"{drug}\" data-decision=\"{decision}\""
                )),
                "{example}: {drug} should be {decision}"
            );
        }
        for s in [
            "Screening before the first dose",
            "Monitoring",
            "Disease activity",
        ] {
            assert!(page.body.contains(s), "{example}: {s}");
        }
        let checklist = get(&app, &format!("{location}/checklist")).await;
        assert_eq!(checklist.status, StatusCode::OK);
        assert_page("checklist", &checklist);
        for item in &kb.screening {
            assert!(
                text(&checklist.body).contains(&norm(&item.title)),
                "{}",
                item.id
            );
        }
    }
    // Pasting works too, and the as-of date is used.
    let json = std::fs::read_to_string(root().join("examples/as-eligible.json")).unwrap();
    let r = upload(
        &app,
        &[("bundle_text", None, &json), ("as_of", None, "2026-11-27")],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let page = get(&app, r.headers[header::LOCATION].to_str().unwrap()).await;
    assert!(page.body.contains("as of 2026-11-27"));

    // Bad input: the form again, the pasted text kept, a clear message.
    let r = upload(
        &app,
        &[
            ("bundle_text", None, "{\"resourceType\": \"Patient\"}"),
            ("as_of", None, ""),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_page("upload error", &r);
    assert!(r.body.contains("could not be used"));
    assert!(
        r.body
            .contains("{&#34;resourceType&#34;: &#34;Patient&#34;}")
            || r.body
                .contains("{&quot;resourceType&quot;: &quot;Patient&quot;}"),
        "{}",
        r.body
    );
    let r = upload(
        &app,
        &[
            ("bundle_text", None, "not json at all"),
            ("as_of", None, ""),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = upload(&app, &[("bundle_text", None, ""), ("as_of", None, "")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("Choose a FHIR Bundle file or paste one"));
    let r = upload(
        &app,
        &[("bundle_text", None, &json), ("as_of", None, "27/11/2026")],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("is not a date"));
    let r = upload(
        &app,
        &[
            ("bundle_file", Some("x.json"), "\u{0}\u{1}garbage"),
            ("bundle_text", None, ""),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = post_form(&app, "/clinician/assess", &[("bundle_text", "{}")]).await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a form that is not multipart"
    );
    assert_page("not multipart", &r);

    // Demo patients, and unknown or malformed links.
    let r = post_form(&app, "/clinician/demo", &[("demo", "as-eligible")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = post_form(&app, "/clinician/demo", &[("demo", "nobody")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    for p in [
        "/clinician/assessment/0123456789abcdef0123456789abcdef",
        "/clinician/assessment/..%2F..%2Fetc",
        "/clinician/assessment/0123456789abcdef0123456789abcdef/checklist",
    ] {
        let r = get(&app, p).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{p}");
        assert_page(p, &r);
    }
}

#[tokio::test]
async fn quick_check_writes_the_values_and_the_rules_read_them() {
    let state = state("quick").await;
    let app = jakguard::server::app(Arc::clone(&state));
    let kb = &state.kb;
    // Neutrophils below 1000 cells/uL: neither drug may be started (both labels).
    let r = post_form(
        &app,
        "/clinician/quick",
        &[
            ("age", "45"),
            ("sex", "male"),
            ("as", "yes"),
            ("tnf-blocker", "yes"),
            ("anc", "800"),
            ("alc", "1500"),
            ("hemoglobin", "13.5"),
            ("as_of", "2026-11-27"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = get(&app, r.headers[header::LOCATION].to_str().unwrap()).await;
    assert_eq!(page.status, StatusCode::OK);
    for d in ["tofacitinib", "upadacitinib"] {
        assert!(
            page.body
                .contains(&format!("data-drug=\"{d}\" data-decision=\"do-not-start\"")),
            "{d}"
        );
    }
    assert!(page.body.contains("Patient quick-check · 45 years · male"));
    // What the form did not ask for is asked for, not assumed normal.
    let igra = kb.labs[kb.lab_by_name("igra").unwrap()].order.clone();
    assert!(text(&page.body).contains(&norm(&igra)), "TB test asked for");

    // Normal counts: the neutrophil rule no longer fires (the value really was read).
    let r = post_form(
        &app,
        "/clinician/quick",
        &[
            ("age", "45"),
            ("sex", "male"),
            ("as", "yes"),
            ("tnf-blocker", "yes"),
            ("anc", "3000"),
            ("as_of", "2026-11-27"),
        ],
    )
    .await;
    let page = get(&app, r.headers[header::LOCATION].to_str().unwrap()).await;
    assert!(
        !page.body.contains("data-decision=\"do-not-start\""),
        "{}",
        text(&page.body)
    );

    // Bad input: the form again with every value kept.
    for (fields, field) in [
        (vec![("age", "12"), ("sex", "male")], "age"),
        (vec![("age", "45")], "sex"),
        (
            vec![
                ("age", "45"),
                ("sex", "female"),
                ("anc", "abc"),
                ("diabetes", "yes"),
            ],
            "anc",
        ),
        (
            vec![("age", "45"), ("sex", "female"), ("as_of", "tomorrow")],
            "quick_as_of",
        ),
    ] {
        let r = post_form(&app, "/clinician/quick", &fields).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{fields:?}");
        assert_page("quick error", &r);
        assert!(
            r.body.contains(&format!("href=\"#qf-{field}\"")),
            "{field}: {}",
            r.body
        );
        for (k, v) in &fields {
            if *v == "yes" {
                assert!(
                    r.body
                        .contains(&format!("name=\"{k}\" value=\"yes\" checked")),
                    "{k}"
                );
            } else if *k != "sex" {
                assert!(r.body.contains(&format!("value=\"{v}\"")), "{k}={v} kept");
            }
        }
    }
}

#[tokio::test]
async fn cds_cards_link_to_the_assessment_view() {
    let state = state("cards").await;
    let app = jakguard::server::app(Arc::clone(&state));
    let req_text =
        std::fs::read_to_string(root().join("examples/cds-hooks/order-sign-tofacitinib.json"))
            .unwrap();
    let r = send(
        &app,
        Request::post("/cds-services/jakguard-order-sign")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(req_text.clone()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    let cards = v["cards"].as_array().unwrap();
    assert!(!cards.is_empty());
    let link = cards[0]["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| {
            l["url"]
                .as_str()
                .unwrap()
                .contains("/clinician/assessment/")
        })
        .expect("a link to the assessment");
    assert_eq!(link["type"], "absolute");
    let url = link["url"].as_str().unwrap();
    let path = url
        .strip_prefix("http://jakguard.test")
        .expect("absolute, from public_url");
    assert!(jakguard::server::cds::response_problems(&v).is_empty());
    let page = get(&app, path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_page("card link", &page);
    // The card's decision and the page's decision agree (the indicator follows the decision).
    for d in &state.kb.drugs {
        assert!(
            page.body.contains(&format!("data-drug=\"{}\"", d.id)),
            "both drugs shown"
        );
    }
    // The page rebuilds the record from the kept request bytes: its decision is the engine's
    // on the request's prefetch and draft order, read independently here.
    let request: Value = serde_json::from_str(&req_text).unwrap();
    let mut b = engine::fhir::RecordBuilder::new();
    for (key, v) in request["prefetch"].as_object().unwrap() {
        if !v.is_null() {
            b.add_json(&v.to_string(), key, None);
        }
    }
    let mut drafts = vec![];
    for e in request["context"]["draftOrders"]["entry"]
        .as_array()
        .unwrap()
    {
        b.add_json(&e["resource"].to_string(), "draft", None);
        drafts.push(format!(
            "MedicationRequest/{}",
            e["resource"]["id"].as_str().unwrap()
        ));
    }
    let mut record = b.finish().unwrap();
    for m in &mut record.medications {
        if drafts.iter().any(|d| *d == m.reference) {
            m.status = Some("draft".into());
        }
    }
    let tofacitinib = state.kb.drug_by_name("tofacitinib").unwrap();
    let report = engine::assess(
        &state.kb,
        &record,
        &engine::Options {
            as_of: state.today(),
            drugs: vec![tofacitinib],
        },
    );
    let decision = serde_json::to_value(report.assessments[0].decision).unwrap();
    let expected = format!(
        "data-drug=\"tofacitinib\" data-decision=\"{}\"",
        decision.as_str().unwrap()
    );
    assert!(page.body.contains(&expected), "{expected}");
}

// ---- the browser ---------------------------------------------------------------------------

fn chromium() -> Option<PathBuf> {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .into_iter()
        .chain(["/usr/bin/chromium", "/usr/bin/chromium-browser"].map(PathBuf::from))
        .find(|p| p.exists())
}

fn node_ready(dir: &Path) -> bool {
    dir.join("node_modules/playwright-core").is_dir()
        && dir.join("node_modules/axe-core").is_dir()
        && std::process::Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_journeys_and_accessibility() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let required = std::env::var("JAKGUARD_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let (Some(chromium), true) = (chromium(), node_ready(&dir)) else {
        let msg = format!(
            "Chromium (/usr/bin/chromium) or node with {}/node_modules (npm ci) is missing",
            dir.display()
        );
        if required {
            panic!("JAKGUARD_REQUIRE_BROWSER=1: {msg}");
        }
        eprintln!(
            "\n*** SKIPPED the browser tests: {msg}. Run .ci/run, or install chromium and `npm ci` in that folder. ***\n"
        );
        return;
    };

    // The real server on port 0.
    let tmp = std::env::temp_dir().join(format!("jakguard-web-{}-browser", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let flags = Flags {
        listen: Some(addr.to_string()),
        db: Some(tmp.join("t.db")),
        public_url: Some(base.clone()),
        dev_insecure: false,
    };
    let config = Config::build(None, &flags).unwrap();
    let kb = jakguard::load_knowledge(None).unwrap();
    let as_of = chrono::NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
    let state = jakguard::serve::state(kb, config, Some(as_of))
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(jakguard::server::run(listener, Arc::clone(&state), async {
        let _ = rx.await;
    }));
    let kb = &state.kb;

    // The plan: expectations from the knowledge and the engine.
    let q = |id: &str| {
        kb.patient
            .questions
            .iter()
            .find(|q| q.link_id == id)
            .unwrap()
    };
    let mut answers: serde_json::Map<String, Value> =
        self::answers(kb, &[("smoking", "yes"), ("hepatitis", "unsure")])
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::from(v)))
            .collect();
    answers.insert(
        "other-medicines".into(),
        "naproxen 500 mg twice a day".into(),
    );
    let mut must = vec![
        norm(&q("smoking").discuss),
        norm(&q("hepatitis").discuss),
        "naproxen 500 mg twice a day".into(),
    ];
    for &t in &kb.patient.questionnaire.as_ref().unwrap().baseline_tests {
        must.push(norm(&kb.patient.tests[t].name));
    }
    let first = |level: TriageLevel| {
        kb.patient
            .symptoms
            .iter()
            .find(|s| s.level == level)
            .unwrap()
    };
    let symptoms: Vec<Value> = TriageLevel::ALL
        .iter()
        .map(|&l| {
            serde_json::json!({
                "pick": [first(l).id],
                "expect": l.as_str(),
                "title": kb.patient.triage_text(l).unwrap().title,
            })
        })
        .collect();
    let example = "older-smoker-renal.json";
    let decisions: serde_json::Map<String, Value> = expected_decisions(kb, example, as_of)
        .into_iter()
        .map(|(d, c)| (d, Value::from(c)))
        .collect();
    let cal_start = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
    let plan = serde_json::json!({
        "base": base,
        "chromium": chromium,
        "home_links": ["/patient/before-you-start", "/patient/symptoms", "/patient/drugs/tofacitinib", "/patient/drugs/upadacitinib", "/patient/calendar", "/clinician"],
        "questionnaire": {
            "answers": answers,
            "summary_must_contain": must,
            "summary_must_not_contain": [norm(&q("heart-stroke").discuss)],
        },
        "symptoms": symptoms,
        "drugs": kb.patient.drug_pages.iter().map(|p| kb.drugs[p.drug].id.clone()).collect::<Vec<_>>(),
        "calendar": {
            "drug": "tofacitinib",
            "start": cal_start.to_string(),
            "visits": jakguard_visit::expected(kb, "tofacitinib", cal_start).len(),
        },
        "upload": { "file": root().join("examples").join(example), "decisions": decisions },
    });
    let out = root().join("target/web-screenshots");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let plan_path = out.join("plan.json");
    std::fs::write(&plan_path, serde_json::to_string_pretty(&plan).unwrap()).unwrap();

    let (script, plan_arg, out_arg, cwd) = (
        dir.join("run.mjs"),
        plan_path.clone(),
        out.clone(),
        dir.clone(),
    );
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(script)
            .arg(plan_arg)
            .arg(out_arg)
            .current_dir(cwd)
            .output()
    });
    let output = tokio::time::timeout(std::time::Duration::from_secs(300), run)
        .await
        .expect("the browser run finishes within 5 minutes")
        .unwrap()
        .expect("node starts");
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{log}");
    let _ = tx.send(());
    let _ = server.await;
    assert!(output.status.success(), "browser checks failed:\n{log}");

    // The downloads, validated here with the same checks as the router tests.
    let qr: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("QuestionnaireResponse.json")).unwrap(),
    )
    .unwrap();
    let questionnaire = serde_json::to_value(jakguard::web::fhir_questionnaire(
        kb,
        kb.patient.questionnaire.as_ref().unwrap(),
    ))
    .unwrap();
    let found = validate_response(&questionnaire, &qr);
    assert_eq!(found["smoking"], "yes");
    assert_eq!(found["hepatitis"], "unsure");
    let ics = std::fs::read_to_string(out.join("calendar.ics")).unwrap();
    validate_ics(
        &ics,
        &jakguard_visit::expected(kb, "tofacitinib", cal_start),
    );
    for shot in [
        "home",
        "questionnaire",
        "summary",
        "symptoms",
        "triage-emergency",
        "triage-call-today",
        "triage-next-visit",
        "drug-tofacitinib",
        "drug-upadacitinib",
        "calendar",
        "calendar-result",
        "clinician",
        "assessment",
        "checklist",
    ] {
        assert!(
            out.join(format!("{shot}.png")).is_file(),
            "screenshot {shot}"
        );
    }
}
