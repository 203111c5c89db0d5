//! Validation and compilation of the raw knowledge files into `Knowledge`.
//!
//! Two passes: first every file is parsed and every id is registered (so duplicates are
//! found wherever they are), then every reference is resolved to an index. All errors are
//! collected; nothing is compiled unless there are none.

use super::raw::{self, Id};
use super::*;
use crate::codes::{CodeIndex, ValueSet, ValueSetId};
use crate::units::{QuantityDef, UnitTable, parse_factor};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;

/// Where an item was defined: file index and byte offset.
#[derive(Clone, Copy)]
pub(super) struct At {
    file: usize,
    offset: usize,
}

pub(super) struct Ctx<'a> {
    sources: &'a [Source],
    pub(super) errors: Vec<KbError>,
}

impl Ctx<'_> {
    pub(super) fn err(&mut self, at: At, message: impl Into<String>) {
        let src = &self.sources[at.file];
        let line = src.text[..at.offset.min(src.text.len())]
            .matches('\n')
            .count()
            + 1;
        self.errors.push(KbError {
            path: src.path.clone(),
            line: Some(line),
            message: message.into(),
        });
    }
}

pub(super) fn at(file: usize, id: &Id) -> At {
    At {
        file,
        offset: id.span().start,
    }
}

pub(super) fn at_span(file: usize, span: std::ops::Range<usize>) -> At {
    At {
        file,
        offset: span.start,
    }
}

/// A registry of ids of one kind, reporting duplicates.
pub(super) struct Names {
    kind: &'static str,
    index: HashMap<String, usize>,
}

impl Names {
    pub(super) fn new(kind: &'static str) -> Self {
        Names {
            kind,
            index: HashMap::new(),
        }
    }

    pub(super) fn register(&mut self, ctx: &mut Ctx<'_>, file: usize, id: &Id) {
        let name = id.get_ref();
        if name.trim().is_empty() || name.chars().any(char::is_whitespace) {
            ctx.err(
                at(file, id),
                format!("{} id `{name}` must be non-empty without spaces", self.kind),
            );
        }
        let n = self.index.len();
        if self.index.insert(name.clone(), n).is_some() {
            ctx.err(at(file, id), format!("duplicate {} id `{name}`", self.kind));
        }
    }

    pub(super) fn resolve(&self, ctx: &mut Ctx<'_>, file: usize, id: &Id) -> Option<usize> {
        let r = self.index.get(id.get_ref()).copied();
        if r.is_none() {
            ctx.err(
                at(file, id),
                format!("unknown {} `{}`", self.kind, id.get_ref()),
            );
        }
        r
    }
}

