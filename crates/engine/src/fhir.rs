//! FHIR R4 JSON in, `Record` out.
//!
//! Only the fields the rules use are read, with thin serde structs; everything else in a
//! resource is skipped without being stored. Each resource is parsed on its own, so one
//! malformed resource becomes an `InputIssue` (with its JSON path) and the rest of the record
//! is still assessed. Only a document that is not a usable Bundle at all is an `InputError`.
//!
//! The same `RecordBuilder` serves the three front doors: a Bundle file (`parse_bundle`), a
//! CDS Hooks prefetch, and the resources of one patient gathered from a Bulk FHIR export.

use crate::date;
use crate::record::*;
use crate::units::decimal_from_f64;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Display;

/// The input cannot be assessed at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct InputError {
    pub location: String,
    pub message: String,
}

impl InputError {
    fn new(location: impl Into<String>, message: impl Into<String>) -> Self {
        InputError {
            location: location.into(),
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Wire types: the FHIR JSON shapes, lenient (everything optional, unknown fields skipped).
// ---------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct WCoding {
    system: Option<CompactString>,
    code: Option<CompactString>,
    display: Option<CompactString>,
}

#[derive(Deserialize, Default)]
struct WConcept {
    coding: Option<Vec<WCoding>>,
    text: Option<CompactString>,
}

/// A patient reference: borrowed from the input, and copied only when the record keeps it
/// (a batch reader that checked it first keeps none, `Strict::forget_subject`).
#[derive(Deserialize)]
struct WReference<'a> {
    #[serde(borrow)]
    reference: Text<'a>,
}

impl WReference<'_> {
    /// The reference, as the record keeps it.
    fn kept(this: Option<Self>) -> Option<CompactString> {
        this.and_then(|r| r.reference)
            .map(|r| CompactString::from(&*r))
    }
}

/// `medicationReference`: its `display` names the drug when the Medication is not at hand.
#[derive(Deserialize)]
struct WMedicationReference {
    reference: Option<String>,
    display: Option<String>,
}

/// Strings read only to be parsed or compared (ids, dates, URIs) are borrowed from the input
/// when they have no escapes, rather than copied into their own allocation.
type Text<'a> = Option<Str<'a>>;

/// A string of the input: borrowed when the text has no escapes, copied otherwise. serde's
/// own `Cow<str>` cannot do this: inside an `Option` it always copies, `borrow` or not.
#[derive(Debug)]
struct Str<'a>(Cow<'a, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(Visit)
    }
}

#[derive(Deserialize)]
struct WPeriod<'a> {
    #[serde(borrow)]
    start: Text<'a>,
    #[serde(borrow)]
    end: Text<'a>,
}

#[derive(Deserialize)]
struct WQuantity<'a> {
    value: Option<f64>,
    comparator: Option<CompactString>,
    unit: Option<CompactString>,
    #[serde(borrow)]
    system: Text<'a>,
    code: Option<CompactString>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WObservation<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    status: Option<CompactString>,
    code: Option<WConcept>,
    #[serde(borrow)]
    subject: Option<WReference<'a>>,
    #[serde(borrow)]
    effective_date_time: Text<'a>,
    #[serde(borrow)]
    effective_period: Option<WPeriod<'a>>,
    #[serde(borrow)]
    effective_instant: Text<'a>,
    #[serde(borrow)]
    issued: Text<'a>,
    #[serde(borrow)]
    value_quantity: Option<WQuantity<'a>>,
    value_codeable_concept: Option<WConcept>,
    value_string: Option<CompactString>,
    value_boolean: Option<bool>,
    value_integer: Option<i64>,
    interpretation: Option<Vec<WConcept>>,
    #[serde(borrow)]
    component: Option<Vec<WComponent<'a>>>,
}

/// The `value[x]` choice of an observation or component (serde `flatten` is avoided: it
/// buffers every resource and ruins error messages).
struct WValue<'a> {
    value_quantity: Option<WQuantity<'a>>,
    value_codeable_concept: Option<WConcept>,
    value_string: Option<CompactString>,
    value_boolean: Option<bool>,
    value_integer: Option<i64>,
}

macro_rules! take_value {
    ($w:expr) => {
        WValue {
            value_quantity: $w.value_quantity,
            value_codeable_concept: $w.value_codeable_concept,
            value_string: $w.value_string,
            value_boolean: $w.value_boolean,
            value_integer: $w.value_integer,
        }
    };
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WComponent<'a> {
    code: Option<WConcept>,
    #[serde(borrow)]
    value_quantity: Option<WQuantity<'a>>,
    value_codeable_concept: Option<WConcept>,
    value_string: Option<CompactString>,
    value_boolean: Option<bool>,
    value_integer: Option<i64>,
    interpretation: Option<Vec<WConcept>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WCondition<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    clinical_status: Option<WConcept>,
    verification_status: Option<WConcept>,
    code: Option<WConcept>,
    #[serde(borrow)]
    subject: Option<WReference<'a>>,
    #[serde(borrow)]
    onset_date_time: Text<'a>,
    #[serde(borrow)]
    onset_period: Option<WPeriod<'a>>,
    #[serde(borrow)]
    abatement_date_time: Text<'a>,
    #[serde(borrow)]
    abatement_period: Option<WPeriod<'a>>,
    #[serde(borrow)]
    recorded_date: Text<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WMedicationUse<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    status: Option<CompactString>,
    intent: Option<CompactString>,
    medication_codeable_concept: Option<WConcept>,
    medication_reference: Option<WMedicationReference>,
    #[serde(borrow)]
    subject: Option<WReference<'a>>,
    #[serde(borrow)]
    authored_on: Text<'a>,
    #[serde(borrow)]
    effective_date_time: Text<'a>,
    #[serde(borrow)]
    effective_period: Option<WPeriod<'a>>,
    #[serde(borrow)]
    when_handed_over: Text<'a>,
    #[serde(borrow)]
    date_asserted: Text<'a>,
    dosage_instruction: Option<Vec<WDosage>>,
    dosage: Option<Vec<WDosage>>,
    /// Read as plain JSON values, whatever their key order or type: only a contained
    /// Medication is used (its `#id` names it from this resource).
    contained: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize)]
struct WDosage {
    text: Option<CompactString>,
}

#[derive(Deserialize)]
struct WMedication {
    id: Option<CompactString>,
    code: Option<WConcept>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WImmunization<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    status: Option<CompactString>,
    vaccine_code: Option<WConcept>,
    #[serde(borrow)]
    patient: Option<WReference<'a>>,
    #[serde(borrow)]
    occurrence_date_time: Text<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WAllergy<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    clinical_status: Option<WConcept>,
    verification_status: Option<WConcept>,
    code: Option<WConcept>,
    #[serde(borrow)]
    patient: Option<WReference<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WPatient {
    id: Option<CompactString>,
    birth_date: Option<CompactString>,
    gender: Option<CompactString>,
    deceased_boolean: Option<bool>,
    deceased_date_time: Option<CompactString>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WQuestionnaireResponse<'a> {
    id: Option<CompactString>,
    status: Option<CompactString>,
    #[serde(borrow)]
    subject: Option<WReference<'a>>,
    authored: Option<CompactString>,
    item: Option<Vec<WItem>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WItem {
    link_id: Option<CompactString>,
    answer: Option<Vec<WAnswer>>,
    item: Option<Vec<WItem>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WAnswer {
    value_integer: Option<i64>,
    value_decimal: Option<f64>,
    item: Option<Vec<WItem>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WHead {
    resource_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WBundle<'a> {
    resource_type: Option<String>,
    #[serde(borrow, default)]
    entry: Option<Vec<WEntry<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WEntry<'a> {
    full_url: Option<String>,
    #[serde(borrow)]
    resource: Option<&'a RawValue>,
}

// ---------------------------------------------------------------------------------------
// Conversion helpers
// ---------------------------------------------------------------------------------------

/// The drug a medication resource names, as far as the resource itself tells it.
struct Named {
    /// Its `medicationCodeableConcept`; else the code of the Medication contained in it that
    /// its `medicationReference` names; else the reference's `display`, as text (matched by
    /// name only, and reported as such).
    concept: Concept,
    /// The `medicationReference` when it names a Medication that is not contained in the
    /// resource (`Medication/1`, a full URL), or a `#id` that nothing contained has.
    elsewhere: Option<String>,
}

/// Contained Medications are looked up here, in their own resource only (FHIR: a `#id`
/// reference names a resource contained in the one that holds it), so two orders with
/// contained Medications of the same id cannot take each other's drug. They are found by
/// their `resourceType` member wherever it stands: a draft order arrives as a parsed value,
/// and one printed back to text has its keys sorted. The codeable concept, when it names
/// anything, wins over a reference (R4 allows only one of the two; the code is explicit).
/// A contained Medication without a code names nothing: the reference then stays unresolved.
fn named(
    codeable: Option<WConcept>,
    reference: Option<WMedicationReference>,
    contained: Option<Vec<serde_json::Value>>,
) -> Named {
    let mut concept = concept(codeable);
    if !is_empty(&concept) {
        return Named {
            concept,
            elsewhere: None,
        };
    }
    let (reference, display) = match reference {
        Some(r) => (r.reference, r.display.filter(|d| !d.trim().is_empty())),
        None => (None, None),
    };
    if let Some(id) = reference.as_deref().and_then(|r| r.strip_prefix('#')) {
        let found = contained.iter().flatten().find(|c| {
            c.get("resourceType").and_then(serde_json::Value::as_str) == Some("Medication")
                && c.get("id").and_then(serde_json::Value::as_str) == Some(id)
        });
        if let Some(code) = found
            .and_then(|m| WMedication::deserialize(m).ok())
            .map(|m| self::concept(m.code))
            .filter(|c| !is_empty(c))
        {
            return Named {
                concept: code,
                elsewhere: None,
            };
        }
    }
    concept.text = display.map(CompactString::from);
    Named {
        concept,
        elsewhere: reference,
    }
}

/// A concept that names nothing: no coding, no text.
fn is_empty(c: &Concept) -> bool {
    c.codings.is_empty() && c.text.is_none()
}

/// The members of a medication resource that name its drug, and nothing else: a draft order
/// whose other members are odd still has a drug that can be told.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WNamed {
    medication_codeable_concept: Option<WConcept>,
    medication_reference: Option<WMedicationReference>,
    contained: Option<Vec<serde_json::Value>>,
}

/// The drug a MedicationRequest, MedicationStatement, MedicationAdministration or
/// MedicationDispense given as JSON names, read exactly as a record reads it (a CDS Hooks
/// service decides with it whether a draft order is for one of the knowledge's drugs). Only
/// the members naming the drug are read. `reference` is set when the drug is a Medication the
/// resource does not contain (`Medication/1`, a full URL), or a `#id` it does not contain
/// (with a code): the caller looks it up before trusting `concept`, which then holds at most
/// the reference's display. An error names the member that does not read.
pub fn named_medication(value: &serde_json::Value) -> Result<NamedMedication, String> {
    let w = WNamed::deserialize(value).map_err(|e| e.to_string())?;
    let Named { concept, elsewhere } = named(
        w.medication_codeable_concept,
        w.medication_reference,
        w.contained,
    );
    Ok(NamedMedication {
        concept,
        reference: elsewhere,
    })
}

/// See `named_medication`.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedMedication {
    pub concept: Concept,
    pub reference: Option<String>,
}

/// The code of a Medication resource given as JSON (`None` when it is not one, does not
/// read, or has no code).
pub fn medication_code(value: &serde_json::Value) -> Option<Concept> {
    if value
        .get("resourceType")
        .and_then(serde_json::Value::as_str)
        != Some("Medication")
    {
        return None;
    }
    WMedication::deserialize(value)
        .ok()
        .map(|m| concept(m.code))
        .filter(|c| !is_empty(c))
}

/// The Medication resources read, by every name a reference may use (`Medication/1`, full
/// URL; the first resource of a name wins, as in a Bundle), and the drugs named from outside
/// the input (`RecordBuilder::name_medication`), which win over both.
#[derive(Default)]
struct Medications {
    resources: Vec<(Vec<String>, Concept)>,
    named: HashMap<String, Concept>,
}

impl Medications {
    /// The Medication of one name, looked up without an index (a caller's few lookups while
    /// the input is still being read).
    fn get(&self, name: &str) -> Option<&Concept> {
        self.named.get(name).or_else(|| {
            self.resources
                .iter()
                .find(|(names, _)| names.iter().any(|n| n == name))
                .map(|(_, c)| c)
        })
    }

    /// A name → concept index, built once for a record's many lookups.
    fn index(&self) -> HashMap<&str, &Concept> {
        let mut by: HashMap<&str, &Concept> = HashMap::new();
        for (names, c) in &self.resources {
            for n in names {
                by.entry(n.as_str()).or_insert(c);
            }
        }
        for (n, c) in &self.named {
            by.insert(n.as_str(), c);
        }
        by
    }
}

/// The Medication a reference names, `get` giving the Medication of one name: by the name
/// itself, else, for a version-specific reference (`Medication/1/_history/2`), by the
/// resource it is a version of. A Medication without a code names no drug.
fn find_medication<'a>(
    get: impl Fn(&str) -> Option<&'a Concept>,
    reference: &str,
) -> Option<&'a Concept> {
    get(reference)
        .or_else(|| get(unversioned(reference)?))
        .filter(|c| !is_empty(c))
}

