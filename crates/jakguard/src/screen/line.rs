//! One NDJSON line: is it a usable resource, what type, and which patient is it about.
//!
//! Only the head of a resource is read here (`resourceType`, `id`, and as the type needs
//! them its patient reference and medication reference); the rest is checked for JSON
//! syntax and skipped. Resources kept for a patient are read in full later by the engine's
//! `RecordBuilder`. A bad line gets a reason that names no value from the line: the reasons
//! end up in logs.

use super::export;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

/// The head of a line: `resourceType`, `id` and the members that name a patient or a
/// medication, read in one pass over borrowed text; every other member is only checked.
/// (serde's derive would capture the reference members raw and parse them a second time.)
#[derive(Default)]
struct Head<'a> {
    resource_type: Option<Cow<'a, str>>,
    id: Option<Cow<'a, str>>,
    subject: Member<'a>,
    patient: Member<'a>,
    medication_reference: Member<'a>,
}

/// A member that should hold a Reference. Read leniently: an odd shape in a member the
/// file's type does not use is not a bad line.
#[derive(Default)]
enum Member<'a> {
    /// Missing or null.
    #[default]
    Absent,
    /// An object; its `reference`, if a string.
    Reference(Option<Cow<'a, str>>),
    /// Anything else (a string, a number, an array, a `reference` that is not a string or
    /// is given twice).
    NotReference,
}

/// The member names the head looks for, and `reference` inside a Reference (keys with
/// escapes are compared unescaped).
enum Key {
    ResourceType,
    Id,
    Subject,
    Patient,
    MedicationReference,
    Reference,
    Other,
}

impl Key {
    fn of(name: &str) -> Key {
        match name {
            "resourceType" => Key::ResourceType,
            "id" => Key::Id,
            "subject" => Key::Subject,
            "patient" => Key::Patient,
            "medicationReference" => Key::MedicationReference,
            "reference" => Key::Reference,
            _ => Key::Other,
        }
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_str<E>(self, v: &str) -> Result<Key, E> {
        Ok(Key::of(v))
    }
}

/// A string, borrowed from the line when it has no escapes.
struct Text;

impl<'de> Visitor<'de> for Text {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// An optional string (`null` is none); any other type is an error, as for `resourceType`
/// and `id`.
struct OptText;

impl<'de> DeserializeSeed<'de> for OptText {
    type Value = Option<Cow<'de, str>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for OptText {
    type Value = Option<Cow<'de, str>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or null")
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(Text).map(Some)
    }
}

/// A member that should be a Reference (`Shape { inner: false }`), or the `reference`
/// inside one (`inner: true`): never an error except bad JSON. Only an object is a
/// Reference, and only a string (or null) its `reference`; anything else is read through
/// and marked `NotReference`.
struct Shape {
    inner: bool,
}

impl<'de> DeserializeSeed<'de> for Shape {
    type Value = Member<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Shape {
    type Value = Member<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Reference")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(match self.inner {
            true => Member::Reference(None),
            false => Member::Absent,
        })
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.visit_unit()
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(match self.inner {
            true => Member::Reference(Some(Cow::Borrowed(v))),
            false => Member::NotReference,
        })
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(match self.inner {
            true => Member::Reference(Some(Cow::Owned(v.to_string()))),
            false => Member::NotReference,
        })
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Member::NotReference)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Member::NotReference)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Member::NotReference)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Member::NotReference)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Member::NotReference)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        if self.inner {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(Member::NotReference);
        }
        let mut found: Option<Member<'de>> = None;
        let mut twice = false;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if !matches!(key, Key::Reference) {
                map.next_value::<IgnoredAny>()?;
            } else if found.is_some() {
                twice = true;
                map.next_value::<IgnoredAny>()?;
            } else {
                found = Some(map.next_value_seed(Shape { inner: true })?);
            }
        }
        Ok(match found {
            _ if twice => Member::NotReference,
            Some(m) => m,
            None => Member::Reference(None),
        })
    }
}

/// Reads the head of a line of `file_type` resources: `resourceType` and `id`, which every
/// resource has, and the patient member and `medicationReference` where the type uses them.
/// A member that type does not use is checked for syntax like any other, whatever its shape
/// and however often it is given.
struct HeadVisitor {
    /// Per slot (resourceType, id, subject, patient, medicationReference): read or not.
    read: [bool; 5],
}

impl HeadVisitor {
    fn for_type(file_type: &str) -> HeadVisitor {
        let field = patient_field(file_type);
        HeadVisitor {
            read: [
                true,
                true,
                matches!(field, Some(PatientField::Subject)),
                matches!(field, Some(PatientField::Patient)),
                file_type.starts_with("Medication") && file_type != "Medication",
            ],
        }
    }
}

