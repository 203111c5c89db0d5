//! The files of a FHIR Bulk Data export: which resource type each file holds and how it is
//! compressed.
//!
//! The Bulk Data Access IG writes one or more NDJSON files per resource type. Servers name
//! them differently (`Patient.ndjson`, `Patient.000.ndjson`, `1.Patient.ndjson`,
//! `Observation-2.ndjson.gz`), so the type is the first part of the name, split at `.`, `-`
//! or `_`, that is an R4 resource type. A `.ndjson` file whose name names no type cannot be
//! routed and is reported as skipped (the run's exit code then says data was not read).

use std::path::{Path, PathBuf};

/// One NDJSON file of the export.
#[derive(Debug, Clone)]
pub struct ExportFile {
    pub path: PathBuf,
    /// The file name, for messages (`Observation.ndjson:12`).
    pub name: String,
    pub resource_type: &'static str,
    pub gzip: bool,
    /// Bytes on disk (compressed for `.gz`), for progress and throughput.
    pub size: u64,
}

/// The export directory's NDJSON files, in processing order, and the ones skipped.
#[derive(Debug, Default)]
pub struct Export {
    pub files: Vec<ExportFile>,
    pub skipped: Vec<String>,
}

impl Export {
    pub fn of_type<'a>(&'a self, types: &'a [&str]) -> impl Iterator<Item = &'a ExportFile> {
        self.files
            .iter()
            .filter(move |f| types.contains(&f.resource_type))
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Lists the export's NDJSON files. Errors only when the directory cannot be read.
pub fn discover(dir: &Path) -> std::io::Result<Export> {
    let mut export = Export::default();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    for path in entries {
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        let (stem, gzip) = if let Some(s) = name.strip_suffix(".ndjson.gz") {
            (s, true)
        } else if let Some(s) = name.strip_suffix(".ndjson") {
            (s, false)
        } else {
            // Manifests, READMEs and anything else are not data files.
            continue;
        };
        match type_from_stem(stem) {
            Some(resource_type) => {
                let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                export.files.push(ExportFile {
                    path,
                    name,
                    resource_type,
                    gzip,
                    size,
                });
            }
            None => export.skipped.push(name),
        }
    }
    // Patients first (every other resource is joined to them), then the formulary
    // (medication references), then the rest by type; within a type, by name.
    export.files.sort_by(|a, b| {
        order(a.resource_type)
            .cmp(&order(b.resource_type))
            .then_with(|| a.resource_type.cmp(b.resource_type))
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(export)
}

fn order(resource_type: &str) -> u8 {
    match resource_type {
        "Patient" => 0,
        "Medication" => 1,
        _ => 2,
    }
}

fn type_from_stem(stem: &str) -> Option<&'static str> {
    stem.split(['.', '-', '_']).find_map(resource_type)
}

/// The R4 resource type named `name`, if it is one.
pub fn resource_type(name: &str) -> Option<&'static str> {
    R4_RESOURCE_TYPES
        .binary_search(&name)
        .ok()
        .map(|i| R4_RESOURCE_TYPES[i])
}

/// Every resource type of FHIR R4 (4.0.1), sorted (for binary search).
const R4_RESOURCE_TYPES: &[&str] = &[
    "Account",
    "ActivityDefinition",
    "AdverseEvent",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "Binary",
    "BiologicallyDerivedProduct",
    "BodyStructure",
    "Bundle",
    "CapabilityStatement",
    "CarePlan",
    "CareTeam",
    "CatalogEntry",
    "ChargeItem",
    "ChargeItemDefinition",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "CodeSystem",
    "Communication",
    "CommunicationRequest",
    "CompartmentDefinition",
    "Composition",
    "ConceptMap",
    "Condition",
    "Consent",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "DetectedIssue",
    "Device",
    "DeviceDefinition",
    "DeviceMetric",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "EffectEvidenceSynthesis",
    "Encounter",
    "Endpoint",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "EpisodeOfCare",
    "EventDefinition",
    "Evidence",
    "EvidenceVariable",
    "ExampleScenario",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "GraphDefinition",
    "Group",
    "GuidanceResponse",
    "HealthcareService",
    "ImagingStudy",
    "Immunization",
    "ImmunizationEvaluation",
    "ImmunizationRecommendation",
    "ImplementationGuide",
    "InsurancePlan",
    "Invoice",
    "Library",
    "Linkage",
    "List",
    "Location",
    "Measure",
    "MeasureReport",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationKnowledge",
    "MedicationRequest",
    "MedicationStatement",
    "MedicinalProduct",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductIngredient",
    "MedicinalProductInteraction",
    "MedicinalProductManufactured",
    "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect",
    "MessageDefinition",
    "MessageHeader",
    "MolecularSequence",
    "NamingSystem",
    "NutritionOrder",
    "Observation",
    "ObservationDefinition",
    "OperationDefinition",
    "OperationOutcome",
    "Organization",
    "OrganizationAffiliation",
    "Parameters",
    "Patient",
    "PaymentNotice",
    "PaymentReconciliation",
    "Person",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RequestGroup",
    "ResearchDefinition",
    "ResearchElementDefinition",
    "ResearchStudy",
    "ResearchSubject",
    "RiskAssessment",
    "RiskEvidenceSynthesis",
    "Schedule",
    "SearchParameter",
    "ServiceRequest",
    "Slot",
    "Specimen",
    "SpecimenDefinition",
    "StructureDefinition",
    "StructureMap",
    "Subscription",
    "Substance",
    "SubstanceNucleicAcid",
    "SubstancePolymer",
    "SubstanceProtein",
    "SubstanceReferenceInformation",
    "SubstanceSourceMaterial",
    "SubstanceSpecification",
    "SupplyDelivery",
    "SupplyRequest",
    "Task",
    "TerminologyCapabilities",
    "TestReport",
    "TestScript",
    "ValueSet",
    "VerificationResult",
    "VisionPrescription",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_the_usual_file_names() {
        assert_eq!(type_from_stem("Patient"), Some("Patient"));
        assert_eq!(type_from_stem("Observation.003"), Some("Observation"));
        assert_eq!(
            type_from_stem("1.MedicationRequest"),
            Some("MedicationRequest")
        );
        assert_eq!(type_from_stem("Condition-2"), Some("Condition"));
        assert_eq!(type_from_stem("observations"), None);
        assert_eq!(type_from_stem("Patients"), None);
    }

    #[test]
    fn the_type_list_is_sorted_for_binary_search() {
        assert!(R4_RESOURCE_TYPES.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(resource_type("Observation"), Some("Observation"));
        assert_eq!(resource_type("Obsrvation"), None);
    }
}