pub(super) fn compile(sources: &[Source]) -> Result<Knowledge, KbErrors> {
    let mut ctx = Ctx {
        sources,
        errors: vec![],
    };

    // ---- pass 0: parse ----------------------------------------------------------------
    let mut manifest: Option<(usize, raw::Manifest)> = None;
    let mut files: Vec<(usize, raw::File)> = vec![];
    for (i, src) in sources.iter().enumerate() {
        let is_manifest = src.path.rsplit(['/', '\\']).next() == Some("knowledge.toml");
        let parsed = if is_manifest {
            toml::from_str::<raw::Manifest>(&src.text).map(|m| manifest = Some((i, m)))
        } else {
            toml::from_str::<raw::File>(&src.text).map(|f| files.push((i, f)))
        };
        if let Err(e) = parsed {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            ctx.err(At { file: i, offset }, e.message().trim().to_string());
        }
    }
    let Some((manifest_file, manifest)) = manifest else {
        if ctx.errors.is_empty() {
            ctx.errors.push(KbError {
                path: "knowledge.toml".into(),
                line: None,
                message: "missing: the knowledge base needs its manifest".into(),
            });
        }
        return Err(KbErrors(ctx.errors));
    };

    // ---- systems ------------------------------------------------------------------------
    let mut codes = CodeIndex::default();
    let mut systems: HashMap<String, crate::codes::SystemId> = HashMap::new();
    for (short, uri) in &manifest.systems {
        systems.insert(short.clone(), codes.add_system(short, uri));
    }
    if manifest.version.trim().is_empty() {
        ctx.err(
            At {
                file: manifest_file,
                offset: 0,
            },
            "`version` must not be empty",
        );
    }

    // ---- pass 1: register ids -------------------------------------------------------------
    let mut n_cit = Names::new("citation");
    let mut n_qty = Names::new("quantity");
    let mut n_vs = Names::new("value set");
    let mut n_lab = Names::new("lab");
    let mut n_drug = Names::new("drug");
    let mut n_rule = Names::new("rule");
    let mut n_scr = Names::new("screening item");
    let mut n_mon = Names::new("monitoring item");
    let mut n_score = Names::new("score");
    for (fi, f) in &files {
        for x in &f.citation {
            n_cit.register(&mut ctx, *fi, &x.id);
        }
        for x in &f.quantity {
            n_qty.register(&mut ctx, *fi, &x.id);
        }
        for x in &f.valueset {
            n_vs.register(&mut ctx, *fi, &x.id);
        }
        for x in &f.lab {
            n_lab.register(&mut ctx, *fi, &x.id);
        }
        for x in &f.drug {
            n_drug.register(&mut ctx, *fi, &x.id);
        }
        for x in &f.rule {
            n_rule.register(&mut ctx, *fi, &x.id);
        }
        for x in &f.screening {
            n_scr.register(&mut ctx, *fi, &x.id);
        }
        for x in &f.monitoring {
            n_mon.register(&mut ctx, *fi, &x.id);
        }
        for x in &f.score {
            n_score.register(&mut ctx, *fi, &x.id);
        }
    }

    // ---- citations ----------------------------------------------------------------------
    let mut citations = vec![];
    for (_, f) in &files {
        for c in &f.citation {
            citations.push(Citation {
                id: c.id.get_ref().clone(),
                short: c.short.clone(),
                source: c.source.clone(),
                section: c.section.clone(),
                url: c.url.clone(),
                reference: c.reference.clone(),
                verified: c.verified,
            });
        }
    }
    let cites = |ctx: &mut Ctx<'_>, fi: usize, owner: &Id, list: &[Id]| -> Vec<CitationId> {
        if list.is_empty() {
            ctx.err(
                at(fi, owner),
                format!(
                    "`{}` has no citation: every statement needs its source",
                    owner.get_ref()
                ),
            );
        }
        list.iter()
            .filter_map(|c| n_cit.resolve(ctx, fi, c))
            .collect()
    };

    // ---- units --------------------------------------------------------------------------
    let mut units = UnitTable::default();
    let mut all_ucum: HashSet<String> = HashSet::new();
    for (fi, f) in &files {
        for q in &f.quantity {
            let mut factors = rustc_hash::FxHashMap::default();
            for u in &q.units {
                match parse_factor(&u.factor) {
                    Some(fa) if !fa.is_zero() => {
                        if factors.insert(u.ucum.clone(), fa).is_some() {
                            ctx.err(
                                at(*fi, &q.id),
                                format!(
                                    "quantity `{}` lists unit `{}` twice",
                                    q.id.get_ref(),
                                    u.ucum
                                ),
                            );
                        }
                    }
                    _ => ctx.err(
                        at(*fi, &q.id),
                        format!(
                            "unit `{}` of `{}`: factor `{}` is not a decimal or ratio",
                            u.ucum,
                            q.id.get_ref(),
                            u.factor
                        ),
                    ),
                }
                all_ucum.insert(u.ucum.clone());
            }
            if factors.get(&q.canonical) != Some(&Decimal::ONE) {
                ctx.err(
                    at(*fi, &q.id),
                    format!(
                        "quantity `{}`: the canonical unit `{}` must be listed with factor 1",
                        q.id.get_ref(),
                        q.canonical
                    ),
                );
            }
            units.quantities.push(QuantityDef {
                id: q.id.get_ref().clone(),
                title: q.title.clone(),
                canonical: q.canonical.clone(),
                factors,
            });
        }
    }
    for (fi, f) in &files {
        for a in &f.alias {
            if !all_ucum.contains(&a.ucum) {
                ctx.err(
                    At {
                        file: *fi,
                        offset: 0,
                    },
                    format!(
                        "alias `{}` points to `{}`, which no quantity lists",
                        a.text, a.ucum
                    ),
                );
            }
            let key = a.text.trim().to_lowercase();
            if units.aliases.insert(key, a.ucum.clone()).is_some() {
                ctx.err(
                    At {
                        file: *fi,
                        offset: 0,
                    },
                    format!("alias `{}` is defined twice", a.text),
                );
            }
        }
    }

    // ---- value sets ---------------------------------------------------------------------
    let mut valuesets = vec![];
    let mut text_valuesets = vec![];
    for (fi, f) in &files {
        for v in &f.valueset {
            let vid = ValueSetId(valuesets.len() as u16);
            let sys = |ctx: &mut Ctx<'_>, s: &toml::Spanned<String>| {
                let r = systems.get(s.get_ref()).copied();
                if r.is_none() {
                    ctx.err(
                        At {
                            file: *fi,
                            offset: s.span().start,
                        },
                        format!(
                            "unknown code system `{}` (known: {})",
                            s.get_ref(),
                            manifest
                                .systems
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                }
                r
            };
            for c in &v.code {
                if let Some(s) = sys(&mut ctx, &c.system) {
                    codes.add_code(vid, s, &c.code);
                }
            }
            for p in &v.prefix {
                if let Some(s) = sys(&mut ctx, &p.system) {
                    codes.add_prefix(vid, s, &p.prefix);
                }
            }
            for e in &v.exclude {
                let Some(s) = sys(&mut ctx, &e.system) else {
                    continue;
                };
                match (&e.code, &e.prefix) {
                    (Some(c), None) => codes.add_excluded_code(vid, s, c),
                    (None, Some(p)) => codes.add_excluded_prefix(vid, s, p),
                    _ => ctx.err(
                        at(*fi, &v.id),
                        format!(
                            "value set `{}`: an exclusion needs exactly one of `code` or `prefix`",
                            v.id.get_ref()
                        ),
                    ),
                }
            }
            if v.code.is_empty() && v.prefix.is_empty() {
                ctx.err(
                    at(*fi, &v.id),
                    format!("value set `{}` has no code and no prefix", v.id.get_ref()),
                );
            }
            let text: Vec<String> = v
                .text
                .iter()
                .map(|t| t.trim().to_lowercase())
                .filter(|t| !t.is_empty())
                .collect();
            if !text.is_empty() {
                text_valuesets.push(vid);
            }
            valuesets.push(ValueSet {
                codes: v
                    .code
                    .iter()
                    .filter_map(|c| {
                        manifest
                            .systems
                            .get(c.system.get_ref())
                            .map(|uri| (uri.clone(), c.code.clone()))
                    })
                    .collect(),
                id: v.id.get_ref().clone(),
                title: v.title.clone(),
                text,
                code_count: v.code.len() + v.prefix.len(),
            });
        }
    }

    // ---- labs ---------------------------------------------------------------------------
    let mut labs = vec![];
    let mut labs_by_valueset: rustc_hash::FxHashMap<ValueSetId, Vec<LabId>> =
        rustc_hash::FxHashMap::default();
    for (fi, f) in &files {
        for l in &f.lab {
            let lid = labs.len();
            let quantity = l
                .quantity
                .as_ref()
                .and_then(|q| n_qty.resolve(&mut ctx, *fi, q));
            match (l.kind, &l.quantity) {
                (LabKind::Quantity, None) => ctx.err(
                    at(*fi, &l.id),
                    format!(
                        "lab `{}` is a quantity but names no `quantity`",
                        l.id.get_ref()
                    ),
                ),
                (LabKind::Coded, Some(_)) => ctx.err(
                    at(*fi, &l.id),
                    format!(
                        "lab `{}` is coded and must not name a `quantity`",
                        l.id.get_ref()
                    ),
                ),
                _ => {}
            }
            if l.computed.is_some() && l.kind != LabKind::Quantity {
                ctx.err(
                    at(*fi, &l.id),
                    format!(
                        "lab `{}`: only quantity labs can be computed",
                        l.id.get_ref()
                    ),
                );
            }
            if l.valuesets.is_empty() && l.computed.is_none() {
                ctx.err(
                    at(*fi, &l.id),
                    format!("lab `{}` has no value set", l.id.get_ref()),
                );
            }
            let mut vss = vec![];
            for v in &l.valuesets {
                if let Some(i) = n_vs.resolve(&mut ctx, *fi, v) {
                    let vid = ValueSetId(i as u16);
                    vss.push(vid);
                    labs_by_valueset.entry(vid).or_default().push(lid);
                }
            }
            let bound = |ctx: &mut Ctx<'_>, t: &Option<String>| -> Option<Decimal> {
                let t = t.as_ref()?;
                let r = Decimal::from_str(t.trim()).ok();
                if r.is_none() {
                    ctx.err(
                        at(*fi, &l.id),
                        format!("lab `{}`: `{t}` is not a number", l.id.get_ref()),
                    );
                }
                r
            };
            let numeric = l.numeric.as_ref().and_then(|n| {
                if l.kind != LabKind::Coded {
                    ctx.err(
                        at(*fi, &l.id),
                        format!(
                            "lab `{}`: only coded labs take a `numeric` reading",
                            l.id.get_ref()
                        ),
                    );
                }
                let above = Decimal::from_str(n.detected_above.trim()).ok();
                if above.is_none() {
                    ctx.err(
                        at(*fi, &l.id),
                        format!(
                            "lab `{}`: detected_above `{}` is not a number",
                            l.id.get_ref(),
                            n.detected_above
                        ),
                    );
                }
                let pos = n_vs.resolve(&mut ctx, *fi, &n.positive)?;
                let neg = n_vs.resolve(&mut ctx, *fi, &n.negative)?;
                Some((above?, ValueSetId(pos as u16), ValueSetId(neg as u16)))
            });
            labs.push(Lab {
                numeric,
                id: l.id.get_ref().clone(),
                name: l.name.clone(),
                order: l.order.clone(),
                kind: l.kind,
                quantity,
                valuesets: vss,
                computed: l.computed,
                plausible_min: bound(&mut ctx, &l.plausible_min),
                plausible_max: bound(&mut ctx, &l.plausible_max),
            });
        }
    }

    // ---- drugs --------------------------------------------------------------------------
    let mut drugs = vec![];
    for (fi, f) in &files {
        for d in &f.drug {
            let valueset = n_vs
                .resolve(&mut ctx, *fi, &d.valueset)
                .map(|i| ValueSetId(i as u16));
            let mut doses: Vec<Dose> = vec![];
            for dose in &d.dose {
                if doses.iter().any(|x| x.id == *dose.id.get_ref()) {
                    ctx.err(
                        at(*fi, &dose.id),
                        format!(
                            "duplicate dose id `{}` in drug `{}`",
                            dose.id.get_ref(),
                            d.id.get_ref()
                        ),
                    );
                }
                let mg = Decimal::from_str(dose.mg.trim()).ok();
                if mg.is_none() {
                    ctx.err(
                        at(*fi, &dose.id),
                        format!(
                            "dose `{}`: mg `{}` is not a number",
                            dose.id.get_ref(),
                            dose.mg
                        ),
                    );
                }
                if dose.times_per_day == 0 {
                    ctx.err(
                        at(*fi, &dose.id),
                        format!(
                            "dose `{}`: times_per_day must be at least 1",
                            dose.id.get_ref()
                        ),
                    );
                }
                let citations = cites(&mut ctx, *fi, &dose.id, &dose.citations);
                doses.push(Dose {
                    id: dose.id.get_ref().clone(),
                    mg: mg.unwrap_or_default(),
                    times_per_day: dose.times_per_day,
                    product: dose.product.clone(),
                    text: dose.text.clone(),
                    rank: dose.rank,
                    citations,
                });
            }
            let default_dose = doses.iter().position(|x| x.id == *d.default_dose.get_ref());
            if default_dose.is_none() {
                ctx.err(
                    at(*fi, &d.default_dose),
                    format!(
                        "drug `{}`: unknown default dose `{}`",
                        d.id.get_ref(),
                        d.default_dose.get_ref()
                    ),
                );
            }
            let citations = cites(&mut ctx, *fi, &d.id, &d.citations);
            drugs.push(Drug {
                id: d.id.get_ref().clone(),
                name: d.name.clone(),
                brands: d.brands.clone(),
                valueset: valueset.unwrap_or(ValueSetId(0)),
                default_dose: default_dose.unwrap_or(0),
                doses,
                citations,
            });
        }
    }

    // ---- predicates -----------------------------------------------------------------------
    let names = Resolvers {
        vs: &n_vs,
        lab: &n_lab,
    };

    // ---- rules --------------------------------------------------------------------------
    let mut rules = vec![];
    for (fi, f) in &files {
        for r in &f.rule {
            let ds: Vec<DrugId> = r
                .drugs
                .iter()
                .filter_map(|d| n_drug.resolve(&mut ctx, *fi, d))
                .collect();
            if r.drugs.is_empty() {
                ctx.err(
                    at(*fi, &r.id),
                    format!("rule `{}` applies to no drug", r.id.get_ref()),
                );
            }
            if let Some(dose) = &r.dose {
                for &d in &ds {
                    if !drugs
                        .get(d)
                        .is_some_and(|x| x.doses.iter().any(|x| x.id == *dose))
                    {
                        ctx.err(
                            at(*fi, &r.id),
                            format!(
                                "rule `{}`: drug `{}` has no dose `{dose}`",
                                r.id.get_ref(),
                                drugs.get(d).map(|x| x.id.as_str()).unwrap_or("?")
                            ),
                        );
                    }
                }
                if r.decision == Decision::DoNotStart {
                    ctx.err(
                        at(*fi, &r.id),
                        format!(
                            "rule `{}`: a do-not-start rule cannot set a dose",
                            r.id.get_ref()
                        ),
                    );
                }
            }
            if r.summary.trim().is_empty() || r.action.trim().is_empty() {
                ctx.err(
                    at(*fi, &r.id),
                    format!("rule `{}` needs a summary and an action", r.id.get_ref()),
                );
            }
            let citations = cites(&mut ctx, *fi, &r.id, &r.citations);
            if r.verified && !citations.iter().any(|&c| citations_verified(&files, c)) {
                ctx.err(
                    at(*fi, &r.id),
                    format!(
                        "rule `{}` is marked verified but none of its citations is verified",
                        r.id.get_ref()
                    ),
                );
            }
            let when = names.pred(&mut ctx, *fi, &r.id, &r.when, &labs, &units);
            rules.push(Rule {
                id: r.id.get_ref().clone(),
                title: r.title.clone(),
                drugs: ds,
                phase: r.phase,
                category: r.category,
                severity: r.severity,
                decision: r.decision,
                dose: r.dose.clone(),
                summary: r.summary.clone(),
                action: r.action.clone(),
                citations,
                verified: r.verified,
                when: when.unwrap_or(Pred::All(vec![])),
            });
        }
    }

    // ---- screening ------------------------------------------------------------------------
    let mut screening = vec![];
    for (fi, f) in &files {
        for s in &f.screening {
            let labs_ids: Vec<LabId> = s
                .labs
                .iter()
                .filter_map(|l| n_lab.resolve(&mut ctx, *fi, l))
                .collect();
            let immunization = s
                .immunization
                .as_ref()
                .and_then(|v| n_vs.resolve(&mut ctx, *fi, v))
                .map(|i| ValueSetId(i as u16));
            if s.labs.is_empty() && s.immunization.is_none() && s.abnormal_rules.is_empty() {
                ctx.err(at(*fi, &s.id), format!("screening item `{}` needs labs, an immunization value set or abnormal rules", s.id.get_ref()));
            }
            let abnormal_rules = s
                .abnormal_rules
                .iter()
                .filter_map(|r| n_rule.resolve(&mut ctx, *fi, r))
                .collect();
            let applies = s
                .applies
                .as_ref()
                .and_then(|p| names.pred(&mut ctx, *fi, &s.id, p, &labs, &units));
            let citations = cites(&mut ctx, *fi, &s.id, &s.citations);
            screening.push(ScreeningItem {
                id: s.id.get_ref().clone(),
                title: s.title.clone(),
                labs: labs_ids,
                immunization,
                within_days: s.within_days,
                abnormal_rules,
                applies,
                action: s.action.clone(),
                citations,
            });
        }
    }

    // ---- monitoring -----------------------------------------------------------------------
    let mut monitoring = vec![];
    for (fi, f) in &files {
        for m in &f.monitoring {
            let drug = n_drug.resolve(&mut ctx, *fi, &m.drug);
            let labs_ids: Vec<LabId> = m
                .labs
                .iter()
                .filter_map(|l| n_lab.resolve(&mut ctx, *fi, l))
                .collect();
            if m.first_from_week > m.first_to_week {
                ctx.err(
                    at(*fi, &m.id),
                    format!(
                        "monitoring `{}`: first_from_week is after first_to_week",
                        m.id.get_ref()
                    ),
                );
            }
            if m.labs.is_empty() {
                ctx.err(
                    at(*fi, &m.id),
                    format!("monitoring `{}` names no lab", m.id.get_ref()),
                );
            }
            let citations = cites(&mut ctx, *fi, &m.id, &m.citations);
            monitoring.push(MonitoringItem {
                id: m.id.get_ref().clone(),
                drug: drug.unwrap_or(0),
                title: m.title.clone(),
                labs: labs_ids,
                first_from_week: m.first_from_week,
                first_to_week: m.first_to_week,
                every_weeks: m.every_weeks,
                citations,
                verified: m.verified,
            });
        }
    }

    // ---- scores ---------------------------------------------------------------------------
    let mut scores = vec![];
    for (fi, f) in &files {
        for s in &f.score {
            let Some(formula) = Formula::from_id(s.id.get_ref()) else {
                ctx.err(
                    at(*fi, &s.id),
                    format!(
                        "score `{}`: the engine knows the formulas basdai, asdas-crp and asdas-esr",
                        s.id.get_ref()
                    ),
                );
                continue;
            };
            let mut inputs = vec![];
            for need in formula.inputs() {
                match s.inputs.get(*need) {
                    Some(l) => {
                        if let Some(lid) = n_lab.resolve(&mut ctx, *fi, l) {
                            inputs.push((need.to_string(), lid));
                        }
                    }
                    None => ctx.err(
                        at(*fi, &s.id),
                        format!("score `{}` needs input `{need}`", s.id.get_ref()),
                    ),
                }
            }
            for k in s.inputs.keys().chain(s.answers.keys()) {
                if !formula.inputs().contains(&k.as_str()) {
                    ctx.err(
                        at(*fi, &s.id),
                        format!("score `{}`: unknown input `{k}`", s.id.get_ref()),
                    );
                }
            }
            let mut states = vec![];
            for st in &s.states {
                let from = Decimal::from_str(st.from.trim()).ok();
                let to = st.to.as_ref().map(|t| Decimal::from_str(t.trim()).ok());
                match (from, to) {
                    (Some(from), None) => states.push(ScoreState {
                        from,
                        to: None,
                        to_inclusive: st.to_inclusive,
                        name: st.name.clone(),
                    }),
                    (Some(from), Some(Some(to))) => states.push(ScoreState {
                        from,
                        to: Some(to),
                        to_inclusive: st.to_inclusive,
                        name: st.name.clone(),
                    }),
                    _ => ctx.err(
                        at(*fi, &s.id),
                        format!(
                            "score `{}`: state `{}` has a bound that is not a number",
                            s.id.get_ref(),
                            st.name
                        ),
                    ),
                }
            }
            let citations = cites(&mut ctx, *fi, &s.id, &s.citations);
            scores.push(ScoreDef {
                id: s.id.get_ref().clone(),
                name: s.name.clone(),
                formula,
                inputs,
                answers: s.answers.clone().into_iter().collect(),
                within_days: s.within_days,
                states,
                citations,
            });
        }
    }

    // ---- patient-facing knowledge ----------------------------------------------------------
    let patient = super::patient::compile(
        &mut ctx,
        &files,
        &super::patient::Refs {
            drugs: &n_drug,
            screening: &n_scr,
            systems: &manifest.systems,
        },
        &cites,
    );

    let quick_check = super::quick::compile(
        &mut ctx,
        &files,
        &super::quick::Refs {
            labs_names: &n_lab,
            valueset_names: &n_vs,
            labs: &labs,
            valuesets: &valuesets,
            units: &units,
            systems: &manifest.systems,
        },
    );

    let creatinine_lab = labs.iter().position(|l| l.id == "creatinine");
    let weight_lab = labs.iter().position(|l| l.id == "body-weight");
    for (fi, f) in &files {
        for l in &f.lab {
            let needs = match l.computed {
                Some(Computed::CockcroftGault) => creatinine_lab.is_none() || weight_lab.is_none(),
                Some(Computed::CkdEpi2021) => creatinine_lab.is_none(),
                None => false,
            };
            if needs {
                ctx.err(at(*fi, &l.id), format!("lab `{}` is computed from labs `creatinine` (and `body-weight`), which are not defined", l.id.get_ref()));
            }
        }
    }
    if !ctx.errors.is_empty() {
        return Err(KbErrors(ctx.errors));
    }
    let citations_out = citations
        .iter()
        .map(|c| {
            std::sync::Arc::new(crate::report::CitationOut::new(
                c.id.clone(),
                c.short.clone(),
                c.source.clone(),
                c.section.clone(),
                c.url.clone(),
                c.verified,
            ))
        })
        .collect();
    Ok(Knowledge {
        citations_out,
        creatinine_lab,
        weight_lab,
        version: manifest.version,
        title: manifest.title,
        jurisdiction: manifest.jurisdiction,
        disclaimer: manifest.disclaimer,
        citations,
        units,
        codes,
        valuesets,
        labs,
        drugs,
        rules,
        screening,
        monitoring,
        scores,
        labs_by_valueset,
        text_valuesets,
        patient,
        quick_check,
    })
}

