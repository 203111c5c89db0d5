//! The clinicians' quick-check form: which labs, conditions and past medications a short form
//! asks for, and the code the web app writes into a FHIR Bundle for each. Every code must be a
//! member of the value set the rules read, and lab values are entered in the lab's canonical
//! unit, so the form and the rules cannot disagree.

use super::compile::{Ctx, Names, at};
use super::raw::{self, LabKind};
use super::{Lab, LabId};
use crate::codes::ValueSet;
use crate::units::UnitTable;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub enum QuickKind {
    /// A number in `unit` (the lab's canonical UCUM unit), recorded as an Observation.
    Lab { lab: LabId, unit: String },
    /// A tick box recorded as an active Condition.
    Condition,
    /// A tick box recorded as a completed MedicationStatement.
    Medication,
}

#[derive(Debug, Clone)]
pub struct QuickField {
    pub id: String,
    pub label: String,
    pub kind: QuickKind,
    /// The coding written for this field.
    pub system: String,
    pub code: String,
    pub display: String,
}

pub(super) struct Refs<'a> {
    pub labs_names: &'a Names,
    pub valueset_names: &'a Names,
    pub labs: &'a [Lab],
    pub valuesets: &'a [ValueSet],
    pub units: &'a UnitTable,
    pub systems: &'a BTreeMap<String, String>,
}

pub(super) fn compile(
    ctx: &mut Ctx<'_>,
    files: &[(usize, raw::File)],
    r: &Refs<'_>,
) -> Vec<QuickField> {
    let mut names = Names::new("quick-check field");
    let mut out = vec![];
    for (fi, f) in files {
        for q in &f.quick_field {
            names.register(ctx, *fi, &q.id);
            let id = q.id.get_ref();
            if q.label.trim().is_empty() || q.display.trim().is_empty() {
                ctx.err(
                    at(*fi, &q.id),
                    format!("`{id}`: `label` and `display` must not be empty"),
                );
            }
            let Some(system) = r.systems.get(&q.system).cloned() else {
                ctx.err(
                    at(*fi, &q.id),
                    format!("`{id}`: unknown code system `{}`", q.system),
                );
                continue;
            };
            // The value sets the code must belong to, and what the field records.
            let (sets, kind): (Vec<usize>, QuickKind) = match (&q.lab, &q.condition, &q.medication)
            {
                (Some(l), None, None) => {
                    let Some(lid) = r.labs_names.resolve(ctx, *fi, l) else {
                        continue;
                    };
                    let lab = &r.labs[lid];
                    match (lab.kind, lab.quantity, lab.computed) {
                        (LabKind::Quantity, Some(qi), None) => (
                            lab.valuesets.iter().map(|v| v.0 as usize).collect(),
                            QuickKind::Lab {
                                lab: lid,
                                unit: r.units.quantity(qi).canonical.clone(),
                            },
                        ),
                        _ => {
                            ctx.err(
                                at(*fi, &q.id),
                                format!("`{id}`: lab `{}` must be a measured quantity", lab.id),
                            );
                            continue;
                        }
                    }
                }
                (None, Some(v), None) | (None, None, Some(v)) => {
                    let Some(vs) = r.valueset_names.resolve(ctx, *fi, v) else {
                        continue;
                    };
                    let kind = if q.condition.is_some() {
                        QuickKind::Condition
                    } else {
                        QuickKind::Medication
                    };
                    (vec![vs], kind)
                }
                _ => {
                    ctx.err(
                        at(*fi, &q.id),
                        format!("`{id}` needs exactly one of `lab`, `condition`, `medication`"),
                    );
                    continue;
                }
            };
            let member = sets.iter().any(|&v| {
                r.valuesets
                    .get(v)
                    .is_some_and(|vs| vs.codes.iter().any(|(s, c)| *s == system && *c == q.code))
            });
            if !member {
                ctx.err(
                    at(*fi, &q.id),
                    format!(
                        "`{id}`: code `{}` ({}) is not in the value set the rules read",
                        q.code, q.system
                    ),
                );
                continue;
            }
            out.push(QuickField {
                id: id.clone(),
                label: q.label.clone(),
                kind,
                system,
                code: q.code.clone(),
                display: q.display.clone(),
            });
        }
    }
    out
}
