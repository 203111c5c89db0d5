//! The engine's integration tests (one binary): clinical cases as data, the shipped
//! knowledge, and real external FHIR data. Test code may panic: a failed expectation is a
//! failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cases;
mod knowledge;
mod real_data;
mod robustness;
mod support;
mod units;
