//! Disease-activity scores for axial spondyloarthritis: BASDAI, ASDAS-CRP and ASDAS-ESR.
//!
//! The formulas are the published ones (Garrett 1994; Lukas 2009); which records feed each
//! input, how recent they must be, and the disease-activity states are knowledge data.
//! A score is reported only when every input is present, recent and within its range.

use crate::evaluate::citations;
use crate::facts::{Facts, LabValue};
use crate::kb::{Formula, Knowledge, ScoreDef};
use crate::report::{ScoreInput, ScoreResult};
use rust_decimal::Decimal;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};

pub fn compute(kb: &Knowledge, facts: &Facts<'_>) -> Vec<ScoreResult> {
    kb.scores.iter().filter_map(|s| one(kb, facts, s)).collect()
}

fn one(kb: &Knowledge, facts: &Facts<'_>, s: &ScoreDef) -> Option<ScoreResult> {
    let mut inputs = vec![];
    for (name, lab) in &s.inputs {
        let r = facts.labs[*lab].first()?;
        if (facts.as_of - r.date).num_days() > i64::from(s.within_days) {
            return None;
        }
        let LabValue::Quantity(v) = r.value else {
            return None;
        };
        let is_lab = name == "crp" || name == "esr";
        if !is_lab && (v < Decimal::ZERO || v > Decimal::TEN) {
            return None;
        }
        inputs.push(ScoreInput {
            name: name.clone(),
            value: v,
            source: r.reference.to_string(),
            date: r.date,
        });
    }
    let get = |n: &str| {
        inputs
            .iter()
            .find(|i| i.name == n)
            .map(|i| i.value)
            .unwrap_or_default()
    };
    let value = match s.formula {
        Formula::Basdai => basdai([
            get("q1"),
            get("q2"),
            get("q3"),
            get("q4"),
            get("q5"),
            get("q6"),
        ]),
        Formula::AsdasCrp => asdas_crp(
            get("back-pain"),
            get("stiffness-duration"),
            get("patient-global"),
            get("peripheral"),
            get("crp"),
        )?,
        Formula::AsdasEsr => asdas_esr(
            get("back-pain"),
            get("stiffness-duration"),
            get("patient-global"),
            get("peripheral"),
            get("esr"),
        )?,
    };
    let state = s
        .states
        .iter()
        .find(|st| {
            value >= st.from
                && st.to.is_none_or(|to| {
                    if st.to_inclusive {
                        value <= to
                    } else {
                        value < to
                    }
                })
        })
        .map(|st| st.name.clone());
    let date = inputs.iter().map(|i| i.date).max()?;
    Some(ScoreResult {
        id: s.id.clone(),
        name: s.name.clone(),
        value,
        state,
        date,
        inputs,
        citations: citations(kb, &s.citations),
    })
}

/// BASDAI = (Q1 + Q2 + Q3 + Q4 + (Q5 + Q6) / 2) / 5, exact, to two decimals.
pub fn basdai(q: [Decimal; 6]) -> Decimal {
    let two = Decimal::TWO;
    ((q[0] + q[1] + q[2] + q[3] + (q[4] + q[5]) / two) / Decimal::from(5))
        .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
}

/// Two decimals, half away from zero (as calculators and papers round), after dropping the
/// binary noise of the logarithm or square root (3.3849999… is 3.385, which rounds to 3.39).
fn round2(v: f64) -> Option<Decimal> {
    use rust_decimal::RoundingStrategy::MidpointAwayFromZero;
    let d = Decimal::from_f64(v)?.round_dp_with_strategy(6, MidpointAwayFromZero);
    Some(d.round_dp_with_strategy(2, MidpointAwayFromZero))
}

/// ASDAS-CRP = 0.121·back pain + 0.058·stiffness + 0.110·global + 0.073·peripheral
/// + 0.579·ln(CRP mg/L + 1); CRP below 2 mg/L counts as 2.
pub fn asdas_crp(
    back: Decimal,
    stiff: Decimal,
    global: Decimal,
    periph: Decimal,
    crp: Decimal,
) -> Option<Decimal> {
    let crp = crp.max(Decimal::TWO).to_f64()?;
    let linear = Decimal::new(121, 3) * back
        + Decimal::new(58, 3) * stiff
        + Decimal::new(110, 3) * global
        + Decimal::new(73, 3) * periph;
    let v = linear.to_f64()? + 0.579 * (crp + 1.0).ln();
    round2(v)
}

/// ASDAS-ESR = 0.079·back pain + 0.069·stiffness + 0.113·global + 0.086·peripheral
/// + 0.293·√ESR (mm/h).
pub fn asdas_esr(
    back: Decimal,
    stiff: Decimal,
    global: Decimal,
    periph: Decimal,
    esr: Decimal,
) -> Option<Decimal> {
    let esr = esr.to_f64()?;
    if esr < 0.0 {
        return None;
    }
    let linear = Decimal::new(79, 3) * back
        + Decimal::new(69, 3) * stiff
        + Decimal::new(113, 3) * global
        + Decimal::new(86, 3) * periph;
    let v = linear.to_f64()? + 0.293 * esr.sqrt();
    round2(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(x: i64) -> Decimal {
        Decimal::from(x)
    }

    #[test]
    fn basdai_by_hand() {
        // (4+6+2+3+(5+7)/2)/5 = (15+6)/5 = 4.2
        assert_eq!(
            basdai([d(4), d(6), d(2), d(3), d(5), d(7)]),
            Decimal::new(42, 1)
        );
    }

    #[test]
    fn asdas_crp_by_hand_and_floor_of_two() {
        // 0.121·6 + 0.058·5 + 0.110·7 + 0.073·3 = 2.005; + 0.579·ln(11) = 1.38837… → 3.39
        assert_eq!(
            asdas_crp(d(6), d(5), d(7), d(3), d(10)),
            Some(Decimal::new(339, 2))
        );
        // CRP 0.5 and 2 give the same score.
        assert_eq!(
            asdas_crp(d(1), d(1), d(1), d(1), Decimal::new(5, 1)),
            asdas_crp(d(1), d(1), d(1), d(1), d(2))
        );
    }

    #[test]
    fn asdas_esr_by_hand() {
        // 0.079·6 + 0.069·5 + 0.113·7 + 0.086·3 = 1.868; + 0.293·√25 = 1.465 → 3.33
        assert_eq!(
            asdas_esr(d(6), d(5), d(7), d(3), d(25)),
            Some(Decimal::new(333, 2))
        );
    }
}
