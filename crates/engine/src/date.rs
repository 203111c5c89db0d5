//! FHIR `date` / `dateTime` / `instant` values reduced to calendar dates.
//!
//! Rules compare days, not instants: a result "within 90 days" is judged on the date written
//! in the record, without converting time zones (the clinician's calendar, not UTC's).
//! Partial dates (`2019`, `2019-04`) take their first day, and that is recorded.

use chrono::{Datelike, NaiveDate};

/// How much of a date the record gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Year,
    Month,
    Day,
}

/// Parses the date part of a FHIR date, dateTime or instant.
pub fn parse(text: &str) -> Option<(NaiveDate, Precision)> {
    let t = text.trim();
    let date_part = t.get(..10.min(t.len()))?;
    let mut it = date_part.splitn(3, '-');
    let y: i32 = it.next()?.get(..4)?.parse().ok()?;
    if !(1000..=9999).contains(&y) {
        return None;
    }
    let m = it.next();
    let d = it.next();
    match (m, d) {
        (None, _) if t.len() == 4 => Some((NaiveDate::from_ymd_opt(y, 1, 1)?, Precision::Year)),
        (Some(m), None) if t.len() == 7 => {
            let m: u32 = m.parse().ok()?;
            Some((NaiveDate::from_ymd_opt(y, m, 1)?, Precision::Month))
        }
        (Some(m), Some(d)) if m.len() == 2 && d.len() == 2 => {
            let m: u32 = m.parse().ok()?;
            let d: u32 = d.parse().ok()?;
            let rest = &t[10..];
            if !(rest.is_empty() || rest.starts_with('T')) {
                return None;
            }
            Some((NaiveDate::from_ymd_opt(y, m, d)?, Precision::Day))
        }
        _ => None,
    }
}

/// Whole years between `birth` and `on` (the usual age rule: the birthday must have passed).
pub fn age_years(birth: NaiveDate, on: NaiveDate) -> i32 {
    let mut age = on.year() - birth.year();
    if (on.month(), on.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).expect("valid date")
    }

    #[test]
    fn parses_every_fhir_precision() {
        assert_eq!(parse("2019"), Some((d(2019, 1, 1), Precision::Year)));
        assert_eq!(parse("2019-04"), Some((d(2019, 4, 1), Precision::Month)));
        assert_eq!(parse("2019-04-07"), Some((d(2019, 4, 7), Precision::Day)));
        assert_eq!(
            parse("2019-04-07T23:30:00-05:00"),
            Some((d(2019, 4, 7), Precision::Day))
        );
        assert_eq!(parse("2019-02-30"), None);
        assert_eq!(parse("yesterday"), None);
        assert_eq!(parse("2019-4-7"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn age_counts_only_passed_birthdays() {
        assert_eq!(age_years(d(1976, 11, 28), d(2026, 11, 27)), 49);
        assert_eq!(age_years(d(1976, 11, 27), d(2026, 11, 27)), 50);
    }
}