fn citations_verified(files: &[(usize, raw::File)], idx: CitationId) -> bool {
    files
        .iter()
        .flat_map(|(_, f)| f.citation.iter())
        .nth(idx)
        .is_some_and(|c| c.verified)
}

struct Resolvers<'a> {
    vs: &'a Names,
    lab: &'a Names,
}

impl Resolvers<'_> {
    fn pred(
        &self,
        ctx: &mut Ctx<'_>,
        fi: usize,
        owner: &Id,
        p: &raw::Predicate,
        labs: &[Lab],
        units: &UnitTable,
    ) -> Option<Pred> {
        use raw::Predicate as P;
        let vs =
            |ctx: &mut Ctx<'_>, id: &Id| self.vs.resolve(ctx, fi, id).map(|i| ValueSetId(i as u16));
        let owner_name = owner.get_ref();
        Some(match p {
            P::All(list) | P::Any(list) => {
                if list.is_empty() {
                    ctx.err(
                        at(fi, owner),
                        format!("`{owner_name}`: an empty `all`/`any`"),
                    );
                }
                let inner: Vec<Pred> = list
                    .iter()
                    .filter_map(|x| self.pred(ctx, fi, owner, x, labs, units))
                    .collect();
                if matches!(p, P::All(_)) {
                    Pred::All(inner)
                } else {
                    Pred::Any(inner)
                }
            }
            P::Not(x) => Pred::Not(Box::new(self.pred(ctx, fi, owner, x, labs, units)?)),
            P::Lab(t) => {
                let lab = self.lab.resolve(ctx, fi, &t.id)?;
                let Some(q) = labs.get(lab).and_then(|l| l.quantity) else {
                    ctx.err(
                        at(fi, &t.id),
                        format!(
                            "`{owner_name}`: lab `{}` is not a quantity; use `result`",
                            t.id.get_ref()
                        ),
                    );
                    return None;
                };
                let given: Vec<(Cmp, &String)> = [
                    (Cmp::Below, &t.below),
                    (Cmp::AtMost, &t.at_most),
                    (Cmp::Above, &t.above),
                    (Cmp::AtLeast, &t.at_least),
                ]
                .into_iter()
                .filter_map(|(c, v)| v.as_ref().map(|v| (c, v)))
                .collect();
                let [(cmp, text)] = given.as_slice() else {
                    ctx.err(at(fi, &t.id), format!("`{owner_name}`: a lab test needs exactly one of below, at_most, above, at_least"));
                    return None;
                };
                let threshold = match units.parse_threshold(q, text) {
                    Ok(v) => v,
                    Err(e) => {
                        ctx.err(at(fi, &t.id), format!("`{owner_name}`: {e}"));
                        return None;
                    }
                };
                if t.consecutive == Some(0) {
                    ctx.err(
                        at(fi, &t.id),
                        format!("`{owner_name}`: consecutive must be at least 1"),
                    );
                }
                Pred::Lab {
                    lab,
                    cmp: *cmp,
                    threshold,
                    within_days: t.within_days,
                    consecutive: t.consecutive.unwrap_or(1),
                }
            }
            P::LabDrop(t) => {
                let lab = self.lab.resolve(ctx, fi, &t.id)?;
                let q = labs.get(lab).and_then(|l| l.quantity)?;
                match units.parse_threshold(q, &t.more_than) {
                    Ok(more_than) => Pred::LabDrop {
                        lab,
                        more_than,
                        within_days: t.within_days,
                    },
                    Err(e) => {
                        ctx.err(at(fi, &t.id), format!("`{owner_name}`: {e}"));
                        return None;
                    }
                }
            }
            P::Result(t) => {
                let lab = self.lab.resolve(ctx, fi, &t.id)?;
                if labs.get(lab).is_some_and(|l| l.kind != LabKind::Coded) {
                    ctx.err(
                        at(fi, &t.id),
                        format!(
                            "`{owner_name}`: lab `{}` is not coded; use `lab`",
                            t.id.get_ref()
                        ),
                    );
                }
                Pred::Result {
                    lab,
                    answers: vs(ctx, &t.answers)?,
                    within_days: t.within_days,
                    absent_is_false: t.absent == raw::Absent::False,
                }
            }
            P::Condition(t) => Pred::Condition {
                valueset: vs(ctx, &t.valueset)?,
                status: t.status,
                within_days: t.within_days,
                since_treatment_start: t.since_treatment_start,
            },
            P::Medication(t) => Pred::Medication {
                valueset: vs(ctx, &t.valueset)?,
                status: t.status,
            },
            P::Immunization(t) => {
                if t.doses == Some(0) {
                    ctx.err(
                        at(fi, owner),
                        format!("`{owner_name}`: doses must be at least 1"),
                    );
                }
                Pred::Immunization {
                    valueset: vs(ctx, &t.valueset)?,
                    within_days: t.within_days,
                    doses: t.doses.unwrap_or(1),
                }
            }
            P::Allergy(t) => Pred::Allergy {
                valueset: vs(ctx, &t.valueset)?,
            },
            P::Age(t) => {
                if t.at_least.is_none() && t.below.is_none() {
                    ctx.err(
                        at(fi, owner),
                        format!("`{owner_name}`: an age test needs at_least or below"),
                    );
                }
                Pred::Age {
                    at_least: t.at_least,
                    below: t.below,
                }
            }
            P::Sex(t) => Pred::Sex(t.is),
        })
    }
}
