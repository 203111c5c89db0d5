//! The knowledge files exactly as a reviewer writes them (TOML), before validation.
//!
//! Every struct denies unknown keys so that a misspelt key is an error naming the file and
//! line, never a silently ignored setting. Identifiers that other entries refer to are
//! `Spanned` so that a dangling reference or a duplicate can be reported at its line.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

pub type Id = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: String,
    pub title: String,
    pub jurisdiction: String,
    pub disclaimer: String,
    /// Short names used in the value sets (`loinc`) mapped to FHIR system URIs.
    pub systems: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub citation: Vec<Citation>,
    #[serde(default)]
    pub quantity: Vec<Quantity>,
    #[serde(default)]
    pub alias: Vec<UnitAlias>,
    #[serde(default)]
    pub valueset: Vec<ValueSet>,
    #[serde(default)]
    pub lab: Vec<Lab>,
    #[serde(default)]
    pub drug: Vec<Drug>,
    #[serde(default)]
    pub rule: Vec<Rule>,
    #[serde(default)]
    pub screening: Vec<Screening>,
    #[serde(default)]
    pub monitoring: Vec<Monitoring>,
    #[serde(default)]
    pub score: Vec<Score>,
    // Patient-facing knowledge (`knowledge/patient/`): the questionnaire, the symptom triage
    // table, the drug pages. Plain-language text, every statement cited like the rules.
    pub questionnaire: Option<Questionnaire>,
    #[serde(default)]
    pub answer_set: Vec<AnswerSet>,
    #[serde(default)]
    pub question_group: Vec<Group>,
    #[serde(default)]
    pub question: Vec<Question>,
    #[serde(default)]
    pub patient_test: Vec<PatientTest>,
    #[serde(default)]
    pub triage_level: Vec<TriageLevelText>,
    #[serde(default)]
    pub symptom_group: Vec<Group>,
    #[serde(default)]
    pub symptom: Vec<Symptom>,
    #[serde(default)]
    pub drug_page: Vec<DrugPage>,
    /// The clinicians' quick-check form (`knowledge/clinician/`).
    #[serde(default)]
    pub quick_field: Vec<QuickField>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Citation {
    pub id: Id,
    /// How the citation is shown in compact views (`XELJANZ USPI §2.1`).
    pub short: String,
    pub source: String,
    pub section: String,
    pub url: Option<String>,
    /// The key of the source in `shared/reference/label-facts.md` (e.g. `S3`).
    pub reference: Option<String>,
    pub verified: bool,
    pub note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quantity {
    pub id: Id,
    pub title: String,
    /// The UCUM unit every value of this quantity is converted to.
    pub canonical: String,
    pub units: Vec<Unit>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unit {
    pub ucum: String,
    /// Exact decimal (`"1000"`) or ratio (`"1/88.42"`): canonical value = value × factor.
    pub factor: String,
    pub note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitAlias {
    /// A spelling labs really send that is not the UCUM code (`K/uL`).
    pub text: String,
    pub ucum: String,
    pub note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueSet {
    pub id: Id,
    pub title: String,
    pub note: Option<String>,
    #[serde(default)]
    pub text: Vec<String>,
    #[serde(default)]
    pub code: Vec<Code>,
    #[serde(default)]
    pub prefix: Vec<Prefix>,
    #[serde(default)]
    pub exclude: Vec<Exclude>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Code {
    pub system: Spanned<String>,
    pub code: String,
    pub display: String,
    pub verified: bool,
    pub source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prefix {
    pub system: Spanned<String>,
    pub prefix: String,
    pub display: String,
    pub verified: bool,
    pub source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exclude {
    pub system: Spanned<String>,
    pub code: Option<String>,
    pub prefix: Option<String>,
    pub display: String,
    pub verified: bool,
    pub source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lab {
    pub id: Id,
    pub name: String,
    /// What to order when the value is missing or too old.
    pub order: String,
    /// `quantity` (a number with a unit) or `coded` (positive/negative, a SNOMED answer…).
    pub kind: LabKind,
    /// The quantity (units table) a `quantity` lab is converted through.
    pub quantity: Option<Id>,
    #[serde(default)]
    pub valuesets: Vec<Id>,
    /// How the engine derives the value when no result is recorded.
    pub computed: Option<Computed>,
    /// Values outside this range (canonical unit) are a data-quality finding, not a result.
    pub plausible_min: Option<String>,
    pub plausible_max: Option<String>,
    /// For coded labs that some labs report as a number (viral loads): how to read a number.
    pub numeric: Option<NumericReading>,
}

/// Reading a numeric result of a coded lab: a value above `detected_above` (with no `<`
/// comparator) is the `positive` answer, anything else the `negative` answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumericReading {
    pub detected_above: String,
    pub positive: Id,
    pub negative: Id,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LabKind {
    Quantity,
    Coded,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Computed {
    /// Creatinine clearance by Cockcroft-Gault from age, weight, serum creatinine and sex.
    CockcroftGault,
    /// eGFR by the race-free CKD-EPI 2021 creatinine equation.
    #[serde(rename = "ckd-epi-2021")]
    CkdEpi2021,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drug {
    pub id: Id,
    pub name: String,
    pub brands: Vec<String>,
    pub valueset: Id,
    pub default_dose: Id,
    pub citations: Vec<Id>,
    pub dose: Vec<Dose>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dose {
    pub id: Id,
    pub mg: String,
    pub times_per_day: u32,
    pub product: String,
    pub text: String,
    /// Higher rank is more restrictive; when several rules adjust the dose, the highest wins.
    pub rank: u32,
    pub citations: Vec<Id>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: Id,
    pub title: String,
    pub drugs: Vec<Id>,
    pub phase: Phase,
    pub category: Category,
    pub severity: Severity,
    pub decision: Decision,
    /// The dose (of each drug in `drugs`) this rule imposes when it fires.
    pub dose: Option<String>,
    pub summary: String,
    pub action: String,
    pub citations: Vec<Id>,
    pub verified: bool,
    pub note: Option<String>,
    pub when: Predicate,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Start,
    OnTreatment,
    Any,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    Indication,
    BoxedWarning,
    Contraindication,
    LabThreshold,
    Screening,
    Dose,
    Interaction,
    Vaccination,
    PregnancyLactation,
    Monitoring,
    DataQuality,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// Ordered from best to worst so that `max` gives the decision that wins.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    Eligible,
    Caution,
    DataNeeded,
    DoNotStart,
}

/// The condition language of rules. Each predicate is true, false or unknown (data missing).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Predicate {
    All(Vec<Predicate>),
    Any(Vec<Predicate>),
    Not(Box<Predicate>),
    Lab(LabTest),
    LabDrop(LabDrop),
    Result(ResultTest),
    Condition(ConditionTest),
    Medication(MedicationTest),
    Immunization(ImmunizationTest),
    Allergy(AllergyTest),
    Age(AgeTest),
    Sex(SexTest),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabTest {
    pub id: Id,
    pub below: Option<String>,
    pub at_most: Option<String>,
    pub above: Option<String>,
    pub at_least: Option<String>,
    /// The result must be at most this many days old, or the rule needs data.
    pub within_days: u32,
    /// The last `consecutive` results must all meet the threshold (confirmed by repeat testing).
    pub consecutive: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabDrop {
    pub id: Id,
    /// A fall from the pre-treatment baseline larger than this (value with unit).
    pub more_than: String,
    pub within_days: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultTest {
    pub id: Id,
    /// The answer value set the latest result must be in.
    #[serde(rename = "in")]
    pub answers: Id,
    pub within_days: u32,
    /// What a missing or too-old result means. `unknown` (the default) asks for the data;
    /// `false` reads absence as "no" — only for facts recorded mainly when present (e.g.
    /// breastfeeding), and the rule's note must say why.
    #[serde(default)]
    pub absent: Absent,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Absent {
    #[default]
    Unknown,
    False,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionTest {
    #[serde(rename = "in")]
    pub valueset: Id,
    #[serde(default)]
    pub status: ConditionStatus,
    /// For `status = "ever"`: only conditions with onset (or record) within this many days.
    pub within_days: Option<u32>,
    /// Only conditions whose onset (or record date) is on or after the treatment start
    /// (events during treatment). False when the patient is not on the drug.
    #[serde(default)]
    pub since_treatment_start: bool,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ConditionStatus {
    #[default]
    Active,
    Ever,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MedicationTest {
    #[serde(rename = "in")]
    pub valueset: Id,
    #[serde(default)]
    pub status: MedicationStatus,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum MedicationStatus {
    /// Taken now or being ordered now (active, on-hold, draft).
    #[default]
    Active,
    /// Ever recorded (anything but entered-in-error or cancelled).
    Ever,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImmunizationTest {
    #[serde(rename = "in")]
    pub valueset: Id,
    pub within_days: Option<u32>,
    /// At least this many doses (a vaccine series); default 1.
    pub doses: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllergyTest {
    #[serde(rename = "in")]
    pub valueset: Id,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgeTest {
    pub at_least: Option<u32>,
    pub below: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SexTest {
    pub is: Sex,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sex {
    Female,
    Male,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Screening {
    pub id: Id,
    pub title: String,
    /// Labs whose results this item needs; empty for immunization items.
    #[serde(default)]
    pub labs: Vec<Id>,
    /// Immunization value set whose presence completes the item.
    pub immunization: Option<Id>,
    /// Results older than this are "too old".
    pub within_days: Option<u32>,
    /// The item is "abnormal" when any of these rules fired for any drug.
    #[serde(default)]
    pub abnormal_rules: Vec<Id>,
    /// The item applies only when this holds (e.g. pregnancy status for females of reproductive potential).
    pub applies: Option<Predicate>,
    pub action: String,
    pub citations: Vec<Id>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Monitoring {
    pub id: Id,
    pub drug: Id,
    pub title: String,
    pub labs: Vec<Id>,
    /// The first check after starting falls between these weeks (inclusive).
    pub first_from_week: u32,
    pub first_to_week: u32,
    /// Then every this many weeks; absent when later checks follow routine care.
    pub every_weeks: Option<u32>,
    pub citations: Vec<Id>,
    pub verified: bool,
    pub note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Score {
    pub id: Id,
    pub name: String,
    /// Input name → lab id holding it (BASDAI questions, patient global, CRP, ESR).
    pub inputs: BTreeMap<String, Id>,
    /// Questionnaire answers: input name → QuestionnaireResponse item linkIds.
    #[serde(default)]
    pub answers: BTreeMap<String, Vec<String>>,
    pub within_days: u32,
    pub states: Vec<ScoreState>,
    pub citations: Vec<Id>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreState {
    /// The state applies from this value (inclusive) …
    pub from: String,
    /// … up to this value (exclusive unless `to_inclusive`).
    pub to: Option<String>,
    #[serde(default)]
    pub to_inclusive: bool,
    pub name: String,
}

// ---- patient-facing knowledge ---------------------------------------------------------------

/// The "before you start" questionnaire's header: a FHIR R4 `Questionnaire` whose items are
/// the `[[question]]` entries, grouped by `[[question_group]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Questionnaire {
    pub id: Id,
    /// The canonical URL a QuestionnaireResponse names in `questionnaire`.
    pub url: String,
    pub version: String,
    pub title: String,
    /// Plain-language introduction shown above the form.
    pub intro: String,
    /// Tests the doctor is likely to order for everyone before a JAK inhibitor.
    pub baseline_tests: Vec<Id>,
    pub citations: Vec<Id>,
}

/// A list of answer options a choice question offers (FHIR `answerOption.valueCoding`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerSet {
    pub id: Id,
    /// Short name of a code system from the manifest's `[systems]`.
    pub system: Spanned<String>,
    pub option: Vec<AnswerOption>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerOption {
    pub code: String,
    pub display: String,
    /// True when this answer is something the doctor will want to discuss.
    pub flag: bool,
}

/// A heading that groups questions or symptoms.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub id: Id,
    pub title: String,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum QuestionType {
    /// One answer from an answer set (FHIR `choice`, answered with `valueCoding`).
    Choice,
    /// Free text (FHIR `text`, answered with `valueString`).
    Text,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    /// The FHIR `linkId`.
    pub id: Id,
    pub group: Id,
    pub text: String,
    #[serde(rename = "type")]
    pub kind: QuestionType,
    /// For choice questions: the answer set.
    pub answers: Option<Id>,
    #[serde(default)]
    pub required: bool,
    /// Why we ask, in plain words (shown under the question).
    pub help: String,
    /// What the doctor will want to discuss when a flagged answer is given (choice) or
    /// anything is written (text).
    pub discuss: String,
    /// Tests the doctor is likely to add because of a flagged answer.
    #[serde(default)]
    pub tests: Vec<Id>,
    pub citations: Vec<Id>,
}

/// A test explained in plain words, tied to the clinician screening checklist item.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientTest {
    pub id: Id,
    pub name: String,
    pub why: String,
    pub screening: Id,
    pub citations: Vec<Id>,
}

#[derive(
    Debug, Deserialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum TriageLevel {
    /// Most urgent first: the order is the triage order (the most urgent answer wins).
    Emergency,
    CallToday,
    NextVisit,
}

/// What a triage level tells the patient to do.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriageLevelText {
    pub level: Spanned<TriageLevel>,
    pub title: String,
    pub advice: String,
    pub citations: Vec<Id>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Symptom {
    pub id: Id,
    pub group: Id,
    pub text: String,
    pub level: TriageLevel,
    /// Why this level, in plain words.
    pub why: String,
    pub citations: Vec<Id>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrugPage {
    pub drug: Id,
    /// One sentence under the title.
    pub summary: String,
    pub section: Vec<PageSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageSection {
    pub id: Id,
    pub heading: String,
    #[serde(default)]
    pub text: Vec<String>,
    #[serde(default)]
    pub points: Vec<String>,
    pub citations: Vec<Id>,
}

/// One field of the clinicians' quick-check form: a number for a lab (in the lab's canonical
/// unit), or a tick box that records a condition or a past medication. `system` + `code` is
/// what gets written; it must belong to the lab's or the named value set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuickField {
    pub id: Id,
    pub label: String,
    pub lab: Option<Id>,
    pub condition: Option<Id>,
    pub medication: Option<Id>,
    pub system: String,
    pub code: String,
    pub display: String,
}