impl<'de> Visitor<'de> for HeadVisitor {
    type Value = Head<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a FHIR resource (a JSON object)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut head = Head::default();
        // Each member read once: one given twice is a bad line.
        let mut seen = [false; 5];
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let slot = match key {
                Key::ResourceType => Some(0),
                Key::Id => Some(1),
                Key::Subject => Some(2),
                Key::Patient => Some(3),
                Key::MedicationReference => Some(4),
                Key::Reference | Key::Other => None,
            };
            let Some(slot) = slot.filter(|&s| self.read[s]) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if std::mem::replace(&mut seen[slot], true) {
                return Err(serde::de::Error::custom("a member given twice"));
            }
            match key {
                Key::ResourceType => head.resource_type = map.next_value_seed(OptText)?,
                Key::Id => head.id = map.next_value_seed(OptText)?,
                Key::Subject => head.subject = map.next_value_seed(Shape { inner: false })?,
                Key::Patient => head.patient = map.next_value_seed(Shape { inner: false })?,
                Key::MedicationReference => {
                    head.medication_reference = map.next_value_seed(Shape { inner: false })?
                }
                Key::Reference | Key::Other => {}
            }
        }
        Ok(head)
    }
}

/// Where a resource type names its patient, for the types the assessment reads.
fn patient_field(resource_type: &str) -> Option<PatientField> {
    match resource_type {
        "Observation"
        | "Condition"
        | "MedicationRequest"
        | "MedicationStatement"
        | "MedicationAdministration"
        | "MedicationDispense"
        | "QuestionnaireResponse" => Some(PatientField::Subject),
        "Immunization" | "AllergyIntolerance" => Some(PatientField::Patient),
        _ => None,
    }
}

#[derive(Clone, Copy)]
enum PatientField {
    Subject,
    Patient,
}

/// What a line holds.
pub enum Line<'a> {
    /// Empty or white space: ignored, not counted.
    Blank,
    /// Not usable; the reason names no value from the line.
    Bad(String),
    Patient {
        id: Cow<'a, str>,
        json: &'a str,
    },
    Medication {
        id: Option<Cow<'a, str>>,
        json: &'a str,
    },
    /// A resource the assessment reads, about a patient of the export.
    About {
        patient: u32,
        json: &'a str,
        /// `medicationReference.reference`, for orders that name their drug that way.
        medication: Option<Cow<'a, str>>,
    },
    /// A valid resource of a type the assessment does not read.
    Other,
}

/// The export's patients: id → dense index. Hashed with foldhash (fast, and seeded per
/// process, so ids crafted to collide cannot slow the run down).
#[derive(Default)]
pub struct PatientIndex {
    by_id: HashMap<Box<str>, u32, foldhash::fast::RandomState>,
    pub ids: Vec<Box<str>>,
}

impl PatientIndex {
    pub fn insert(&mut self, id: &str) {
        if !self.by_id.contains_key(id) {
            let i = self.ids.len() as u32;
            self.ids.push(id.into());
            self.by_id.insert(id.into(), i);
        }
    }

    pub fn get(&self, id: &str) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// The patient a reference points to: `Patient/x`, `https://…/Patient/x` or `urn:uuid:x`
    /// where `x` is the id of a Patient in the export.
    pub fn resolve(&self, reference: &str) -> Option<u32> {
        self.get(patient_id_of(reference)?)
    }

    /// As `resolve`, when patient `likely` is the expected answer: its id is compared first,
    /// which is cheaper than a hash lookup in an index of millions (ids are unique, so the
    /// answer is the same).
    pub fn resolve_likely(&self, reference: &str, likely: u32) -> Option<u32> {
        let id = patient_id_of(reference)?;
        if self.ids.get(likely as usize).is_some_and(|l| **l == *id) {
            return Some(likely);
        }
        self.get(id)
    }
}

/// Resolves patient references with a memory of the last one: the lines of one patient
/// usually follow each other, and comparing with the previous reference is cheaper than a
/// hash lookup in an index of millions.
pub struct Resolver<'a> {
    index: &'a PatientIndex,
    last: Vec<u8>,
    found: Option<u32>,
}

impl<'a> Resolver<'a> {
    pub fn new(index: &'a PatientIndex) -> Self {
        Resolver {
            index,
            last: Vec::new(),
            found: None,
        }
    }

    /// As `PatientIndex::resolve`.
    pub fn resolve(&mut self, reference: &str) -> Option<u32> {
        if !self.last.is_empty() && self.last == reference.as_bytes() {
            return self.found;
        }
        self.found = self.index.resolve(reference);
        self.last.clear();
        self.last.extend_from_slice(reference.as_bytes());
        self.found
    }
}

/// The id inside a patient reference, if it has the shape of one.
pub fn patient_id_of(reference: &str) -> Option<&str> {
    // The usual form first, without searching the string for its last slash.
    if let Some(id) = reference.strip_prefix("Patient/")
        && !id.is_empty()
        && !id.contains('/')
    {
        return Some(id);
    }
    if let Some(id) = reference.strip_prefix("urn:uuid:") {
        return (!id.is_empty()).then_some(id);
    }
    let (before, id) = reference.rsplit_once('/')?;
    (before == "Patient" || before.ends_with("/Patient"))
        .then_some(id)
        .filter(|id| !id.is_empty())
}