/// `Medication/1/_history/2` (or a full URL ending so) without its version.
pub fn unversioned(reference: &str) -> Option<&str> {
    let (resource, version) = reference.rsplit_once("/_history/")?;
    (!version.is_empty() && !version.contains('/')).then_some(resource)
}

fn concept(w: Option<WConcept>) -> Concept {
    let Some(w) = w else {
        return Concept::default();
    };
    Concept {
        codings: w
            .coding
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| {
                Some(Coding {
                    system: c.system.unwrap_or_default(),
                    code: c.code?,
                    display: c.display,
                })
            })
            .collect(),
        text: w.text.filter(|t| !t.trim().is_empty()),
    }
}

/// The single code of a status CodeableConcept (`clinicalStatus`), if any.
fn status_code(w: Option<WConcept>) -> Option<CompactString> {
    w?.coding?.into_iter().find_map(|c| c.code)
}

/// Reads a date; an unreadable one is reported and treated as absent.
fn read_date(
    text: Option<&str>,
    location: &dyn Display,
    field: &str,
    issues: &mut Vec<InputIssue>,
) -> Option<chrono::NaiveDate> {
    let text = text?;
    match date::parse(text) {
        Some((d, _)) => Some(d),
        None => {
            issues.push(InputIssue {
                location: format!("{location}.{field}"),
                message: format!("`{text}` is not a FHIR date"),
            });
            None
        }
    }
}

fn value_of(w: WValue<'_>, location: &str, issues: &mut Vec<InputIssue>) -> Option<Value> {
    if let Some(q) = w.value_quantity {
        let Some(v) = q.value else {
            issues.push(InputIssue {
                location: format!("{location}.valueQuantity"),
                message: "quantity without a value".into(),
            });
            return None;
        };
        let Some(value) = decimal_from_f64(v) else {
            issues.push(InputIssue {
                location: format!("{location}.valueQuantity.value"),
                message: format!("`{v}` is not a usable number"),
            });
            return None;
        };
        // The UCUM code counts as a unit code only when the system says UCUM (or is absent).
        let code = match q.system.as_deref() {
            None | Some("http://unitsofmeasure.org") => q.code,
            Some(_) => None,
        };
        return Some(Value::Quantity {
            value,
            code,
            unit: q.unit,
            comparator: q.comparator,
        });
    }
    if let Some(i) = w.value_integer {
        return Some(Value::Quantity {
            value: i.into(),
            code: None,
            unit: None,
            comparator: None,
        });
    }
    if let Some(c) = w.value_codeable_concept {
        return Some(Value::Concept(concept(Some(c))));
    }
    if let Some(s) = w.value_string {
        return Some(Value::Text(s));
    }
    w.value_boolean.map(Value::Boolean)
}

fn interpretation(w: Option<Vec<WConcept>>) -> Vec<Coding> {
    w.unwrap_or_default()
        .into_iter()
        .flat_map(|c| concept(Some(c)).codings)
        .collect()
}

/// Finds `"resourceType": "X"` when it is the first member, as FHIR servers write it; avoids a
/// second parse of every resource just to learn its type.
fn peek_resource_type(raw: &str) -> Option<&str> {
    let rest = raw.trim_start().strip_prefix('{')?.trim_start();
    let rest = rest.strip_prefix("\"resourceType\"")?.trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let end = rest.find('"')?;
    let ty = &rest[..end];
    (!ty.contains('\\')).then_some(ty)
}

/// The `resourceType` of a resource given as JSON text; `None` when the text is not a JSON
/// object with a string `resourceType`. Cheap when the type comes first, as servers write it.
pub fn resource_type_of(raw: &str) -> Option<String> {
    if let Some(t) = peek_resource_type(raw) {
        return Some(t.to_string());
    }
    serde_json::from_str::<WHead>(raw).ok()?.resource_type
}

/// Parses one resource of `kind`; on failure, parses again tracking the path so the message
/// names the field at fault.
fn parse_typed<'a>(raw: &'a str, kind: Kind, location: &str) -> Result<Typed<'a>, InputIssue> {
    let mut de = serde_json::Deserializer::from_str(raw);
    match typed(kind, &mut de) {
        Ok(t) => Ok(t),
        Err(first) => {
            let mut de = serde_json::Deserializer::from_str(raw);
            let mut track = serde_path_to_error::Track::new();
            let result = typed(
                kind,
                serde_path_to_error::Deserializer::new(&mut de, &mut track),
            );
            let path = track.path().to_string();
            let message = match result {
                Err(e) if path != "." => format!("at `{path}`: {e}"),
                _ => first.to_string(),
            };
            Err(InputIssue {
                location: location.to_string(),
                message,
            })
        }
    }
}

/// The members `RecordBuilder::salvage` never drops (see there).
const KEPT_WHOLE: &[&str] = &[
    "resourceType",
    "id",
    "subject",
    "patient",
    "status",
    "intent",
    "effectiveDateTime",
    "effectivePeriod",
    "effectiveInstant",
    "issued",
    "authoredOn",
    "dateAsserted",
    "whenHandedOver",
    "occurrenceDateTime",
    "authored",
    // A refuted or resolved condition, or an inactive allergy, would count.
    "clinicalStatus",
    "verificationStatus",
    // A condition's other date would stand in for the one that did not read.
    "onsetDateTime",
    "onsetPeriod",
    "recordedDate",
    "abatementDateTime",
    "abatementPeriod",
    // A unit's system lost would make its code read as UCUM.
    "valueQuantity",
    // An answer lost would let an older one into a score.
    "item",
];

/// Any JSON whose objects never give a member twice (at any depth).
struct UniqueMembers;

impl<'de> Deserialize<'de> for UniqueMembers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = UniqueMembers;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("JSON without repeated members")
            }
            fn visit_bool<E>(self, _: bool) -> Result<UniqueMembers, E> {
                Ok(UniqueMembers)
            }
            fn visit_i64<E>(self, _: i64) -> Result<UniqueMembers, E> {
                Ok(UniqueMembers)
            }
            fn visit_u64<E>(self, _: u64) -> Result<UniqueMembers, E> {
                Ok(UniqueMembers)
            }
            fn visit_f64<E>(self, _: f64) -> Result<UniqueMembers, E> {
                Ok(UniqueMembers)
            }
            fn visit_str<E>(self, _: &str) -> Result<UniqueMembers, E> {
                Ok(UniqueMembers)
            }
            fn visit_unit<E>(self) -> Result<UniqueMembers, E> {
                Ok(UniqueMembers)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<UniqueMembers, A::Error> {
                while seq.next_element::<UniqueMembers>()?.is_some() {}
                Ok(UniqueMembers)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueMembers, A::Error> {
                let mut seen = std::collections::HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    if !seen.insert(key) {
                        return Err(serde::de::Error::custom("a member is given twice"));
                    }
                    map.next_value::<UniqueMembers>()?;
                }
                Ok(UniqueMembers)
            }
        }
        d.deserialize_any(V)
    }
}

/// Members dropped from one resource at most by `RecordBuilder::salvage`.
const SALVAGE_MEMBERS: usize = 8;

/// Removes the member (or list item) at `path` from `value`. False when the path names the
/// whole resource or nothing there.
fn remove_member(value: &mut serde_json::Value, path: &[&serde_path_to_error::Segment]) -> bool {
    use serde_path_to_error::Segment;
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut at = value;
    for segment in parents {
        let next = match segment {
            Segment::Map { key } => at.get_mut(key.as_str()),
            Segment::Seq { index } => at.get_mut(*index),
            _ => None,
        };
        let Some(next) = next else { return false };
        at = next;
    }
    match (last, at) {
        (Segment::Map { key }, serde_json::Value::Object(m)) => m.remove(key.as_str()).is_some(),
        (Segment::Seq { index }, serde_json::Value::Array(a)) if *index < a.len() => {
            a.remove(*index);
            true
        }
        _ => false,
    }
}

