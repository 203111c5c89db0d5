//! CDS Hooks 2.0 wire types (requests, responses, discovery, feedback) and the checks of
//! their shape that the spec makes (required fields, `summary` under 140 characters,
//! `selectionBehavior` with suggestions, `display` on override reasons…). JSON in this module
//! never leaves it untyped: handlers see these structs.

use engine::fhir::{RecordBuilder, ResourceSeed};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookRequest {
    pub hook: String,
    pub hook_instance: String,
    pub fhir_server: Option<String>,
    pub fhir_authorization: Option<FhirAuthorization>,
    pub context: BTreeMap<String, Value>,
    pub prefetch: Option<BTreeMap<String, Box<RawValue>>>,
    pub extension: Option<Value>,
}

impl HookRequest {
    /// `context.patientId`, or empty when the request has none.
    pub fn patient_id(&self) -> &str {
        self.context
            .get("patientId")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The bearer token for the EHR's FHIR server, when the EHR gave one.
    pub fn token(&self) -> Option<&str> {
        self.fhir_authorization
            .as_ref()
            .map(|a| a.access_token.as_str())
    }
}

#[derive(Debug, Deserialize)]
pub struct FhirAuthorization {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: Option<u64>,
    pub scope: Option<String>,
    pub subject: Option<String>,
    pub patient: Option<String>,
}

/// The context fields of the hooks JAKGuard serves: (hook, required, optional).
const CONTEXTS: &[(&str, &[&str], &[&str])] = &[
    ("patient-view", &["userId", "patientId"], &["encounterId"]),
    (
        "order-select",
        &["userId", "patientId", "selections", "draftOrders"],
        &["encounterId"],
    ),
    (
        "order-sign",
        &["userId", "patientId", "draftOrders"],
        &["encounterId"],
    ),
];

/// A FHIR `id`: 1–64 of `A-Z a-z 0-9 - .`.
pub fn is_fhir_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

fn is_reference(s: &str) -> bool {
    matches!(s.split_once('/'), Some((t, id)) if !t.is_empty() && t.chars().all(|c| c.is_ascii_alphabetic()) && is_fhir_id(id))
}

/// The problems with a request for `hook`, as JSON paths and messages. Empty: usable.
pub fn request_problems(req: &HookRequest) -> Vec<String> {
    let mut p = vec![];
    let Some((_, required, optional)) = CONTEXTS.iter().find(|(h, _, _)| *h == req.hook) else {
        return vec![format!(
            "hook: `{}` is not a hook this service answers",
            req.hook
        )];
    };
    if req.hook_instance.trim().is_empty() {
        p.push("hookInstance: must not be empty".to_string());
    }
    for f in *required {
        match req.context.get(*f) {
            None | Some(Value::Null) => p.push(format!("context.{f}: required for {}", req.hook)),
            _ => {}
        }
    }
    for k in req.context.keys() {
        if !required.contains(&k.as_str()) && !optional.contains(&k.as_str()) {
            p.push(format!(
                "context.{k}: not a field of the {} context",
                req.hook
            ));
        }
    }
    for f in ["patientId", "encounterId"] {
        if let Some(v) = req.context.get(f) {
            match v.as_str() {
                Some(s) if is_fhir_id(s) => {}
                _ => p.push(format!(
                    "context.{f}: must be a FHIR id (for example `123`, not `Patient/123`)"
                )),
            }
        }
    }
    if let Some(v) = req.context.get("userId")
        && !v.as_str().is_some_and(is_reference)
    {
        p.push("context.userId: must be a reference such as `Practitioner/123`".to_string());
    }
    if let Some(sel) = req.context.get("selections") {
        match sel.as_array() {
            Some(a) if a.iter().all(|s| s.as_str().is_some_and(is_reference)) => {}
            _ => p.push("context.selections: must be a list of `Type/id` references".to_string()),
        }
    }
    if let Some(d) = req.context.get("draftOrders")
        && d.get("resourceType").and_then(Value::as_str) != Some("Bundle")
    {
        p.push("context.draftOrders: must be a FHIR Bundle".to_string());
    }
    if req.fhir_authorization.is_some() && req.fhir_server.is_none() {
        p.push("fhirAuthorization: requires fhirServer".to_string());
    }
    if let Some(auth) = &req.fhir_authorization
        && !auth.token_type.eq_ignore_ascii_case("bearer")
    {
        p.push("fhirAuthorization.token_type: must be `Bearer`".to_string());
    }
    for (k, v) in req.prefetch.iter().flatten() {
        let text = v.get().trim();
        if text == "null" {
            continue;
        }
        let ok = engine::fhir::resource_type_of(text).is_some();
        if !ok {
            p.push(format!("prefetch.{k}: must be a FHIR resource or null"));
        }
    }
    p
}

/// A hook request read in one pass (see `read_request_one_pass`).
pub struct OnePass {
    /// The envelope, with `prefetch: None`: its resources are in `prefetch` below.
    pub request: HookRequest,
    /// `None` when the prefetch was skipped because the context needs no record.
    pub prefetch: Option<Prefetched>,
}

/// The prefetch of a request, already read into a record builder.
pub struct Prefetched {
    pub builder: RecordBuilder,
    /// The keys the request carried, `null` ones included (the EHR has no data for them).
    pub keys: Vec<String>,
}

impl Prefetched {
    /// The careful reading of a request's prefetch: each raw value parsed on its own, so a
    /// bad one is reported with its path and the others still count. Reads every key, as the
    /// one-pass reader does, so both readings give the same record.
    pub fn from_raw(req: &HookRequest) -> Prefetched {
        let mut builder = RecordBuilder::new();
        let mut keys = vec![];
        for (key, raw) in req.prefetch.iter().flatten() {
            // `null`: the EHR has no data for this key (present, nothing to read).
            if raw.get().trim() != "null" {
                builder.add_json(raw.get(), &format!("prefetch.{key}"), None);
            }
            keys.push(key.clone());
        }
        Prefetched { builder, keys }
    }
}

/// Reads a hook request and its prefetch resources in one pass over the body, rather than
/// cutting out each prefetch value's text and parsing it a second time. When the context
/// comes before the prefetch (as EHRs write it) and `wanted(context)` is false — the draft
/// order is not a JAK inhibitor — the prefetch is skipped unread. Strict: any surprise
/// (a missing or repeated member, a prefetch value that is not a resource or `null`, a type
/// error) gives `None`, and the caller reads the request the careful way, which explains
/// each problem. The fast path therefore changes speed, never answers.
pub fn read_request_one_pass(
    body: &[u8],
    wanted: impl Fn(&BTreeMap<String, Value>) -> bool,
) -> Option<OnePass> {
    use serde::de::DeserializeSeed;
    // simd-json finds the structure of the whole body with SIMD instructions first (and
    // checks its UTF-8 and its syntax, trailing bytes included, before anything is read), then
    // serde walks the resulting tape; strings are unescaped in place, so it needs its own
    // copy of the bytes (the caller keeps the original for the card link). The copy carries
    // the padding simd-json reads past the end, so simd-json makes no second copy of its own.
    let read = |scratch: &mut Scratch| {
        let Scratch {
            copy,
            buffers,
            tape,
        } = scratch;
        copy.clear();
        // Room for the padding too, so a growing copy is allocated once, at its size.
        copy.reserve(body.len() + simd_json::INPUT_PADDING);
        copy.extend_from_slice(body);
        copy.resize(body.len() + simd_json::INPUT_PADDING, b' ');
        // The tape kept from the last request: emptied, its room reused.
        let mut fresh = std::mem::replace(tape, simd_json::Tape(Vec::new())).reset();
        let filled = simd_json::fill_tape_padded(copy, body.len(), buffers, &mut fresh);
        let mut de = simd_json::Deserializer::from_tape(fresh);
        let result = match filled {
            Ok(()) => RequestSeed { wanted: &wanted }.deserialize(&mut de).ok(),
            Err(_) => None,
        };
        *tape = de.into_tape().reset();
        result
    };
    // The copy, simd-json's buffers and its tape (a node per value: ~100 KB for a 20 KB
    // body) are kept by each thread between requests: memory reused stays in the cache, where
    // fresh memory for every request made allocation the costliest step of the reading.
    // Unusually large ones are let go.
    let kept = SCRATCH.try_with(|scratch| {
        let mut scratch = scratch.try_borrow_mut().ok()?;
        let result = read(&mut scratch);
        // A body of numbers can give a node (24 bytes) per two bytes: the tape is bounded by
        // its own size, not only by the body's.
        let tape_bytes = scratch.tape.0.capacity() * std::mem::size_of::<simd_json::Node>();
        if scratch.copy.capacity() > SCRATCH_KEPT || tape_bytes > TAPE_KEPT {
            *scratch = Scratch::fresh();
        }
        Some(result)
    });
    match kept {
        Ok(Some(result)) => result,
        // Only when the thread is exiting or the reader is re-entered: fresh buffers.
        _ => read(&mut Scratch::fresh()),
    }
}

/// Bodies up to this size keep their thread's reading buffers for the next request...
const SCRATCH_KEPT: usize = 1 << 20;
/// ...and tapes up to this size (about 170,000 values; a 22.7 KB prefetch makes ~5,000).
const TAPE_KEPT: usize = 4 << 20;

/// What the one-pass reader keeps between requests on a thread.
struct Scratch {
    /// The body, copied with simd-json's padding after it.
    copy: Vec<u8>,
    buffers: simd_json::Buffers,
    /// Always empty between requests (`Tape::reset`), so it borrows nothing.
    tape: simd_json::Tape<'static>,
}

impl Scratch {
    fn fresh() -> Scratch {
        Scratch {
            copy: Vec::new(),
            buffers: simd_json::Buffers::with_max_depth(0, MAX_DEPTH),
            tape: simd_json::Tape(Vec::new()),
        }
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::fresh());
}

/// The deepest nesting the one-pass reader accepts: serde_json's own limit, so both readings
/// refuse the same documents (and `Value`'s recursive reading of the context stays shallow).
const MAX_DEPTH: usize = 128;

struct RequestSeed<F> {
    wanted: F,
}

/// The members of a hook request.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
enum RequestKey {
    Hook,
    HookInstance,
    FhirServer,
    FhirAuthorization,
    Context,
    Prefetch,
    Extension,
    #[serde(other)]
    Other,
}

impl<'de, F: Fn(&BTreeMap<String, Value>) -> bool> serde::de::DeserializeSeed<'de>
    for RequestSeed<F>
{
    type Value = OnePass;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<OnePass, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F: Fn(&BTreeMap<String, Value>) -> bool> serde::de::Visitor<'de> for RequestSeed<F> {
    type Value = OnePass;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a CDS Hooks request")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<OnePass, A::Error> {
        use serde::de::Error;
        fn once<T, E: Error>(slot: &mut Option<T>, v: T) -> Result<(), E> {
            match slot.replace(v) {
                None => Ok(()),
                Some(_) => Err(E::custom("a member is repeated")),
            }
        }
        let mut hook = None;
        let mut hook_instance = None;
        let mut fhir_server = None;
        let mut fhir_authorization = None;
        let mut context: Option<BTreeMap<String, Value>> = None;
        let mut prefetch: Option<Option<Prefetched>> = None;
        let mut extension = None;
        while let Some(key) = map.next_key::<RequestKey>()? {
            match key {
                RequestKey::Hook => once(&mut hook, map.next_value::<String>()?)?,
                RequestKey::HookInstance => once(&mut hook_instance, map.next_value::<String>()?)?,
                RequestKey::FhirServer => once(&mut fhir_server, map.next_value()?)?,
                RequestKey::FhirAuthorization => once(&mut fhir_authorization, map.next_value()?)?,
                RequestKey::Context => once(&mut context, map.next_value()?)?,
                RequestKey::Extension => once(&mut extension, map.next_value()?)?,
                RequestKey::Prefetch => {
                    let skip = context.as_ref().is_some_and(|c| !(self.wanted)(c));
                    let read = if skip {
                        map.next_value::<serde::de::IgnoredAny>()?;
                        None
                    } else {
                        let mut read = Prefetched {
                            builder: RecordBuilder::new(),
                            keys: vec![],
                        };
                        map.next_value_seed(PrefetchSeed(&mut read))?;
                        Some(read)
                    };
                    once(&mut prefetch, read)?;
                }
                RequestKey::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        let (Some(hook), Some(hook_instance), Some(context)) = (hook, hook_instance, context)
        else {
            return Err(A::Error::custom("a required member is missing"));
        };
        Ok(OnePass {
            request: HookRequest {
                hook,
                hook_instance,
                fhir_server: fhir_server.flatten(),
                fhir_authorization: fhir_authorization.flatten(),
                context,
                prefetch: None,
                extension: extension.flatten(),
            },
            // No `prefetch` member: nothing prefetched, every key is missing.
            prefetch: prefetch.unwrap_or_else(|| {
                Some(Prefetched {
                    builder: RecordBuilder::new(),
                    keys: vec![],
                })
            }),
        })
    }
}

/// The `prefetch` object (or `null`): each value read straight into the builder.
struct PrefetchSeed<'a>(&'a mut Prefetched);

impl<'de> serde::de::DeserializeSeed<'de> for PrefetchSeed<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> serde::de::Visitor<'de> for PrefetchSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the prefetch object")
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        use serde::de::Error;
        while let Some(key) = map.next_key::<String>()? {
            if self.0.keys.contains(&key) {
                return Err(A::Error::custom("a prefetch key is repeated"));
            }
            let location = format!("prefetch.{key}");
            map.next_value_seed(ResourceSeed {
                builder: &mut self.0.builder,
                location: &location,
            })?;
            self.0.keys.push(key);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub cards: Vec<Card>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub system_actions: Vec<Action>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Card {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub indicator: String,
    pub source: Source,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub suggestions: Vec<Suggestion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selection_behavior: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub override_reasons: Vec<Coding>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub links: Vec<Link>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Source {
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<Coding>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Suggestion {
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_recommended: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    #[serde(rename = "type")]
    pub kind: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Coding {
    pub code: String,
    pub system: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Link {
    pub label: String,
    pub url: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_context: Option<String>,
}

/// The constraints a response must meet, as the HL7 validator's CDS Hooks logical model
/// enforces them (required fields, enums, the cds-resp invariants). Empty: valid. Checked on
/// JSON, so it also judges responses that did not come from our types.
pub fn response_problems(v: &Value) -> Vec<String> {
    response_check(v).0
}

/// Every constraint, including the ones the spec states in prose or tables that the HL7
/// validator does not enforce (summary under 140 characters, link `type`). JAKGuard's own
/// responses must pass these too.
pub fn response_problems_strict(v: &Value) -> Vec<String> {
    let (mut e, w) = response_check(v);
    e.extend(w);
    e
}

fn response_check(v: &Value) -> (Vec<String>, Vec<String>) {
    let mut p = vec![];
    let mut w = vec![];
    let Some(cards) = v.get("cards").and_then(Value::as_array) else {
        return (
            vec!["cards: required (an empty list when there is no advice)".into()],
            vec![],
        );
    };
    for (i, c) in cards.iter().enumerate() {
        let at = format!("cards[{i}]");
        match c.get("summary").and_then(Value::as_str) {
            Some(s) if !s.is_empty() && s.chars().count() < 140 => {}
            Some("") => p.push(format!("{at}.summary: must not be empty")),
            Some(_) => w.push(format!("{at}.summary: must be under 140 characters")),
            None => p.push(format!("{at}.summary: required")),
        }
        if !matches!(
            c.get("indicator").and_then(Value::as_str),
            Some("info" | "warning" | "critical")
        ) {
            p.push(format!("{at}.indicator: must be info, warning or critical"));
        }
        match c.get("source") {
            Some(s)
                if s.get("label")
                    .and_then(Value::as_str)
                    .is_some_and(|l| !l.is_empty()) => {}
            _ => p.push(format!("{at}.source.label: required")),
        }
        if let Some(d) = c.get("detail")
            && d.as_str().is_none_or(str::is_empty)
        {
            p.push(format!(
                "{at}.detail: must be non-empty markdown when present"
            ));
        }
        let suggestions = c.get("suggestions").and_then(Value::as_array);
        if suggestions.is_some_and(|s| !s.is_empty()) {
            match c.get("selectionBehavior").and_then(Value::as_str) {
                Some("at-most-one" | "any") => {}
                _ => p.push(format!(
                    "{at}.selectionBehavior: required with suggestions (cds-resp-6)"
                )),
            }
        }
        let mut recommended = 0;
        for (j, s) in suggestions.into_iter().flatten().enumerate() {
            let sat = format!("{at}.suggestions[{j}]");
            if s.get("label")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                p.push(format!("{sat}.label: required"));
            }
            if s.get("isRecommended").and_then(Value::as_bool) == Some(true) {
                recommended += 1;
            }
            for (k, a) in s
                .get("actions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let aat = format!("{sat}.actions[{k}]");
                let kind = a.get("type").and_then(Value::as_str);
                if !matches!(kind, Some("create" | "update" | "delete")) {
                    p.push(format!("{aat}.type: must be create, update or delete"));
                }
                if a.get("description")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    p.push(format!("{aat}.description: required (cds-resp-5)"));
                }
                match (kind, a.get("resource"), a.get("resourceId")) {
                    (Some("create" | "update"), Some(r), _) => {
                        if r.get("resourceType").is_none() {
                            p.push(format!("{aat}.resource: must be a FHIR resource"));
                        }
                        if r.get("id").and_then(Value::as_str).is_none() {
                            p.push(format!("{aat}.resource: requires an id"));
                        }
                    }
                    (Some("create" | "update"), None, _) => p.push(format!(
                        "{aat}.resource: required for {}",
                        kind.unwrap_or("")
                    )),
                    (Some("delete"), _, Some(id)) if id.as_str().is_some_and(is_reference) => {}
                    (Some("delete"), _, _) => p.push(format!(
                        "{aat}.resourceId: a `Type/id` reference is required for delete"
                    )),
                    _ => {}
                }
            }
        }
        if recommended > 1
            && c.get("selectionBehavior").and_then(Value::as_str) == Some("at-most-one")
        {
            p.push(format!(
                "{at}: at most one suggestion may be recommended with at-most-one (cds-resp-1)"
            ));
        }
        for (j, r) in c
            .get("overrideReasons")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if r.get("display")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                p.push(format!(
                    "{at}.overrideReasons[{j}].display: required (cds-resp-4)"
                ));
            }
            if r.get("code").is_none() || r.get("system").is_none() {
                p.push(format!(
                    "{at}.overrideReasons[{j}]: code and system are required"
                ));
            }
        }
        for (j, l) in c
            .get("links")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let lat = format!("{at}.links[{j}]");
            for f in ["label", "url"] {
                if l.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                    p.push(format!("{lat}.{f}: required"));
                }
            }
            let kind = l.get("type").and_then(Value::as_str);
            match kind {
                Some("absolute" | "smart") => {}
                None => w.push(format!("{lat}.type: required (absolute or smart)")),
                Some(_) => p.push(format!("{lat}.type: must be absolute or smart")),
            }
            if l.get("appContext").is_some() && kind != Some("smart") {
                p.push(format!(
                    "{lat}.appContext: only for smart links (cds-resp-3)"
                ));
            }
        }
    }
    (p, w)
}