/// Reads one line of a file of `file_type` resources. `patients` is `None` while the
/// patients themselves are being read (subjects are not resolved then).
pub fn read<'a>(
    bytes: &'a [u8],
    file_type: &'static str,
    patients: Option<&mut Resolver<'_>>,
) -> Line<'a> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Line::Blank;
    }
    let Ok(json) = utf8(bytes) else {
        return Line::Bad("not UTF-8 text".into());
    };
    let mut de = serde_json::Deserializer::from_str(json);
    let head: Head<'a> = match de
        .deserialize_map(HeadVisitor::for_type(file_type))
        .and_then(|h| de.end().map(|()| h))
    {
        Ok(h) => h,
        Err(e) => return Line::Bad(json_error(&e)),
    };
    let Some(ty) = head.resource_type.as_deref() else {
        return Line::Bad("no `resourceType`".into());
    };
    // The usual case needs no search through the list of types.
    let ty = if ty == file_type {
        file_type
    } else {
        match export::resource_type(ty) {
            Some(t) => t,
            None => return Line::Bad("unknown resource type".into()),
        }
    };
    if ty != file_type {
        return Line::Bad(format!("a {ty} in a file of {file_type} resources"));
    }
    match ty {
        "Patient" => match head.id {
            Some(id) if !id.is_empty() => Line::Patient { id, json },
            _ => Line::Bad("Patient without an `id`".into()),
        },
        "Medication" => Line::Medication { id: head.id, json },
        _ => {
            let Some(field) = patient_field(ty) else {
                return Line::Other;
            };
            let Some(patients) = patients else {
                return Line::Other;
            };
            let (member, name) = match field {
                PatientField::Subject => (head.subject, "subject"),
                PatientField::Patient => (head.patient, "patient"),
            };
            let reference = match member {
                Member::Absent | Member::Reference(None) => {
                    return Line::Bad(format!("{ty} without `{name}.reference`"));
                }
                Member::NotReference => return Line::Bad(format!("`{name}` is not a Reference")),
                Member::Reference(Some(r)) => r,
            };
            let Some(patient) = patients.resolve(&reference) else {
                return Line::Bad(format!(
                    "`{name}` does not refer to a Patient of this export"
                ));
            };
            let medication = match head.medication_reference {
                Member::Reference(Some(r)) => Some(Cow::Owned(r.into_owned())),
                _ => None,
            };
            Line::About {
                patient,
                json,
                medication,
            }
        }
    }
}

/// Whether lines of `file_type` may be read by the engine's strict one-pass reading
/// (`read_strict`): the types that name their patient and need nothing else from the
/// export (orders may point to a Medication resource, which the careful reading adds).
pub fn strict_readable(file_type: &str) -> bool {
    !file_type.starts_with("Medication") && patient_field(file_type).is_some()
}

/// The patient a line is about, told from its bytes alone when they leave no doubt: the
/// line's only `"subject"` (or `"patient"`) member is written `"subject":{"reference":"…"}`
/// without spaces or escapes, as exporters write it. Then, if the line is a valid resource
/// of its file's type at all, it is about that patient: a JSON string cannot hold an
/// unescaped quote, so the text `"subject"` occurs once only if there is one such member,
/// and the line's own patient reference would be that member. Whether the line is valid is
/// for the engine's strict reading to say when the line is read in full (a line it refuses
/// is a bad line then), or for `confirms`.
pub struct QuickSubject {
    /// `"subject":{"reference":"`
    member: &'static [u8],
    /// `"subject"`
    key: memchr::memmem::Finder<'static>,
    /// `{"resourceType":"Observation"`: how an exporter's line of the file's type begins.
    start: Box<[u8]>,
    /// `"resourceType"`
    resource_type: memchr::memmem::Finder<'static>,
    /// `"id"`
    id: memchr::memmem::Finder<'static>,
}

/// Where `QuickSubject::find` found a line's patient reference.
pub struct Subject<'a> {
    /// The reference, as written: it holds no escape, but `find` does not check it as JSON
    /// (a raw control character, which no JSON string may hold, is for the full reading or
    /// `confirms` to refuse).
    pub reference: &'a str,
    /// The member's first byte (the key's opening quote).
    at: usize,
    /// The byte after the reference's closing quote.
    end: usize,
}

impl QuickSubject {
    /// For the types `strict_readable` allows.
    pub fn for_type(file_type: &str) -> Option<QuickSubject> {
        if !strict_readable(file_type) {
            return None;
        }
        let (member, key): (&'static [u8], &'static [u8]) = match patient_field(file_type)? {
            PatientField::Subject => (b"\"subject\":{\"reference\":\"", b"\"subject\""),
            PatientField::Patient => (b"\"patient\":{\"reference\":\"", b"\"patient\""),
        };
        Some(QuickSubject {
            member,
            key: memchr::memmem::Finder::new(key),
            start: format!("{{\"resourceType\":\"{file_type}\"")
                .into_bytes()
                .into(),
            resource_type: memchr::memmem::Finder::new(b"\"resourceType\""),
            id: memchr::memmem::Finder::new(b"\"id\""),
        })
    }