/// Parses `raw` as `T`; on failure, parses again tracking the path so the message names it.
fn parse_as<T: DeserializeOwned>(raw: &str, location: &str) -> Result<T, InputIssue> {
    match serde_json::from_str::<T>(raw) {
        Ok(v) => Ok(v),
        Err(first) => {
            let mut de = serde_json::Deserializer::from_str(raw);
            let message = match serde_path_to_error::deserialize::<_, T>(&mut de) {
                Err(e) if e.path().to_string() != "." => {
                    format!("at `{}`: {}", e.path(), e.inner())
                }
                _ => first.to_string(),
            };
            Err(InputIssue {
                location: location.to_string(),
                message,
            })
        }
    }
}

fn reference_name(ty: &str, id: Option<&str>, location: &dyn Display) -> CompactString {
    match id {
        // Built by hand: `format!` costs several times as much, once per resource.
        Some(id) => {
            let mut r = CompactString::with_capacity(ty.len() + 1 + id.len());
            r.push_str(ty);
            r.push('/');
            r.push_str(id);
            r
        }
        None => compact_str::format_compact!("{location}"),
    }
}

// ---------------------------------------------------------------------------------------
// The builder
// ---------------------------------------------------------------------------------------

/// Who a resource is about, as written in `subject` / `patient`.
type Subject = Option<CompactString>;

/// Resources of one kind and, beside them, who each is about. Kept apart so that the usual
/// case — everything is about the one patient — needs no copying when the record is built.
struct About<T> {
    items: Vec<T>,
    subjects: Vec<Subject>,
}

impl<T> Default for About<T> {
    fn default() -> Self {
        About {
            items: vec![],
            subjects: vec![],
        }
    }
}

impl<T> About<T> {
    fn append(&mut self, mut other: About<T>) {
        self.items.append(&mut other.items);
        self.subjects.append(&mut other.subjects);
    }

    fn push(&mut self, subject: Subject, item: T) {
        self.subjects.push(subject);
        self.items.push(item);
    }

    /// The items `keep` accepts, in order.
    fn keep(self, mut keep: impl FnMut(&Subject, &T) -> bool) -> Vec<T> {
        let About {
            mut items,
            subjects,
        } = self;
        let mut i = 0;
        items.retain(|t| {
            let ok = keep(&subjects[i], t);
            i += 1;
            ok
        });
        items
    }
}

/// Collects resources one at a time and builds the `Record` of one patient.
#[derive(Default)]
pub struct RecordBuilder {
    patients: Vec<(PatientInfo, Option<String>)>,
    observations: About<Observation>,
    conditions: About<Condition>,
    medications: Vec<(Subject, MedicationUse, Option<String>)>,
    immunizations: About<Immunization>,
    allergies: About<Allergy>,
    answers: About<Answer>,
    medication_resources: Medications,
    issues: Vec<InputIssue>,
    resource_count: usize,
}

