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
    // Read by position (`YYYY`, `YYYY-MM`, `YYYY-MM-DD[T…]`), digits only: every lab result
    // has a date, and splitting the text into parsed pieces cost several times as much.
    let t = crate::trim(text).as_bytes();
    let y = digits(t.get(..4)?)? as i32;
    if !(1000..=9999).contains(&y) {
        return None;
    }
    let dash = |i: usize| t.get(i) == Some(&b'-');
    match t.len() {
        4 => Some((NaiveDate::from_ymd_opt(y, 1, 1)?, Precision::Year)),
        7 if dash(4) => Some((
            NaiveDate::from_ymd_opt(y, digits(&t[5..7])?, 1)?,
            Precision::Month,
        )),
        n if n >= 10 && dash(4) && dash(7) && (n == 10 || t[10] == b'T') => Some((
            NaiveDate::from_ymd_opt(y, digits(&t[5..7])?, digits(&t[8..10])?)?,
            Precision::Day,
        )),
        _ => None,
    }
}

/// The number written by ASCII digits only (no sign, no space).
fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
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
        assert_eq!(parse(" 2019-04-07 "), Some((d(2019, 4, 7), Precision::Day)));
        // Digits only where FHIR's date syntax has them, and nothing after a day but a time.
        for bad in [
            "2019-+4-07",
            "+201-04-07",
            "20190-04-07",
            "2019-04-07Z",
            "2019-04-07 10:00",
            "2019/04/07",
            "2019-04-",
            "2019-13",
            "0999-01-01",
            "2019-04-0é",
            "２０１９",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn age_counts_only_passed_birthdays() {
        assert_eq!(age_years(d(1976, 11, 28), d(2026, 11, 27)), 49);
        assert_eq!(age_years(d(1976, 11, 27), d(2026, 11, 27)), 50);
    }
}