    /// The line's patient reference, when its bytes leave no doubt which it is.
    pub fn find<'a>(&self, line: &'a [u8]) -> Option<Subject<'a>> {
        // The first occurrence of the key is the member, and there is no other.
        let at = self.key.find(line)?;
        if !line[at..].starts_with(self.member) {
            return None;
        }
        if self
            .key
            .find(&line[at + self.key.needle().len()..])
            .is_some()
        {
            return None;
        }
        let from = at + self.member.len();
        let len = memchr::memchr2(b'"', b'\\', &line[from..])?;
        if line[from + len] != b'"' {
            return None;
        }
        Some(Subject {
            reference: std::str::from_utf8(&line[from..from + len]).ok()?,
            at,
            end: from + len + 1,
        })
    }

    /// Whether the line is, beyond doubt, a valid resource of the file's type about the
    /// patient `subject` names: then `read` would say so too (`Line::About`, that patient),
    /// and the line need not be read member by member. This costs about two thirds of
    /// `read` on the export's observations: serde_json's plain syntax check (`IgnoredAny`)
    /// runs in one loop, while `read` goes through every top-level member. `false` only
    /// means that `read` must decide.
    ///
    /// The line must be written as exporters write it: the type first (`{"resourceType":`)
    /// and nowhere else, no escape anywhere (so no member is given twice under two
    /// spellings), `"id"` at most once and then as a member holding a string (wherever it
    /// is, the resource's own `id` is then a string given once, or absent), the patient
    /// member exactly `"subject":{"reference":"…"}` (or `"patient":…`, as the type names
    /// it) after another member, its reference free of control characters (so the member is
    /// valid JSON as it stands). Then two objects are checked: the members before the patient member, closed
    /// there (`{…}`), and the members after it (`{…}`), with a newline between them. The
    /// line is valid JSON with that member at the top level exactly when the two are: a
    /// member nested deeper would leave the first object closing an inner one, and a raw
    /// newline, which no JSON string may hold, keeps a string from reaching across from one
    /// to the other.
    pub fn confirms(&self, line: &[u8], subject: &Subject<'_>, scratch: &mut Vec<u8>) -> bool {
        let Subject { at, end, .. } = *subject;
        if at == 0 || line[at - 1] != b',' || line.get(end) != Some(&b'}') {
            return false;
        }
        if !line.starts_with(&self.start)
            || self.resource_type.find(&line[self.start.len()..]).is_some()
            || memchr::memchr(b'\\', line).is_some()
            || utf8(line).is_err()
        {
            return false;
        }
        // An `id` given twice, or not as a string, is for `read` to refuse.
        if let Some(i) = self.id.find(line) {
            let rest = &line[i + self.id.needle().len()..];
            if !rest.starts_with(b":\"") || self.id.find(rest).is_some() {
                return false;
            }
        }
        // The member itself is valid JSON: its bytes are fixed but for the reference, which
        // holds no quote or backslash (`find`) and is UTF-8 (above); no control character
        // either, then.
        if subject.reference.bytes().any(|b| b < 0x20) {
            return false;
        }
        // The members after it: `,"…` (not a comma too many) or the end of the object.
        let after = match &line[end + 1..] {
            rest @ [b',', b'"', ..] => &rest[1..],
            rest @ [b'}', ..] => rest,
            _ => return false,
        };
        // One deserializer reads both objects (its stack for nested members is allocated
        // once): two values and nothing more.
        scratch.clear();
        scratch.extend_from_slice(&line[..at - 1]);
        scratch.extend_from_slice(b"}\n{");
        scratch.extend_from_slice(after);
        let mut de = serde_json::Deserializer::from_slice(scratch);
        IgnoredAny::deserialize(&mut de).is_ok()
            && IgnoredAny::deserialize(&mut de).is_ok()
            && de.end().is_ok()
    }
}

/// The engine's strict one-pass reading of a line of `file_type` resources: the resource
/// and the patient of the export it names. `None` when the line needs the careful reading:
/// not UTF-8, not valid, another type, no patient reference, or one that names no patient
/// of the export (the careful reading says which, as a bad line). `likely` is the patient
/// the line is expected to be about (`PatientIndex::resolve_likely`).
pub fn read_strict<'a>(
    bytes: &'a [u8],
    file_type: &str,
    patients: &PatientIndex,
    likely: u32,
) -> Option<(u32, engine::fhir::Strict<'a>)> {
    let json = utf8(bytes).ok()?;
    let resource = engine::fhir::Strict::parse(json)?;
    if resource.resource_type() != file_type {
        return None;
    }
    let patient = patients.resolve_likely(resource.subject()?, likely)?;
    Some((patient, resource))
}

/// A whole line checked to be UTF-8 with SIMD instructions (`simdutf8`): the standard
/// library's check cost 2.5 % of a screen's CPU time, every byte of every line passing
/// through it.
fn utf8(bytes: &[u8]) -> Result<&str, simdutf8::basic::Utf8Error> {
    simdutf8::basic::from_utf8(bytes)
}