impl RecordBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one resource given as JSON text. `location` says where it came from, for messages
    /// (`entry[3].resource`, `prefetch.labs.entry[0]`, `Observation.ndjson:1234`).
    /// `full_url` is the Bundle entry's fullUrl when there is one.
    pub fn add_json(&mut self, raw: &str, location: &str, full_url: Option<&str>) {
        self.resource_count += 1;
        let ty = match peek_resource_type(raw) {
            Some(t) => t.to_string(),
            None => match parse_as::<WHead>(raw, location) {
                Ok(WHead {
                    resource_type: Some(t),
                }) => t,
                Ok(_) => {
                    self.issue(location, "resource without `resourceType`");
                    return;
                }
                Err(e) => {
                    self.issues.push(e);
                    return;
                }
            },
        };
        let kind = Kind::of(&ty);
        match kind {
            Kind::Bundle => {
                if let Err(e) = self.add_nested_bundle(raw, location) {
                    self.issues.push(e);
                }
            }
            // Every other resource type (Encounter, Claim, …) is not used by the rules.
            Kind::Other => {}
            _ => match parse_typed(raw, kind, location) {
                Ok(t) => self.push_typed(t, &location, full_url),
                Err(e) => {
                    if !self.salvage(raw, kind, location, full_url) {
                        self.issues.push(e);
                    }
                }
            },
        }
    }

    /// A resource some of whose members do not read (a number where FHIR has text, an object
    /// where it has a list) is read without them, each reported, rather than dropped whole:
    /// a Condition or an order lost over an odd note could hide a contraindication or an
    /// interaction. What is left reads the cautious way (no clinical or verification status:
    /// active and counting; no value: data needed). Some members are never dropped, since
    /// reading on without them could make the record say more than it does
    /// (`KEPT_WHOLE`): whom it is about, its status and intent (a withdrawn lab or a stopped
    /// order would count), its dates of record (another date would stand in). A resource whose
    /// such member does not read is not read at all, as before. False when nothing could be
    /// salvaged (the caller reports the first error).
    fn salvage(&mut self, raw: &str, kind: Kind, location: &str, full_url: Option<&str>) -> bool {
        let Ok(mut value) = serde_json::from_str::<serde_json::Value>(raw) else {
            return false;
        };
        // A member given twice: a value would silently keep the last one.
        if serde_json::from_str::<UniqueMembers>(raw).is_err() {
            return false;
        }
        let mut dropped: Vec<String> = vec![];
        for _ in 0..=SALVAGE_MEMBERS {
            let mut track = serde_path_to_error::Track::new();
            let error = match typed(
                kind,
                serde_path_to_error::Deserializer::new(&value, &mut track),
            ) {
                // Read as a value it needs nothing dropped: what failed was the text itself.
                // Not read.
                Ok(_) if dropped.is_empty() => return false,
                Ok(t) => {
                    self.push_typed(t, &location, full_url);
                    for d in dropped {
                        self.issue(location, d);
                    }
                    return true;
                }
                Err(e) => e.to_string(),
            };
            let path = track.path();
            let segments: Vec<&serde_path_to_error::Segment> = path.iter().collect();
            let kept_whole = matches!(
                segments.first(),
                Some(serde_path_to_error::Segment::Map { key }) if KEPT_WHOLE.contains(&key.as_str())
            );
            if kept_whole || !remove_member(&mut value, &segments) {
                return false;
            }
            dropped.push(format!("at `{path}`: {error}; read without it"));
        }
        false
    }

    /// Adds one resource already parsed into a JSON value (a CDS Hooks draft order): the
    /// same as `add_json` on the value's text, without printing the value and parsing it
    /// again. Only a resource that reads without any error takes the short way; any other
    /// goes through `add_json`, whose messages name the field at fault.
    pub fn add_value(&mut self, value: &serde_json::Value, location: &str, full_url: Option<&str>) {
        let kind = value
            .get("resourceType")
            .and_then(serde_json::Value::as_str)
            .map(Kind::of);
        match kind {
            // Not read by the rules: `add_json` would only count it.
            Some(Kind::Other) => {
                self.resource_count += 1;
                return;
            }
            Some(kind) if kind != Kind::Bundle => {
                if let Ok(t) = typed(kind, value) {
                    self.resource_count += 1;
                    self.push_typed(t, &location, full_url);
                    return;
                }
            }
            _ => {}
        }
        self.add_json(&value.to_string(), location, full_url);
    }

    fn push_typed(&mut self, resource: Typed<'_>, location: &dyn Display, full_url: Option<&str>) {
        match resource {
            Typed::Patient(w) => self.push_patient(*w, location, full_url),
            Typed::Observation(w) => self.push_observation(*w, location),
            Typed::Condition(w) => self.push_condition(*w, location),
            Typed::MedicationUse(w, src) => self.push_medication(*w, location, src),
            Typed::Medication(w) => self.push_medication_resource(*w, full_url),
            Typed::Immunization(w) => self.push_immunization(*w, location),
            Typed::Allergy(w) => self.push_allergy(*w, location),
            Typed::QuestionnaireResponse(w) => self.push_questionnaire_response(*w, location),
            Typed::Other => {}
        }
    }

    /// Takes over everything `other` collected, after what this builder already holds, so
    /// pieces merged in input order give the record one builder would have built (a nested
    /// Bundle, or the pieces of one patient a batch reader reads in parallel).
    pub fn merge(&mut self, mut other: RecordBuilder) {
        self.patients.append(&mut other.patients);
        self.observations.append(other.observations);
        self.conditions.append(other.conditions);
        self.medications.append(&mut other.medications);
        self.immunizations.append(other.immunizations);
        self.allergies.append(other.allergies);
        self.answers.append(other.answers);
        self.medication_resources
            .resources
            .append(&mut other.medication_resources.resources);
        self.medication_resources
            .named
            .extend(other.medication_resources.named);
        self.issues.append(&mut other.issues);
        self.resource_count += other.resource_count;
    }

    /// Records a problem with the input found outside the resources themselves (a search
    /// whose results could not all be read): the report shows it like any other.
    pub fn issue(&mut self, location: &str, message: impl Into<String>) {
        self.issues.push(InputIssue {
            location: location.to_string(),
            message: message.into(),
        });
    }

    /// A searchset Bundle inside the input (a CDS Hooks prefetch value, or a batch response).
    fn add_nested_bundle(&mut self, raw: &str, location: &str) -> Result<(), InputIssue> {
        self.resource_count -= 1;
        // The single-pass reader into a scratch builder, merged only when it read the whole
        // Bundle; otherwise the entry-by-entry reader below reports each problem.
        if let Some(b) = parse_bundle_fast(raw) {
            self.merge(b);
            return Ok(());
        }
        let bundle: WBundle<'_> = serde_json::from_str(raw).map_err(|e| InputIssue {
            location: location.to_string(),
            message: e.to_string(),
        })?;
        for (i, entry) in bundle.entry.unwrap_or_default().iter().enumerate() {
            if let Some(r) = entry.resource {
                let loc = format!("{location}.entry[{i}].resource");
                self.add_json(r.get(), &loc, entry.full_url.as_deref());
            }
        }
        Ok(())
    }

    fn push_patient(&mut self, w: WPatient, location: &dyn Display, full_url: Option<&str>) {
        let birth_date = read_date(
            w.birth_date.as_deref(),
            location,
            "birthDate",
            &mut self.issues,
        );
        let gender = w.gender.as_deref().map(|g| match g {
            "female" => Gender::Female,
            "male" => Gender::Male,
            "other" => Gender::Other,
            _ => Gender::Unknown,
        });
        let info = PatientInfo {
            id: w.id,
            birth_date,
            gender,
            deceased: w.deceased_boolean.unwrap_or(false) || w.deceased_date_time.is_some(),
        };
        self.patients.push((info, full_url.map(str::to_string)));
    }

    fn push_observation(&mut self, w: WObservation<'_>, location: &dyn Display) {
        let reference = reference_name("Observation", w.id.as_deref(), location);
        let date_text = w
            .effective_date_time
            .as_deref()
            .or(w.effective_period.as_ref().and_then(|p| p.start.as_deref()))
            .or(w.effective_instant.as_deref())
            .or(w.issued.as_deref());
        let date = read_date(date_text, &reference, "effective", &mut self.issues);
        let subject = WReference::kept(w.subject);
        let value = value_of(take_value!(w), &reference, &mut self.issues);
        let interp = interpretation(w.interpretation);
        for (i, c) in w.component.unwrap_or_default().into_iter().enumerate() {
            let cref = compact_str::format_compact!("{reference}#component[{i}]");
            let cvalue = value_of(take_value!(c), &cref, &mut self.issues);
            self.observations.push(
                subject.clone(),
                Observation {
                    reference: cref,
                    code: concept(c.code),
                    status: w.status.clone(),
                    date,
                    value: cvalue,
                    interpretation: interpretation(c.interpretation),
                },
            );
        }
        self.observations.push(
            subject,
            Observation {
                reference,
                code: concept(w.code),
                status: w.status,
                date,
                value,
                interpretation: interp,
            },
        );
    }

    fn push_condition(&mut self, w: WCondition<'_>, location: &dyn Display) {
        let reference = reference_name("Condition", w.id.as_deref(), location);
        let onset_text = w
            .onset_date_time
            .as_deref()
            .or(w.onset_period.as_ref().and_then(|p| p.start.as_deref()));
        let abatement_text = w.abatement_date_time.as_deref().or(w
            .abatement_period
            .as_ref()
            .and_then(|p| p.end.as_deref().or(p.start.as_deref())));
        let onset = read_date(onset_text, &reference, "onset", &mut self.issues);
        let abatement = read_date(abatement_text, &reference, "abatement", &mut self.issues);
        let recorded = read_date(
            w.recorded_date.as_deref(),
            &reference,
            "recordedDate",
            &mut self.issues,
        );
        self.conditions.push(
            WReference::kept(w.subject),
            Condition {
                reference,
                code: concept(w.code),
                clinical_status: status_code(w.clinical_status),
                verification_status: status_code(w.verification_status),
                onset,
                abatement,
                recorded,
            },
        );
    }

    fn push_medication(
        &mut self,
        w: WMedicationUse<'_>,
        location: &dyn Display,
        source: MedicationSource,
    ) {
        let ty = match source {
            MedicationSource::Request => "MedicationRequest",
            MedicationSource::Statement => "MedicationStatement",
            MedicationSource::Administration => "MedicationAdministration",
            MedicationSource::Dispense => "MedicationDispense",
        };
        let reference = reference_name(ty, w.id.as_deref(), location);
        let start_text = w
            .authored_on
            .as_deref()
            .or(w.effective_date_time.as_deref())
            .or(w.effective_period.as_ref().and_then(|p| p.start.as_deref()))
            .or(w.when_handed_over.as_deref())
            .or(w.date_asserted.as_deref());
        let start = read_date(start_text, &reference, "authoredOn", &mut self.issues);
        let end_text = w.effective_period.as_ref().and_then(|p| p.end.as_deref());
        let end = read_date(
            end_text,
            &reference,
            "effectivePeriod.end",
            &mut self.issues,
        );
        let Named {
            concept: medication,
            elsewhere,
        } = named(
            w.medication_codeable_concept,
            w.medication_reference,
            w.contained,
        );
        // A contained Medication that is not there stays a reference that names nothing,
        // reported when the record is finished.
        let med_ref = elsewhere.map(|r| {
            if r.starts_with('#') {
                format!("{reference}{r}")
            } else {
                r
            }
        });
        let dosage = w
            .dosage_instruction
            .or(w.dosage)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|d| d.text)
            .next();
        self.medications.push((
            WReference::kept(w.subject),
            MedicationUse {
                reference,
                source,
                medication,
                status: w.status,
                intent: w.intent,
                start,
                end,
                dosage,
            },
            med_ref,
        ));
    }

    fn push_medication_resource(&mut self, w: WMedication, full_url: Option<&str>) {
        let mut names = vec![];
        if let Some(id) = &w.id {
            names.push(format!("Medication/{id}"));
        }
        if let Some(u) = full_url {
            names.push(u.to_string());
        }
        self.medication_resources
            .resources
            .push((names, concept(w.code)));
    }

    fn push_immunization(&mut self, w: WImmunization<'_>, location: &dyn Display) {
        let reference = reference_name("Immunization", w.id.as_deref(), location);
        let date = read_date(
            w.occurrence_date_time.as_deref(),
            &reference,
            "occurrenceDateTime",
            &mut self.issues,
        );
        self.immunizations.push(
            WReference::kept(w.patient),
            Immunization {
                reference,
                vaccine: concept(w.vaccine_code),
                status: w.status,
                date,
            },
        );
    }

    fn push_allergy(&mut self, w: WAllergy<'_>, location: &dyn Display) {
        let reference = reference_name("AllergyIntolerance", w.id.as_deref(), location);
        self.allergies.push(
            WReference::kept(w.patient),
            Allergy {
                reference,
                code: concept(w.code),
                clinical_status: status_code(w.clinical_status),
                verification_status: status_code(w.verification_status),
            },
        );
    }

    fn push_questionnaire_response(
        &mut self,
        w: WQuestionnaireResponse<'_>,
        location: &dyn Display,
    ) {
        if matches!(w.status.as_deref(), Some("entered-in-error" | "stopped")) {
            return;
        }
        let reference = reference_name("QuestionnaireResponse", w.id.as_deref(), location);
        let date = read_date(
            w.authored.as_deref(),
            &reference,
            "authored",
            &mut self.issues,
        );
        let subject = WReference::kept(w.subject);
        let mut stack: Vec<WItem> = w.item.unwrap_or_default();
        while let Some(item) = stack.pop() {
            stack.extend(item.item.unwrap_or_default());
            for a in item.answer.unwrap_or_default() {
                stack.extend(a.item.unwrap_or_default());
                let value = a
                    .value_integer
                    .map(rust_decimal::Decimal::from)
                    .or_else(|| a.value_decimal.and_then(decimal_from_f64));
                if let (Some(link_id), Some(value)) = (item.link_id.clone(), value) {
                    self.answers.push(
                        subject.clone(),
                        Answer {
                            reference: reference.clone(),
                            link_id,
                            value,
                            date,
                        },
                    );
                }
            }
        }
    }

    /// Builds the record of the one patient in the input. Resources about someone else are
    /// dropped and reported.
    pub fn finish(mut self) -> Result<Record, InputError> {
        let (patient, patient_url) = match self.patients.len() {
            0 => (PatientInfo::default(), None),
            1 => self.patients.remove(0),
            n => {
                let distinct: std::collections::BTreeSet<_> =
                    self.patients.iter().map(|p| p.0.id.clone()).collect();
                if distinct.len() > 1 {
                    return Err(InputError::new(
                        "Bundle",
                        format!(
                            "the input holds {n} Patient resources; JAKGuard assesses one patient at a time"
                        ),
                    ));
                }
                self.patients.remove(0)
            }
        };
        let is_this_patient = |subject: &Subject| -> bool {
            let Some(s) = subject else { return true };
            if patient_url.as_deref() == Some(s.as_str()) {
                return true;
            }
            match &patient.id {
                Some(id) => {
                    s == id
                        || s.strip_suffix(id.as_str())
                            .is_some_and(|p| p.ends_with("Patient/"))
                        || s.ends_with(&format!("urn:uuid:{id}"))
                }
                // Without a Patient resource the subject cannot be checked: keep everything.
                None => true,
            }
        };
        let mut issues = std::mem::take(&mut self.issues);
        let mut keep = |subject: &Subject, reference: &str| -> bool {
            let ok = is_this_patient(subject);
            if !ok {
                issues.push(InputIssue {
                    location: reference.to_string(),
                    message: format!(
                        "is about `{}`, not the patient assessed; ignored",
                        subject.as_deref().unwrap_or("")
                    ),
                });
            }
            ok
        };
        let observations = self.observations.keep(|s, o| keep(s, &o.reference));
        let conditions = self.conditions.keep(|s, c| keep(s, &c.reference));
        let immunizations = self.immunizations.keep(|s, c| keep(s, &c.reference));
        let allergies = self.allergies.keep(|s, c| keep(s, &c.reference));
        let answers = self.answers.keep(|s, c| keep(s, &c.reference));
        let mut medications = vec![];
        let mut unresolved = vec![];
        let by_name = self.medication_resources.index();
        for (subject, mut m, med_ref) in self.medications {
            if !keep(&subject, &m.reference) {
                continue;
            }
            if let Some(r) = med_ref {
                match find_medication(|n| by_name.get(n).copied(), &r) {
                    Some(c) => m.medication = c.clone(),
                    None if m.medication.codings.is_empty() && m.medication.text.is_none() => {
                        unresolved.push(InputIssue {
                            location: m.reference.to_string(),
                            message: format!(
                                "medicationReference `{r}` is not in the input; the medication is unknown"
                            ),
                        });
                    }
                    None => {}
                }
            }
            medications.push(m);
        }
        issues.extend(unresolved);
        Ok(Record {
            patient,
            observations,
            conditions,
            medications,
            immunizations,
            allergies,
            answers,
            issues,
            resource_count: self.resource_count,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Single-pass reading: each entry's resource is typed by its leading `resourceType` and
// parsed straight into its wire struct. Any surprise (a type error, `resourceType` not
// first, a nested Bundle) falls back to the resilient two-pass reading below, which reports
// every problem with its JSON path; the fast path therefore never loses a diagnostic.
// ---------------------------------------------------------------------------------------

/// Boxed: the wire structs are large, and a resource passes through several functions on its
/// way into the builder; moving a pointer is cheaper than copying the struct each time.
enum Typed<'a> {
    Patient(Box<WPatient>),
    Observation(Box<WObservation<'a>>),
    Condition(Box<WCondition<'a>>),
    MedicationUse(Box<WMedicationUse<'a>>, MedicationSource),
    Medication(Box<WMedication>),
    Immunization(Box<WImmunization<'a>>),
    Allergy(Box<WAllergy<'a>>),
    QuestionnaireResponse(Box<WQuestionnaireResponse<'a>>),
    Other,
}

/// The first member name of a resource: `resourceType` (no allocation) or another name.
enum FirstKey {
    ResourceType,
    Other(String),
}

impl<'de> Deserialize<'de> for FirstKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = FirstKey;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FirstKey, E> {
                Ok(if v == "resourceType" {
                    FirstKey::ResourceType
                } else {
                    FirstKey::Other(v.to_string())
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// Types a resource whose `resourceType` is not its first member: buffered, then typed.
fn typed_from_map<'de, A: serde::de::MapAccess<'de>>(
    first: String,
    mut map: A,
) -> Result<Typed<'de>, A::Error> {
    use serde::de::Error;
    let mut object = serde_json::Map::new();
    let value: serde_json::Value = map.next_value()?;
    object.insert(first, value);
    while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
        object.insert(k, v);
    }
    let Some(kind) = object
        .get("resourceType")
        .and_then(|v| v.as_str())
        .map(Kind::of)
    else {
        return Err(A::Error::custom("resource without `resourceType`"));
    };
    typed(kind, serde_json::Value::Object(object)).map_err(A::Error::custom)
}

/// The resource types JAKGuard reads, from the `resourceType` string.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Patient,
    Observation,
    Condition,
    Use(MedicationSource),
    Medication,
    Immunization,
    Allergy,
    QuestionnaireResponse,
    Bundle,
    Other,
}

impl Kind {
    fn of(resource_type: &str) -> Kind {
        match resource_type {
            "Patient" => Kind::Patient,
            "Observation" => Kind::Observation,
            "Condition" => Kind::Condition,
            "MedicationRequest" => Kind::Use(MedicationSource::Request),
            "MedicationStatement" => Kind::Use(MedicationSource::Statement),
            "MedicationAdministration" => Kind::Use(MedicationSource::Administration),
            "MedicationDispense" => Kind::Use(MedicationSource::Dispense),
            "Medication" => Kind::Medication,
            "Immunization" => Kind::Immunization,
            "AllergyIntolerance" => Kind::Allergy,
            "QuestionnaireResponse" => Kind::QuestionnaireResponse,
            "Bundle" => Kind::Bundle,
            _ => Kind::Other,
        }
    }
}

/// Reads the rest of a resource of `kind` (every other type is skipped).
fn typed<'de, D: serde::Deserializer<'de>>(kind: Kind, d: D) -> Result<Typed<'de>, D::Error> {
    use serde::de::Error;
    Ok(match kind {
        Kind::Patient => Typed::Patient(Box::new(WPatient::deserialize(d)?)),
        Kind::Observation => Typed::Observation(Box::new(WObservation::deserialize(d)?)),
        Kind::Condition => Typed::Condition(Box::new(WCondition::deserialize(d)?)),
        Kind::Use(src) => Typed::MedicationUse(Box::new(WMedicationUse::deserialize(d)?), src),
        Kind::Medication => Typed::Medication(Box::new(WMedication::deserialize(d)?)),
        Kind::Immunization => Typed::Immunization(Box::new(WImmunization::deserialize(d)?)),
        Kind::Allergy => Typed::Allergy(Box::new(WAllergy::deserialize(d)?)),
        Kind::QuestionnaireResponse => {
            Typed::QuestionnaireResponse(Box::new(WQuestionnaireResponse::deserialize(d)?))
        }
        Kind::Bundle => return Err(D::Error::custom("nested Bundle")),
        Kind::Other => {
            serde::de::IgnoredAny::deserialize(d)?;
            Typed::Other
        }
    })
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Kind;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a resource type")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Kind, E> {
                Ok(Kind::of(v))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Typed<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Typed<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a FHIR resource")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Typed<'de>, A::Error> {
                use serde::de::Error;
                match map.next_key::<FirstKey>()? {
                    Some(FirstKey::ResourceType) => {}
                    Some(FirstKey::Other(first)) => return typed_from_map(first, map),
                    None => return Err(A::Error::custom("an empty resource")),
                }
                let kind: Kind = map.next_value()?;
                typed(kind, serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FastEntry<'a> {
    #[serde(borrow)]
    full_url: Text<'a>,
    #[serde(borrow)]
    resource: Option<Typed<'a>>,
}

impl RecordBuilder {
    /// Adds one entry read by the single-pass reader.
    fn push_entry(&mut self, i: usize, entry: FastEntry<'_>) {
        let Some(resource) = entry.resource else {
            self.issue(&format!("entry[{i}]"), "entry without a resource");
            return;
        };
        self.resource_count += 1;
        // Formatted only if a message needs it: most resources have an id and no problem.
        let location = EntryLocation(i);
        let full_url = entry.full_url.as_deref();
        self.push_typed(resource, &location, full_url);
    }
}

/// `entry[i].resource`, the location of a Bundle entry's resource in messages.
struct EntryLocation(usize);

impl Display for EntryLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "entry[{}].resource", self.0)
    }
}

/// The Bundle's members that matter to the single-pass reader.
enum BundleKey {
    ResourceType,
    Entry,
    Other,
}

impl<'de> Deserialize<'de> for BundleKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = BundleKey;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<BundleKey, E> {
                Ok(match v {
                    "resourceType" => BundleKey::ResourceType,
                    "entry" => BundleKey::Entry,
                    _ => BundleKey::Other,
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// Reads a Bundle, streaming each entry into the builder as it is parsed (no list of
/// entries is held). Returns whether the document said `"resourceType": "Bundle"`.
struct BundleSeed<'b>(&'b mut RecordBuilder);

impl<'de> serde::de::DeserializeSeed<'de> for BundleSeed<'_> {
    type Value = bool;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for BundleSeed<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a FHIR Bundle")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut is_bundle = false;
        while let Some(key) = map.next_key::<BundleKey>()? {
            match key {
                BundleKey::ResourceType => is_bundle = map.next_value::<String>()? == "Bundle",
                BundleKey::Entry => map.next_value_seed(EntriesSeed(&mut *self.0))?,
                BundleKey::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(is_bundle)
    }
}

struct EntriesSeed<'b>(&'b mut RecordBuilder);

impl<'de> serde::de::DeserializeSeed<'de> for EntriesSeed<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for EntriesSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of Bundle entries")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while let Some(entry) = seq.next_element::<FastEntry<'de>>()? {
            self.0.push_entry(i, entry);
            i += 1;
        }
        Ok(())
    }
}

/// What `ResourceSeed` found: a resource (possibly a Bundle, whose entries were added) or
/// JSON `null` (a CDS Hooks prefetch key for which the EHR has no data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    Resource,
    Null,
}

/// Reads one FHIR resource, or `null`, straight from a deserializer into the builder, so a
/// caller that holds a larger document (a CDS Hooks request and its prefetch) reads it in one
/// pass instead of cutting out each resource's text first. A Bundle's entries are streamed
/// into the builder. Strict where `add_json` is forgiving: `resourceType` must come first and
/// any type error fails the whole read; the caller then falls back to `add_json` on the raw
/// text, which reports every problem with its path. Nothing is lost either way, only time.
pub struct ResourceSeed<'b> {
    pub builder: &'b mut RecordBuilder,
    /// Where the value came from, for messages (`prefetch.patient`).
    pub location: &'b str,
}

impl<'de> serde::de::DeserializeSeed<'de> for ResourceSeed<'_> {
    type Value = Read;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Read, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ResourceSeed<'_> {
    type Value = Read;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a FHIR resource or null")
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Read, E> {
        Ok(Read::Null)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Read, E> {
        Ok(Read::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Read, D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Read, A::Error> {
        use serde::de::Error;
        match map.next_key::<FirstKey>()? {
            Some(FirstKey::ResourceType) => {}
            _ => return Err(A::Error::custom("`resourceType` is not the first member")),
        }
        let kind: Kind = map.next_value()?;
        match kind {
            Kind::Bundle => {
                while let Some(key) = map.next_key::<BundleKey>()? {
                    match key {
                        BundleKey::Entry => map.next_value_seed(EntriesSeed(&mut *self.builder))?,
                        BundleKey::ResourceType => {
                            return Err(A::Error::custom("`resourceType` given twice"));
                        }
                        BundleKey::Other => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
            }
            _ => {
                let t = typed(kind, serde::de::value::MapAccessDeserializer::new(map))?;
                self.builder.resource_count += 1;
                self.builder.push_typed(t, &self.location, None);
            }
        }
        Ok(Read::Resource)
    }
}

/// The single-pass reading; `None` when the resilient reading must take over.
fn parse_bundle_fast(text: &str) -> Option<RecordBuilder> {
    use serde::de::DeserializeSeed;
    let mut b = RecordBuilder::new();
    let mut de = serde_json::Deserializer::from_str(text);
    let is_bundle = BundleSeed(&mut b).deserialize(&mut de).ok()?;
    de.end().ok()?;
    is_bundle.then_some(b)
}

/// Parses a FHIR R4 Bundle (any type: collection, searchset, transaction…) into a record.
pub fn parse_bundle(text: &str) -> Result<Record, InputError> {
    let builder = match parse_bundle_fast(text) {
        Some(b) => b,
        None => parse_bundle_resilient(text)?,
    };
    let record = builder.finish()?;
    if record.patient.id.is_none() && record.patient.birth_date.is_none() {
        return Err(InputError::new(
            "Bundle",
            "no Patient resource: JAKGuard needs the patient (age, sex) to assess",
        ));
    }
    Ok(record)
}

/// Reads the Bundle entry by entry, so that one malformed resource is reported with its
/// JSON path and the others are still read.
fn parse_bundle_resilient(text: &str) -> Result<RecordBuilder, InputError> {
    let bundle: WBundle<'_> = match serde_json::from_str(text) {
        Ok(b) => b,
        Err(e) if e.is_syntax() || e.is_eof() => {
            return Err(InputError::new(
                format!("line {} column {}", e.line(), e.column()),
                "not valid JSON",
            ));
        }
        Err(e) => {
            let mut de = serde_json::Deserializer::from_str(text);
            let path = match serde_path_to_error::deserialize::<_, WBundle<'_>>(&mut de) {
                Err(pe) => pe.path().to_string(),
                Ok(_) => ".".to_string(),
            };
            let message = e.to_string();
            let message = message
                .split(" at line")
                .next()
                .unwrap_or(&message)
                .to_string();
            return Err(InputError::new(
                format!("`{path}`"),
                format!("not a FHIR Bundle: {message}"),
            ));
        }
    };
    match bundle.resource_type.as_deref() {
        Some("Bundle") => {}
        Some(other) => {
            return Err(InputError::new(
                "`resourceType`",
                format!("expected a FHIR Bundle, found a `{other}` resource"),
            ));
        }
        None => {
            return Err(InputError::new(
                "`resourceType`",
                "missing: the input is not a FHIR resource",
            ));
        }
    }
    let mut builder = RecordBuilder::new();
    for (i, entry) in bundle.entry.unwrap_or_default().iter().enumerate() {
        let location = format!("entry[{i}].resource");
        match entry.resource {
            Some(r) => builder.add_json(r.get(), &location, entry.full_url.as_deref()),
            None => builder.issue(&format!("entry[{i}]"), "entry without a resource"),
        }
    }
    Ok(builder)
}

// ---------------------------------------------------------------------------------------
// Batch use (population screening): one patient's resources arrive in many pieces, read in
// parallel, and most observations are of no use to the rules.
// ---------------------------------------------------------------------------------------

impl RecordBuilder {
    /// Adds a resource read by `Strict::parse`: the same as `add_json` on its text would.
    /// `location` is formatted only if a message needs it.
    pub fn add_strict(&mut self, resource: Strict<'_>, location: &dyn Display) {
        self.resource_count += 1;
        self.push_typed(resource.typed, location, None);
    }

    /// The references to Medications outside the input that the medication resources read so
    /// far name and nothing read resolves: each once, in input order, only those `wanted`
    /// accepts, at most `limit`. The drugs a caller with access to the EHR's FHIR server can
    /// look up and give with `name_medication`.
    pub fn unresolved_medications(&self, limit: usize, wanted: impl Fn(&str) -> bool) -> Vec<&str> {
        let by_name = self.medication_resources.index();
        let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let mut out: Vec<&str> = vec![];
        for (_, _, reference) in &self.medications {
            if out.len() >= limit {
                break;
            }
            if let Some(r) = reference.as_deref()
                && !r.contains('#')
                && seen.insert(r)
                && find_medication(|n| by_name.get(n).copied(), r).is_none()
                && wanted(r)
            {
                out.push(r);
            }
        }
        out
    }

    /// The code of a Medication resource read so far, by a reference to it
    /// (`Medication/id` or its full URL).
    pub fn medication(&self, reference: &str) -> Option<&Concept> {
        find_medication(|n| self.medication_resources.get(n), reference)
    }

    /// Records the drug a Medication reference names when the Medication was found outside
    /// the input (a CDS Hooks service reading it from the EHR's FHIR server), so the record
    /// gives the orders naming `reference` that drug. It takes precedence over a resource
    /// read under the same name.
    pub fn name_medication(&mut self, reference: &str, concept: Concept) {
        self.medication_resources
            .named
            .insert(reference.to_string(), concept);
    }

    /// Drops the observations `keep` rejects (the input problems found while reading them
    /// stay, so the report still shows them). For batch readers that must not hold every
    /// vital sign of millions of patients in memory.
    pub fn retain_observations(&mut self, mut keep: impl FnMut(&Observation) -> bool) {
        let About { items, subjects } = std::mem::take(&mut self.observations);
        for (item, subject) in items.into_iter().zip(subjects) {
            if keep(&item) {
                self.observations.push(subject, item);
            }
        }
    }
}

/// One resource read in a single strict pass and not yet added, so that a batch reader can
/// see who it is about before deciding to keep it (`RecordBuilder::add_strict`).
pub struct Strict<'a> {
    /// The `resourceType` as the text gives it.
    resource_type: &'a str,
    typed: Typed<'a>,
}

impl<'a> Strict<'a> {
    /// Reads `raw`: a JSON object whose first member is `resourceType`, of a type the rules
    /// read, without any syntax or type error. `None` on anything else: the careful
    /// `add_json` must read it then, and explain the problem.
    pub fn parse(raw: &'a str) -> Option<Strict<'a>> {
        let resource_type = peek_resource_type(raw)?;
        let kind = Kind::of(resource_type);
        if matches!(kind, Kind::Bundle | Kind::Other) {
            return None;
        }
        let mut de = serde_json::Deserializer::from_str(raw);
        let typed = typed(kind, &mut de).ok()?;
        de.end().ok()?;
        Some(Strict {
            resource_type,
            typed,
        })
    }

    /// The FHIR resource type, as the text gives it.
    pub fn resource_type(&self) -> &'a str {
        self.resource_type
    }

    /// The patient reference as written (`subject.reference`, or `patient.reference` for
    /// Immunization and AllergyIntolerance); `None` for Patient and Medication resources.
    pub fn subject(&self) -> Option<&str> {
        let r = match &self.typed {
            Typed::Observation(w) => &w.subject,
            Typed::Condition(w) => &w.subject,
            Typed::MedicationUse(w, _) => &w.subject,
            Typed::Immunization(w) => &w.patient,
            Typed::Allergy(w) => &w.patient,
            Typed::QuestionnaireResponse(w) => &w.subject,
            Typed::Patient(_) | Typed::Medication(_) | Typed::Other => return None,
        };
        r.as_ref()?.reference.as_deref()
    }

    /// Forgets the patient reference, once the caller has checked it and keeps one builder
    /// per patient: the record then holds no copy of it per resource (a resource without a
    /// reference counts as the patient's own, as in `finish`).
    pub fn forget_subject(&mut self) {
        match &mut self.typed {
            Typed::Observation(w) => w.subject = None,
            Typed::Condition(w) => w.subject = None,
            Typed::MedicationUse(w, _) => w.subject = None,
            Typed::Immunization(w) => w.patient = None,
            Typed::Allergy(w) => w.patient = None,
            Typed::QuestionnaireResponse(w) => w.subject = None,
            Typed::Patient(_) | Typed::Medication(_) | Typed::Other => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_borrowed_unless_it_has_escapes() {
        let plain = r#"{"id":"o-1","effectiveDateTime":"2026-01-02","effectivePeriod":{"start":"2026-01-01"}}"#;
        let w: WObservation<'_> = serde_json::from_str(plain).unwrap();
        assert!(matches!(w.id, Some(Str(Cow::Borrowed("o-1")))));
        assert!(matches!(
            w.effective_date_time,
            Some(Str(Cow::Borrowed("2026-01-02")))
        ));
        let start = w.effective_period.and_then(|p| p.start);
        assert!(matches!(start, Some(Str(Cow::Borrowed("2026-01-01")))));

        // An escape means the text must be decoded: then it is a copy, with the right text.
        let escaped = r#"{"id":"o\u002d1"}"#;
        let w: WObservation<'_> = serde_json::from_str(escaped).unwrap();
        assert!(matches!(&w.id, Some(Str(Cow::Owned(s))) if s == "o-1"));
        // Not a string: refused, as before.
        assert!(serde_json::from_str::<WObservation<'_>>(r#"{"id":1}"#).is_err());
    }

    #[test]
    fn peeks_the_type_only_when_it_comes_first() {
        assert_eq!(
            peek_resource_type(r#" { "resourceType" : "Claim", "id": "1"}"#),
            Some("Claim")
        );
        assert_eq!(
            peek_resource_type(r#"{"id": "1", "resourceType": "Claim"}"#),
            None
        );
    }

    #[test]
    fn the_strict_reading_adds_what_the_careful_one_would_and_refuses_the_rest() {
        let patient = r#"{"resourceType":"Patient","id":"p","birthDate":"1970-01-01"}"#;
        let good = [
            r#"{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"731-0"}]},"subject":{"reference":"Patient/p"},"effectiveDateTime":"2026-01-02","valueQuantity":{"value":1.2,"unit":"10*3/uL"}}"#,
            r#"{"resourceType":"Observation","id":"bp","code":{"text":"BP"},"subject":{"reference":"Patient/p"},"effectiveDateTime":"not a date","component":[{"code":{"text":"sys"},"valueQuantity":{"value":120}}]}"#,
            r#"{"resourceType":"Condition","id":"c","code":{"text":"AS"},"subject":{"reference":"Patient/p"},"onsetDateTime":"2020"}"#,
            r#"{"resourceType":"Immunization","id":"i","vaccineCode":{"text":"zoster"},"patient":{"reference":"Patient/p"},"occurrenceDateTime":"2025-05-05"}"#,
        ];
        let mut careful = RecordBuilder::new();
        let mut strict = RecordBuilder::new();
        careful.add_json(patient, "Patient.ndjson:1", None);
        strict.add_json(patient, "Patient.ndjson:1", None);
        for (i, raw) in good.iter().enumerate() {
            let at = format!("x.ndjson:{i}");
            careful.add_json(raw, &at, None);
            let mut r = Strict::parse(raw).expect("strictly readable");
            assert_eq!(r.subject(), Some("Patient/p"));
            r.forget_subject();
            assert_eq!(r.subject(), None);
            strict.add_strict(r, &at);
        }
        let (a, b) = (careful.finish().unwrap(), strict.finish().unwrap());
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        // The unreadable date is an input issue either way, not a refusal.
        assert!(!b.issues.is_empty());
        assert_eq!(
            Strict::parse(good[0]).map(|r| r.resource_type()),
            Some("Observation")
        );

        for refused in [
            r#"{"id":"o","resourceType":"Observation"}"#,
            r#"{"resourceType":"Observation","id":"o","valueQuantity":{"value":"high"}}"#,
            r#"{"resourceType":"Observation","id":"o"} trailing"#,
            r#"{"resourceType":"Observation","id":"o""#,
            r#"{"resourceType":"Claim","id":"c"}"#,
            r#"{"resourceType":"Bundle","entry":[]}"#,
            r#"{"resourceType":"Observation","id":"o","id":"p"}"#,
        ] {
            assert!(Strict::parse(refused).is_none(), "{refused}");
        }
    }

    #[test]
    fn an_escaped_patient_reference_reads_as_its_plain_text() {
        let patient = r#"{"resourceType":"Patient","id":"p","birthDate":"1970-01-01"}"#;
        let obs = |subject: &str| {
            format!(
                r#"{{"resourceType":"Observation","id":"o1","code":{{"text":"x"}},"subject":{{"reference":"{subject}"}},"effectiveDateTime":"2026-01-02"}}"#
            )
        };
        let plain = obs("Patient/p");
        let record_of = |line: &str| {
            let mut b = RecordBuilder::new();
            b.add_json(patient, "Patient.ndjson:1", None);
            b.add_json(line, "Observation.ndjson:1", None);
            b.finish().map(|r| format!("{r:?}"))
        };
        let expected = record_of(&plain).expect("a plain reference reads");
        for escaped in [r"Patient\/p", r"Patient/\u0070", r"\u0050atient/p"] {
            let line = obs(escaped);
            assert_eq!(
                Strict::parse(&line).and_then(|r| r.subject().map(str::to_string)),
                Some("Patient/p".to_string()),
                "{line}"
            );
            assert_eq!(record_of(&line).ok(), Some(expected.clone()), "{line}");
        }
        // Another patient's reference, escaped or not, is not taken for this one's.
        assert!(record_of(&obs(r"Patient\/q")).ok() != Some(expected.clone()));
    }

    #[test]
    fn a_parsed_value_adds_what_its_text_would() {
        let values = [
            r#"{"resourceType":"MedicationRequest","id":"d1","status":"draft","intent":"order","subject":{"reference":"Patient/p"},"authoredOn":"2026-11-27","medicationCodeableConcept":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"1357547","display":"tofacitinib \"5\" mg"}],"text":"Xeljanz"},"dosageInstruction":[{"text":"5 mg twice daily"}]}"#,
            r##"{"id":"d2","resourceType":"MedicationRequest","authoredOn":"not a date","medicationReference":{"reference":"#m"},"contained":[{"resourceType":"Medication","id":"m","code":{"text":"x"}}]}"##,
            r#"{"resourceType":"MedicationRequest","id":"d3","status":5}"#,
            r#"{"resourceType":"Observation","id":"o","valueQuantity":{"value":12345678901234567890,"unit":"mg"},"effectiveDateTime":"2026-01-02"}"#,
            r#"{"resourceType":"Observation","id":"o2","valueInteger":5.0}"#,
            r#"{"resourceType":"ServiceRequest","id":"s"}"#,
            r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Condition","id":"c"}}]}"#,
            r#"{"id":"no-type"}"#,
            r#"[1,2]"#,
        ];
        for text in values {
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            let mut by_text = RecordBuilder::new();
            by_text.add_json(&value.to_string(), "draft", Some("urn:uuid:d"));
            let mut by_value = RecordBuilder::new();
            by_value.add_value(&value, "draft", Some("urn:uuid:d"));
            let (a, b) = (by_text.finish().unwrap(), by_value.finish().unwrap());
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "{text}");
        }
    }

    #[test]
    fn a_contained_medication_is_found_whatever_its_key_order() {
        // A draft order as EHRs send it: the drug is a Medication contained in the order.
        // Printed back from a parsed value, `resourceType` comes last (keys sorted).
        let orders = [
            r##"{"resourceType":"MedicationRequest","id":"d","status":"draft","medicationReference":{"reference":"#m"},"contained":[{"resourceType":"Medication","id":"m","code":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"1357536"}]}}]}"##,
            r##"{"resourceType":"MedicationRequest","id":"d","status":"draft","medicationReference":{"reference":"#m"},"contained":[{"code":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"1357536"}]},"id":"m","resourceType":"Medication"}]}"##,
        ];
        for text in orders {
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            let mut by_text = RecordBuilder::new();
            by_text.add_json(text, "draft", None);
            let mut by_value = RecordBuilder::new();
            by_value.add_value(&value, "draft", None);
            for record in [by_text.finish().unwrap(), by_value.finish().unwrap()] {
                assert_eq!(record.medications.len(), 1, "{text}");
                let codes: Vec<&str> = record.medications[0]
                    .medication
                    .codings
                    .iter()
                    .map(|c| c.code.as_str())
                    .collect();
                assert_eq!(codes, ["1357536"], "{text}");
            }
        }
        // Other contained resources, of any shape, are not medications and break nothing.
        let text = r##"{"resourceType":"MedicationRequest","id":"d","medicationReference":{"reference":"#q"},"contained":[{"resourceType":"Questionnaire","id":"q","code":[{"code":"x"}]},7]}"##;
        let mut b = RecordBuilder::new();
        b.add_json(text, "draft", None);
        let record = b.finish().unwrap();
        assert_eq!(record.medications.len(), 1);
        assert!(record.medications[0].medication.codings.is_empty());
        // The reference names no medication: said so, not passed over.
        assert_eq!(record.issues.len(), 1, "{:?}", record.issues);
        assert!(
            record.issues[0]
                .message
                .contains("the medication is unknown")
        );

        // A Medication not at hand: the reference's display is the name to go by.
        let text = r##"{"resourceType":"MedicationRequest","id":"d","medicationReference":{"reference":"Medication/x","display":"Xeljanz 5 mg"}}"##;
        let mut b = RecordBuilder::new();
        b.add_json(text, "draft", None);
        let record = b.finish().unwrap();
        assert_eq!(
            record.medications[0].medication.text.as_deref(),
            Some("Xeljanz 5 mg")
        );
        // …but the Medication itself wins when it is there.
        let mut b = RecordBuilder::new();
        b.add_json(text, "draft", None);
        b.add_json(
            r#"{"resourceType":"Medication","id":"x","code":{"coding":[{"system":"s","code":"c"}]}}"#,
            "m",
            None,
        );
        let record = b.finish().unwrap();
        assert_eq!(record.medications[0].medication.codings[0].code, "c");
        assert_eq!(record.medications[0].medication.text, None);
    }

    fn codes(m: &MedicationUse) -> Vec<&str> {
        m.medication
            .codings
            .iter()
            .map(|c| c.code.as_str())
            .collect()
    }

    #[test]
    fn a_contained_medication_is_its_own_resources_only() {
        // The same order id twice (an order already on file, and the draft that changes it),
        // each with a contained `#m`: each order has its own drug, not the first one read.
        let on_file = r##"{"resourceType":"MedicationRequest","id":"1","status":"active","medicationReference":{"reference":"#m"},"contained":[{"resourceType":"Medication","id":"m","code":{"coding":[{"system":"s","code":"old"}]}}]}"##;
        let draft = r##"{"resourceType":"MedicationRequest","id":"1","status":"draft","medicationReference":{"reference":"#m"},"contained":[{"resourceType":"Medication","id":"m","code":{"coding":[{"system":"s","code":"new"}]}}]}"##;
        let mut b = RecordBuilder::new();
        b.add_json(on_file, "a", None);
        b.add_value(&serde_json::from_str(draft).unwrap(), "b", None);
        let record = b.finish().unwrap();
        let got: Vec<Vec<&str>> = record.medications.iter().map(codes).collect();
        assert_eq!(got, [["old"], ["new"]]);
        // A contained Medication is not a name for anything outside its order.
        let mut b = RecordBuilder::new();
        b.add_json(on_file, "a", None);
        assert_eq!(b.medication("MedicationRequest/1#m"), None);
        assert_eq!(b.medication("#m"), None);
    }

    #[test]
    fn a_version_specific_reference_names_the_medication_it_is_a_version_of() {
        let order = r##"{"resourceType":"MedicationRequest","id":"d","medicationReference":{"reference":"Medication/x/_history/3"}}"##;
        let medication = r#"{"resourceType":"Medication","id":"x","code":{"coding":[{"system":"s","code":"c"}]}}"#;
        let mut b = RecordBuilder::new();
        b.add_json(order, "o", None);
        b.add_json(medication, "m", None);
        assert!(b.medication("Medication/x/_history/3").is_some());
        // Not any other resource whose name merely starts the same way.
        assert_eq!(b.medication("Medication/xy"), None);
        assert_eq!(b.medication("Medication/x/_history/"), None);
        let record = b.finish().unwrap();
        assert_eq!(codes(&record.medications[0]), ["c"]);
        assert!(record.issues.is_empty(), "{:?}", record.issues);
        assert_eq!(unversioned("Medication/x/_history/3"), Some("Medication/x"));
        assert_eq!(unversioned("Medication/x"), None);
    }

    #[test]
    fn a_medication_without_a_code_leaves_the_orders_display() {
        let order = r##"{"resourceType":"MedicationRequest","id":"d","medicationReference":{"reference":"Medication/x","display":"Xeljanz 5 mg"}}"##;
        let mut b = RecordBuilder::new();
        b.add_json(order, "o", None);
        b.add_json(r#"{"resourceType":"Medication","id":"x"}"#, "m", None);
        assert_eq!(b.medication("Medication/x"), None);
        let record = b.finish().unwrap();
        assert_eq!(
            record.medications[0].medication.text.as_deref(),
            Some("Xeljanz 5 mg")
        );
    }

    #[test]
    fn the_references_nothing_resolves_are_listed_once() {
        let mut b = RecordBuilder::new();
        for text in [
            r##"{"resourceType":"MedicationRequest","id":"1","medicationReference":{"reference":"Medication/x"}}"##,
            r##"{"resourceType":"MedicationStatement","id":"2","medicationReference":{"reference":"Medication/x"}}"##,
            r##"{"resourceType":"MedicationRequest","id":"3","medicationReference":{"reference":"Medication/y"}}"##,
            r##"{"resourceType":"MedicationRequest","id":"4","medicationReference":{"reference":"#gone"}}"##,
            r##"{"resourceType":"MedicationRequest","id":"5","medicationCodeableConcept":{"text":"x"}}"##,
        ] {
            b.add_json(text, "o", None);
        }
        b.add_json(
            r#"{"resourceType":"Medication","id":"y","code":{"text":"y"}}"#,
            "m",
            None,
        );
        assert_eq!(b.unresolved_medications(10, |_| true), ["Medication/x"]);
        assert!(b.unresolved_medications(0, |_| true).is_empty());
        assert!(
            b.unresolved_medications(10, |r| r != "Medication/x")
                .is_empty()
        );
        b.name_medication(
            "Medication/x",
            Concept {
                codings: vec![],
                text: Some("x".into()),
            },
        );
        assert!(b.unresolved_medications(10, |_| true).is_empty());
    }

    #[test]
    fn a_medication_named_from_outside_the_input_is_the_orders_drug() {
        let order = r##"{"resourceType":"MedicationRequest","id":"d","medicationReference":{"reference":"https://ehr.example/fhir/Medication/x","display":"a tablet"}}"##;
        let fetched = Concept {
            codings: vec![Coding {
                system: "s".into(),
                code: "c".into(),
                display: None,
            }],
            text: None,
        };
        let mut b = RecordBuilder::new();
        b.add_json(order, "o", None);
        b.name_medication("https://ehr.example/fhir/Medication/x", fetched);
        let record = b.finish().unwrap();
        assert_eq!(codes(&record.medications[0]), ["c"]);
        // Without it, the display is all there is, and the reference is reported.
        let mut b = RecordBuilder::new();
        b.add_json(order, "o", None);
        let record = b.finish().unwrap();
        assert_eq!(
            record.medications[0].medication.text.as_deref(),
            Some("a tablet")
        );
    }

    #[test]
    fn the_drug_an_order_names_is_read_as_the_record_reads_it() {
        let read = |text: &str| named_medication(&serde_json::from_str(text).unwrap());
        let coded = read(
            r#"{"resourceType":"MedicationRequest","medicationCodeableConcept":{"coding":[{"system":"s","code":"c"}]}}"#,
        )
        .unwrap();
        assert_eq!(coded.concept.codings[0].code, "c");
        assert_eq!(coded.reference, None);
        let contained = read(
            r##"{"contained":[{"code":{"text":"tofacitinib"},"id":"m","resourceType":"Medication"}],"medicationReference":{"reference":"#m","display":"ignored"},"resourceType":"MedicationRequest"}"##,
        )
        .unwrap();
        assert_eq!(contained.concept.text.as_deref(), Some("tofacitinib"));
        assert_eq!(contained.reference, None);
        let elsewhere = read(
            r#"{"resourceType":"MedicationRequest","medicationReference":{"reference":"urn:uuid:9","display":"Rinvoq"}}"#,
        )
        .unwrap();
        assert_eq!(elsewhere.reference.as_deref(), Some("urn:uuid:9"));
        assert_eq!(elsewhere.concept.text.as_deref(), Some("Rinvoq"));
        // A `#id` nothing contained has, or a contained Medication without a code: the drug
        // is still to be told, not "no drug".
        for text in [
            r##"{"resourceType":"MedicationRequest","medicationReference":{"reference":"#m"}}"##,
            r##"{"resourceType":"MedicationRequest","medicationReference":{"reference":"#m"},"contained":[{"resourceType":"Medication","id":"m"}]}"##,
        ] {
            let missing = read(text).unwrap();
            assert_eq!(missing.reference.as_deref(), Some("#m"), "{text}");
            assert_eq!(missing.concept, Concept::default(), "{text}");
        }
        // R4 allows one of the two; given both, the code is the drug.
        let both = read(
            r#"{"resourceType":"MedicationRequest","medicationCodeableConcept":{"text":"tofacitinib"},"medicationReference":{"reference":"Medication/amox"}}"#,
        )
        .unwrap();
        assert_eq!(both.concept.text.as_deref(), Some("tofacitinib"));
        assert_eq!(both.reference, None);
        // Only the members naming the drug are read: an odd dosage does not hide it.
        let odd = read(
            r#"{"resourceType":"MedicationRequest","status":7,"dosageInstruction":[{"text":5}],"medicationCodeableConcept":{"text":"tofacitinib"}}"#,
        )
        .unwrap();
        assert_eq!(odd.concept.text.as_deref(), Some("tofacitinib"));
        // Those members not reading says where.
        let bad = read(
            r#"{"resourceType":"MedicationRequest","medicationCodeableConcept":{"coding":{"code":"x"}}}"#,
        )
        .unwrap_err();
        assert!(bad.contains("invalid type"), "{bad}");
        assert_eq!(
            medication_code(&serde_json::json!({"resourceType":"Medication","id":"m"})),
            None
        );
        assert_eq!(
            medication_code(&serde_json::json!({"resourceType":"Medication","code":{"text":"x"}}))
                .and_then(|c| c.text),
            Some("x".into())
        );
        assert_eq!(
            medication_code(&serde_json::json!({"resourceType":"Patient"})),
            None
        );
    }

    #[test]
    fn rejects_what_is_not_a_bundle() {
        let e = parse_bundle(r#"{"resourceType": "Patient", "id": "x"}"#).unwrap_err();
        assert!(e.message.contains("`Patient`"), "{e}");
        let e = parse_bundle("{ nope").unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{e}");
        let e = parse_bundle("[1,2]").unwrap_err();
        assert!(e.message.contains("not a FHIR Bundle"), "{e}");
        let e = parse_bundle(r#"{"resourceType": "Bundle", "entry": 7}"#).unwrap_err();
        assert!(e.location.contains("entry"), "{e}");
    }

    #[test]
    fn a_bad_resource_is_an_issue_with_its_path_and_the_rest_survives() {
        let text = r#"{"resourceType":"Bundle","entry":[
          {"resource":{"resourceType":"Patient","id":"p","birthDate":"1970-01-01","gender":"male"}},
          {"resource":{"resourceType":"Observation","id":"bad","valueQuantity":{"value":"high"}}},
          {"resource":{"resourceType":"Observation","id":"good","code":{"text":"x"},"subject":{"reference":"Patient/p"}}},
          {"resource":{"resourceType":"Observation","id":"other","subject":{"reference":"Patient/q"}}}
        ]}"#;
        let r = parse_bundle(text).expect("usable bundle");
        // A value that does not read is not dropped to read the rest (`KEPT_WHOLE`): the
        // Observation is not read, and the issue names where.
        assert_eq!(r.observations.len(), 1);
        assert_eq!(r.observations[0].reference, "Observation/good");
        assert!(
            r.issues.iter().any(|i| i.location == "entry[1].resource"
                && i.message.contains("valueQuantity.value")
                && !i.message.contains("read without it")),
            "{:?}",
            r.issues
        );
        assert!(r.issues.iter().any(|i| i.location == "Observation/other"));
    }

    #[test]
    fn a_resource_is_read_without_its_members_that_do_not_read() {
        let text = r#"{"resourceType":"Bundle","entry":[
          {"resource":{"resourceType":"Patient","id":"p","birthDate":"1970-01-01","gender":"male"}},
          {"resource":{"resourceType":"Condition","id":"tb","code":{"text":"active tuberculosis","coding":{"code":"x"}},"clinicalStatus":{"coding":[{"code":"active"}]},"subject":{"reference":"Patient/p"}}},
          {"resource":{"resourceType":"MedicationRequest","id":"m","status":"active","medicationCodeableConcept":{"text":"clarithromycin"},"dosageInstruction":[{"text":5}],"subject":{"reference":"Patient/p"}}},
          {"resource":{"resourceType":"Observation","id":"who","code":{"text":"x"},"subject":{"reference":7}}}
        ]}"#;
        let r = parse_bundle(text).expect("usable bundle");
        // A member dropped from the Condition and one from the order; both kept.
        assert_eq!(r.conditions.len(), 1);
        assert_eq!(
            r.conditions[0].code.text.as_deref(),
            Some("active tuberculosis")
        );
        assert_eq!(r.medications.len(), 1);
        assert_eq!(
            r.medications[0].medication.text.as_deref(),
            Some("clarithromycin")
        );
        let said = |path: &str| {
            r.issues.iter().any(|i| {
                i.message.contains(&format!("`{path}`")) && i.message.contains("read without it")
            })
        };
        assert!(
            said("code.coding") && said("dosageInstruction[0].text"),
            "{:?}",
            r.issues
        );
        // Whom a resource is about is never guessed: an unreadable subject drops it.
        assert!(r.observations.is_empty());
        // Nor is its status, intent or date of record: a stopped order, a withdrawn lab or a
        // lab's date would otherwise read as more than it is.
        for (kind, resource) in [
            (
                "order",
                r#"{"resourceType":"MedicationRequest","id":"x","status":{"code":"stopped"},"medicationCodeableConcept":{"text":"tofacitinib"}}"#,
            ),
            (
                "order",
                r#"{"resourceType":"MedicationRequest","id":"x","intent":["plan"],"medicationCodeableConcept":{"text":"tofacitinib"}}"#,
            ),
            (
                "lab",
                r#"{"resourceType":"Observation","id":"x","status":1,"code":{"text":"x"}}"#,
            ),
            (
                "lab",
                r#"{"resourceType":"Observation","id":"x","effectiveDateTime":20260101,"issued":"2026-11-01T00:00:00Z","code":{"text":"x"}}"#,
            ),
            (
                "patient",
                r#"{"resourceType":"Patient","id":7,"birthDate":"1970-01-01"}"#,
            ),
            // A member given twice: a value keeps the last, the reader refuses the text, even
            // with another member to drop beside it.
            (
                "order",
                r#"{"resourceType":"MedicationRequest","id":"x","status":"stopped","status":"active","medicationCodeableConcept":{"text":"tofacitinib"}}"#,
            ),
            (
                "order",
                r#"{"resourceType":"MedicationRequest","id":"x","status":"stopped","dosageInstruction":{},"status":"active","medicationCodeableConcept":{"text":"tofacitinib"}}"#,
            ),
            // A refuted or resolved condition's status, or its date.
            (
                "condition",
                r#"{"resourceType":"Condition","id":"x","code":{"text":"menopause"},"verificationStatus":{"coding":[{"code":7}]}}"#,
            ),
            (
                "condition",
                r#"{"resourceType":"Condition","id":"x","code":{"text":"pregnancy"},"clinicalStatus":[]}"#,
            ),
            (
                "condition",
                r#"{"resourceType":"Condition","id":"x","code":{"text":"myocardial infarction"},"onsetDateTime":5,"recordedDate":"2026-01-01"}"#,
            ),
        ] {
            let mut b = RecordBuilder::new();
            b.add_json(resource, "r", None);
            let r = b.finish().unwrap();
            let read = r.medications.len()
                + r.observations.len()
                + r.conditions.len()
                + usize::from(r.patient.birth_date.is_some());
            assert_eq!(read, 0, "{kind}: {resource}");
            assert_eq!(r.issues.len(), 1, "{resource}: {:?}", r.issues);
            assert!(
                !r.issues[0].message.contains("read without it"),
                "{:?}",
                r.issues
            );
        }
        assert!(
            r.issues
                .iter()
                .any(|i| i.message.contains("subject") && !i.message.contains("read without it")),
            "{:?}",
            r.issues
        );
    }
}

#[cfg(test)]
mod fast_path_tests {
    use super::*;

    #[test]
    fn synthea_takes_the_fast_path() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/data/synthea-r4"
        );
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten().take(5) {
            let p = e.path();
            if p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(parse_bundle_fast(&text).is_some(), "{}", p.display());
        }
    }
}