// ---------------------------------------------------------------------------------------
// Discovery and feedback
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub hook: String,
    pub title: String,
    pub description: String,
    pub id: String,
    pub prefetch: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_requirements: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Discovery<'a> {
    pub services: &'a [Service],
}

#[derive(Debug, Deserialize)]
pub struct FeedbackRequest {
    pub feedback: Vec<Feedback>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Feedback {
    pub card: String,
    pub outcome: String,
    #[serde(default)]
    pub accepted_suggestions: Vec<AcceptedSuggestion>,
    pub override_reason: Option<OverrideReason>,
    pub outcome_timestamp: String,
}

#[derive(Debug, Deserialize)]
pub struct AcceptedSuggestion {
    pub id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OverrideReason {
    pub reason: Option<Coding>,
    pub user_comment: Option<String>,
}

/// The spec's constraints on feedback (cds-fb-1..3).
pub fn feedback_problems(f: &FeedbackRequest) -> Vec<String> {
    let mut p = vec![];
    if f.feedback.is_empty() {
        p.push("feedback: must not be empty".to_string());
    }
    for (i, x) in f.feedback.iter().enumerate() {
        if x.card.trim().is_empty() {
            p.push(format!("feedback[{i}].card: required"));
        }
        match x.outcome.as_str() {
            "accepted" if x.accepted_suggestions.is_empty() => p.push(format!(
                "feedback[{i}].acceptedSuggestions: required when accepted (cds-fb-2)"
            )),
            "accepted" | "overridden" => {}
            o => p.push(format!(
                "feedback[{i}].outcome: `{o}` is not accepted or overridden (cds-fb-1)"
            )),
        }
        if let Some(r) = &x.override_reason
            && r.reason.is_none()
            && r.user_comment.is_none()
        {
            p.push(format!(
                "feedback[{i}].overrideReason: needs a reason or a comment (cds-fb-3)"
            ));
        }
        if chrono::DateTime::parse_from_rfc3339(&x.outcome_timestamp).is_err() {
            p.push(format!(
                "feedback[{i}].outcomeTimestamp: must be an RFC 3339 date-time"
            ));
        }
    }
    p
}