/// A serde_json error as a reason without the offending value.
fn json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax => format!("malformed JSON at column {}", e.column()),
        Category::Eof => "truncated JSON".into(),
        Category::Data => {
            "unexpected shape of `resourceType`, `id` or a reference, or a member given twice"
                .into()
        }
        Category::Io => "unreadable".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_references_in_their_usual_forms() {
        assert_eq!(patient_id_of("Patient/p1"), Some("p1"));
        assert_eq!(
            patient_id_of("https://ehr.example/fhir/Patient/p1"),
            Some("p1")
        );
        assert_eq!(patient_id_of("urn:uuid:1234"), Some("1234"));
        assert_eq!(patient_id_of("Group/p1"), None);
        assert_eq!(patient_id_of("p1"), None);
        assert_eq!(patient_id_of("Patient/"), None);
    }

    #[test]
    fn the_head_reads_odd_shapes_in_one_pass() {
        let mut ix = PatientIndex::default();
        ix.insert("p1");
        let read_as = |line: &str, ty: &'static str| match read(
            line.as_bytes(),
            ty,
            Some(&mut Resolver::new(&ix)),
        ) {
            Line::Bad(r) => format!("bad: {r}"),
            Line::About {
                patient,
                medication,
                ..
            } => format!("about {patient} med {medication:?}"),
            Line::Patient { id, .. } => format!("patient {id}"),
            Line::Medication { id, .. } => format!("medication {id:?}"),
            Line::Other => "other".into(),
            Line::Blank => "blank".into(),
        };
        let twice =
            "bad: unexpected shape of `resourceType`, `id` or a reference, or a member given twice";
        let cases: &[(&str, &str, &str)] = &[
            // The usual shape, escapes in the reference and in a key.
            (
                r#"{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}"#,
                "Observation",
                "about 0 med None",
            ),
            (
                r#"{"resourceType":"Observation","subject":{"display":"x","reference":"Patient\/p1"}}"#,
                "Observation",
                "about 0 med None",
            ),
            (
                r#"{"resource\u0054ype":"Observation","subject":{"reference":"Patient/p1"}}"#,
                "Observation",
                "about 0 med None",
            ),
            // A medication reference is kept, an odd one ignored.
            (
                r#"{"resourceType":"MedicationRequest","subject":{"reference":"Patient/p1"},"medicationReference":{"reference":"Medication/m1"}}"#,
                "MedicationRequest",
                r#"about 0 med Some("Medication/m1")"#,
            ),
            (
                r#"{"resourceType":"MedicationRequest","subject":{"reference":"Patient/p1"},"medicationReference":"m1"}"#,
                "MedicationRequest",
                "about 0 med None",
            ),
            // Missing, null, not a Reference.
            (
                r#"{"resourceType":"Observation","subject":null}"#,
                "Observation",
                "bad: Observation without `subject.reference`",
            ),
            (
                r#"{"resourceType":"Observation","subject":{"reference":null}}"#,
                "Observation",
                "bad: Observation without `subject.reference`",
            ),
            (
                r#"{"resourceType":"Observation","subject":{}}"#,
                "Observation",
                "bad: Observation without `subject.reference`",
            ),
            (
                r#"{"resourceType":"Observation","subject":"Patient/p1"}"#,
                "Observation",
                "bad: `subject` is not a Reference",
            ),
            (
                r#"{"resourceType":"Observation","subject":["Patient/p1"]}"#,
                "Observation",
                "bad: `subject` is not a Reference",
            ),
            (
                r#"{"resourceType":"Observation","subject":{"reference":7}}"#,
                "Observation",
                "bad: `subject` is not a Reference",
            ),
            (
                r#"{"resourceType":"Observation","subject":{"reference":"Patient/p1","reference":"Patient/p1"}}"#,
                "Observation",
                "bad: `subject` is not a Reference",
            ),
            // The member the type does not use may have any shape.
            (
                r#"{"resourceType":"Observation","patient":5,"subject":{"reference":"Patient/p1"}}"#,
                "Observation",
                "about 0 med None",
            ),
            (
                r#"{"resourceType":"Immunization","subject":[1],"patient":{"reference":"Patient/p1"}}"#,
                "Immunization",
                "about 0 med None",
            ),
            // A member the type does not use may also be given twice; one it reads may not.
            (
                r#"{"resourceType":"Observation","patient":1,"patient":{},"medicationReference":2,"medicationReference":3,"subject":{"reference":"Patient/p1"}}"#,
                "Observation",
                "about 0 med None",
            ),
            (
                r#"{"resourceType":"Observation","id":"a","id":"b","subject":{"reference":"Patient/p1"}}"#,
                "Observation",
                twice,
            ),
            (
                r#"{"resourceType":"Observation","id":["a"],"subject":{"reference":"Patient/p1"}}"#,
                "Observation",
                twice,
            ),
            (
                r#"{"resourceType":"Patient","id":"p1","id":"p2"}"#,
                "Patient",
                twice,
            ),
            (
                r#"{"resourceType":"MedicationRequest","subject":{"reference":"Patient/p1"},"medicationReference":{"reference":"Medication/m1"},"medicationReference":null}"#,
                "MedicationRequest",
                twice,
            ),
            // Head members given twice, or of the wrong type.
            (
                r#"{"resourceType":"Observation","resourceType":"Observation"}"#,
                "Observation",
                twice,
            ),
            (
                r#"{"resourceType":"Observation","subject":null,"subject":{"reference":"Patient/p1"}}"#,
                "Observation",
                twice,
            ),
            (r#"{"resourceType":7}"#, "Observation", twice),
            (
                r#"{"resourceType":"Patient","id":["p1"]}"#,
                "Patient",
                twice,
            ),
            // Not an object at all. (serde's derive, used before, read a JSON array as the
            // members in order, and a Reference given as `["Patient/p1"]` too: neither is
            // FHIR, and both are bad lines now.)
            (r#"["Patient","p1",null,null,null]"#, "Patient", twice),
            ("null", "Patient", twice),
            // Syntax.
            (
                r#"{"resourceType":"Observation","subject":{"reference":"Patient/p1"}"#,
                "Observation",
                "bad: truncated JSON",
            ),
            (
                r#"{"resourceType":"Observation"} x"#,
                "Observation",
                "bad: malformed JSON at column 32",
            ),
            // Other shapes.
            (
                r#"{"resourceType":"Patient","id":"p1"}"#,
                "Patient",
                "patient p1",
            ),
            (
                r#"{"resourceType":"Patient","id":null}"#,
                "Patient",
                "bad: Patient without an `id`",
            ),
            (
                r#"{"resourceType":"Encounter","subject":"odd"}"#,
                "Encounter",
                "other",
            ),
            (
                r#"{"resourceType":"Medication"}"#,
                "Medication",
                "medication None",
            ),
        ];
        for (line, ty, want) in cases {
            assert_eq!(read_as(line, ty), *want, "{line}");
        }
    }

    #[test]
    fn the_resolver_remembers_the_last_reference_and_only_that() {
        let mut ix = PatientIndex::default();
        ix.insert("p1");
        ix.insert("p2");
        let mut who = Resolver::new(&ix);
        let seq = [
            "Patient/p1",
            "Patient/p1",
            "Patient/p2",
            "Patient/zz",
            "Patient/zz",
            "urn:uuid:p1",
            "",
            "Patient/p2",
        ];
        let got: Vec<Option<u32>> = seq.iter().map(|r| who.resolve(r)).collect();
        let want: Vec<Option<u32>> = seq.iter().map(|r| ix.resolve(r)).collect();
        assert_eq!(got, want);
        assert_eq!(
            got,
            vec![
                Some(0),
                Some(0),
                Some(1),
                None,
                None,
                Some(0),
                None,
                Some(1)
            ]
        );
    }

    #[test]
    fn the_bytes_tell_the_patient_only_when_they_leave_no_doubt() {
        let mut ix = PatientIndex::default();
        ix.insert("p1");
        ix.insert("p2");
        let mut who = Resolver::new(&ix);
        let quick = QuickSubject::for_type("Observation").expect("observations name a subject");
        assert!(QuickSubject::for_type("MedicationRequest").is_none());
        assert!(QuickSubject::for_type("Patient").is_none());
        let imm = QuickSubject::for_type("Immunization").expect("immunizations name a patient");
        let mut guess =
            |q: &QuickSubject, line: &str| who.resolve(q.find(line.as_bytes())?.reference);
        assert_eq!(
            guess(
                &quick,
                r#"{"resourceType":"Observation","subject":{"reference":"Patient/p2"},"code":{"text":"x"}}"#
            ),
            Some(1)
        );
        assert_eq!(
            guess(
                &imm,
                r#"{"resourceType":"Immunization","patient":{"reference":"Patient/p1"}}"#
            ),
            Some(0)
        );
        // Two subjects (one nested): no guess, whichever comes first.
        let nested = r#"{"resourceType":"Observation","contained":[{"resourceType":"Observation","subject":{"reference":"Patient/p2"}}],"subject":{"reference":"Patient/p1"}}"#;
        assert_eq!(guess(&quick, nested), None);
        let spaced = r#"{"resourceType":"Observation","subject": {"reference": "Patient/p1"},"contained":[{"subject":{"reference":"Patient/p2"}}]}"#;
        assert_eq!(guess(&quick, spaced), None);
        // Spaces, escapes, an unknown patient or no subject: no guess.
        assert_eq!(
            guess(&quick, r#"{"subject": {"reference": "Patient/p1"}}"#),
            None
        );
        assert_eq!(
            guess(&quick, r#"{"subject":{"reference":"Patient\/p1"}}"#),
            None
        );
        assert_eq!(
            guess(&quick, r#"{"subject":{"reference":"Patient/zz"}}"#),
            None
        );
        assert_eq!(guess(&quick, r#"{"resourceType":"Observation"}"#), None);
        // A string holding the word in escaped quotes is not a member.
        assert_eq!(
            guess(
                &quick,
                r#"{"note":"the \"subject\" is","subject":{"reference":"Patient/p1"}}"#
            ),
            Some(0)
        );
    }

    /// What `read` says of a line of observations, in short.
    fn read_says(ix: &PatientIndex, line: &[u8]) -> String {
        match read(line, "Observation", Some(&mut Resolver::new(ix))) {
            Line::About { patient, .. } => format!("about {patient}"),
            Line::Bad(r) => format!("bad: {r}"),
            _ => "other".into(),
        }
    }

    /// `confirms` for a line of observations, with the patient `find` saw.
    fn confirmed(ix: &PatientIndex, line: &[u8]) -> Option<u32> {
        let quick = QuickSubject::for_type("Observation")?;
        let subject = quick.find(line)?;
        let p = ix.resolve(subject.reference)?;
        quick.confirms(line, &subject, &mut vec![]).then_some(p)
    }

    #[test]
    fn a_line_confirmed_from_its_bytes_is_one_the_member_by_member_reading_accepts() {
        let mut ix = PatientIndex::default();
        ix.insert("p1");
        ix.insert("p2");
        let usual = r#"{"resourceType":"Observation","id":"o1","code":{"coding":[{"system":"http://loinc.org","code":"751-8"}]},"subject":{"reference":"Patient/p2"},"valueQuantity":{"value":3.9,"unit":"10*3/uL"}}"#;
        let confirmed_lines = [
            usual,
            r#"{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}"#,
            r#"{"resourceType":"Observation","id":"o","subject":{"reference":"urn:uuid:p1"},"status":"final"}  "#,
        ];
        for line in confirmed_lines {
            let p = confirmed(&ix, line.as_bytes());
            assert!(p.is_some(), "not confirmed: {line}");
            assert_eq!(
                read_says(&ix, line.as_bytes()),
                format!("about {}", p.unwrap_or(9))
            );
        }
        // Left to `read`: whatever it says, `confirms` must not have said it first.
        let refused = [
            // The only subject nested in another member, or in a contained resource.
            r#"{"resourceType":"Observation","extension":[{"subject":{"reference":"Patient/p1"}}]}"#,
            r#"{"resourceType":"Observation","note":{"x":1,"subject":{"reference":"Patient/p1"}}}"#,
            r#"{"resourceType":"Observation","contained":[{"resourceType":"Observation","id":"c","subject":{"reference":"Patient/p1"}}]}"#,
            // Bad JSON before or after the member, or a comma too many.
            r#"{"resourceType":"Observation","id":"o" "x","subject":{"reference":"Patient/p1"}}"#,
            r#"{"resourceType":"Observation","subject":{"reference":"Patient/p1"},"x":}"#,
            r#"{"resourceType":"Observation","subject":{"reference":"Patient/p1"},}"#,
            r#"{"resourceType":"Observation","subject":{"reference":"Patient/p1"}} x"#,
            r#"{"resourceType":"Observation","subject":{"reference":"Patient/p1"}"#,
            // Another type, the type twice (even spelt with an escape), a member given twice
            // under two spellings.
            r#"{"resourceType":"Condition","subject":{"reference":"Patient/p1"}}"#,
            r#"{"resourceType":"ObservationX","subject":{"reference":"Patient/p1"}}"#,
            r#"{"resourceType":"Observation","resourceType":"Condition","subject":{"reference":"Patient/p1"}}"#,
            r#"{"resourceType":"Observation","resource\u0054ype":"Condition","subject":{"reference":"Patient/p1"}}"#,
            r#"{"resourceType":"Observation","subj\u0065ct":null,"subject":{"reference":"Patient/p1"}}"#,
            // A subject with more in it, or written otherwise.
            r#"{"resourceType":"Observation","subject":{"reference":"Patient/p1","reference":"Patient/p2"}}"#,
            r#"{"resourceType":"Observation","subject":{"reference":"Patient/p1","display":"x"}}"#,
            r#"{"resourceType":"Observation", "subject":{"reference":"Patient/p1"}}"#,
            r#"{ "resourceType":"Observation","subject":{"reference":"Patient/p1"}}"#,
            // An id given twice, or not a string.
            r#"{"resourceType":"Observation","id":"a","id":"b","subject":{"reference":"Patient/p1"}}"#,
            r#"{"resourceType":"Observation","id":"a","subject":{"reference":"Patient/p1"},"id":"b"}"#,
            r#"{"resourceType":"Observation","id":["a"],"subject":{"reference":"Patient/p1"}}"#,
            r#"{"resourceType":"Observation","id":7,"subject":{"reference":"Patient/p1"}}"#,
            // Bad lines whose two halves could each be read as JSON values if the parts were
            // joined by a space (a string reaching across it), found by a review.
            r#"{"resourceType":"Observation"} ","subject":{"reference":"Patient/p1"},""#,
            r#"{"resourceType":"Observation","a":","subject":{"reference":"Patient/p1"},"} 0"#,
            r#"{"resourceType":"Observation","a":","subject":{"reference":"Patient/p1"},"} {}"#,
        ];
        for line in refused {
            assert_eq!(confirmed(&ix, line.as_bytes()), None, "{line}");
        }
        // A control character in the reference (which `find` does not look at as JSON).
        for bad in [
            "{\"resourceType\":\"Observation\",\"id\":\"o\",\"subject\":{\"reference\":\"https://ex\tample/Patient/p1\"}}",
            "{\"resourceType\":\"Observation\",\"subject\":{\"reference\":\"\u{1}/Patient/p2\"}}",
        ] {
            assert_eq!(confirmed(&ix, bad.as_bytes()), None, "{bad:?}");
            assert!(read_says(&ix, bad.as_bytes()).starts_with("bad"), "{bad:?}");
        }
        // Not UTF-8.
        let mut bytes = usual.as_bytes().to_vec();
        bytes[40] = 0xff;
        assert_eq!(confirmed(&ix, &bytes), None);
        assert!(read_says(&ix, &bytes).starts_with("bad"));
        // The nested subjects above are bad lines for `read`: no subject of its own.
        assert!(read_says(&ix, refused[0].as_bytes()).contains("without `subject.reference`"));
        assert!(read_says(&ix, refused[2].as_bytes()).contains("without `subject.reference`"));
    }

    #[test]
    fn lines_changed_at_random_are_confirmed_only_when_read_accepts_them() {
        use rand::{Rng, SeedableRng};
        let mut ix = PatientIndex::default();
        ix.insert("p1");
        ix.insert("p2");
        let lines = [
            r#"{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"751-8"}]},"subject":{"reference":"Patient/p2"},"effectiveDateTime":"2026-01-02","valueQuantity":{"value":3.9,"unit":"10*3/uL"}}"#,
            r#"{"resourceType":"Observation","code":{"text":"x"},"subject":{"reference":"Patient/p1"}}"#,
            // A reference that still names p1 when a byte of its start changes.
            r#"{"resourceType":"Observation","subject":{"reference":"https://example.org/fhir/Patient/p1"},"status":"final"}"#,
        ];
        // Bytes that matter to JSON, and some that do not.
        let alphabet = b"{}[]\",:\\ \t\n\x010aeu\x80";
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let (mut confirmed_changed, mut refused) = (0, 0);
        for _ in 0..40_000 {
            let mut line = lines[rng.random_range(0..lines.len())].as_bytes().to_vec();
            for _ in 0..rng.random_range(1..=3) {
                let at = rng.random_range(0..line.len());
                let byte = alphabet[rng.random_range(0..alphabet.len())];
                match rng.random_range(0..3) {
                    0 => line[at] = byte,
                    1 => line.insert(at, byte),
                    _ => {
                        line.remove(at);
                    }
                }
            }
            match confirmed(&ix, &line) {
                Some(p) => {
                    confirmed_changed += 1;
                    assert_eq!(
                        read_says(&ix, &line),
                        format!("about {p}"),
                        "{}",
                        String::from_utf8_lossy(&line)
                    );
                }
                None => refused += 1,
            }
        }
        // Both answers were given often: the changes hit the line everywhere.
        assert!(
            confirmed_changed > 1_000 && refused > 10_000,
            "{confirmed_changed} {refused}"
        );
    }

    #[test]
    fn the_strict_reading_finds_the_real_subject_and_refuses_what_it_must() {
        let mut ix = PatientIndex::default();
        ix.insert("p1");
        ix.insert("p2");
        assert!(strict_readable("Observation"));
        assert!(strict_readable("Immunization"));
        assert!(!strict_readable("MedicationRequest"));
        assert!(!strict_readable("Patient"));
        assert!(!strict_readable("Encounter"));
        // A nested reference comes first; the resource is about p1.
        let nested = br#"{"resourceType":"Observation","contained":[{"resourceType":"Observation","subject":{"reference":"Patient/p2"}}],"subject":{"reference":"Patient/p1"},"code":{"text":"x"}}"#;
        let (p, r) = read_strict(nested, "Observation", &ix, 0).expect("valid");
        assert_eq!((p, r.subject()), (0, Some("Patient/p1")));
        // The expected patient is only a hint: another one, or one beyond the index, still
        // gives the patient the line names.
        for likely in [1, 7] {
            let (p, _) = read_strict(nested, "Observation", &ix, likely).expect("valid");
            assert_eq!(p, 0);
        }
        assert_eq!(ix.resolve_likely("Patient/p2", 0), Some(1));
        assert_eq!(ix.resolve_likely("Patient/p2", 1), Some(1));
        assert_eq!(ix.resolve_likely("Patient/p3", 0), None);
        assert_eq!(ix.resolve_likely("Group/p1", 0), None);
        // A strict reading of the wrong type, an unknown patient or bad JSON is refused.
        let line = br#"{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}"#;
        assert!(read_strict(line, "Condition", &ix, 0).is_none());
        assert!(read_strict(line, "Observation", &ix, 0).is_some());
        let unknown = br#"{"resourceType":"Observation","subject":{"reference":"Patient/zz"}}"#;
        assert!(read_strict(unknown, "Observation", &ix, 0).is_none());
        assert!(read_strict(&line[..line.len() - 1], "Observation", &ix, 0).is_none());
    }

    #[test]
    fn bad_lines_say_why_without_quoting_the_line() {
        let mut ix = PatientIndex::default();
        ix.insert("p1");
        let reason =
            |s: &str, ty: &'static str| match read(s.as_bytes(), ty, Some(&mut Resolver::new(&ix)))
            {
                Line::Bad(r) => r,
                _ => String::from("not bad"),
            };
        assert!(reason(r#"{"resourceType":"Observation","#, "Observation").contains("truncated"));
        assert!(reason(r#"{"resourceType":"Observation" "x"}"#, "Observation").contains("column"));
        assert_eq!(
            reason(r#"{"resourceType":"Foo"}"#, "Observation"),
            "unknown resource type"
        );
        assert!(
            reason(r#"{"resourceType":"Observation","id":"o"}"#, "Observation").contains("subject")
        );
        assert!(
            reason(
                r#"{"resourceType":"Observation","subject":{"reference":"Patient/secret"}}"#,
                "Observation"
            )
            .contains("does not refer")
        );
        assert!(
            !reason(
                r#"{"resourceType":"Observation","subject":{"reference":"Patient/secret"}}"#,
                "Observation"
            )
            .contains("secret")
        );
        assert!(matches!(
            read(
                br#"{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}"#,
                "Observation",
                Some(&mut Resolver::new(&ix))
            ),
            Line::About { patient: 0, .. }
        ));
        assert!(matches!(
            read(b"  ", "Observation", Some(&mut Resolver::new(&ix))),
            Line::Blank
        ));
    }
}
