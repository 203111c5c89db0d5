//! The engine's integration tests (one binary): clinical cases as data, the shipped
//! knowledge, and real external FHIR data.

mod cases;
mod knowledge;
mod real_data;
mod support;
