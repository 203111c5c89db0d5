//! Criterion benchmark: the cost of verifying one CDS Hooks JWT (signature, claims, replay
//! cache) for each accepted algorithm — the price JWT security adds to every hook call.
//! Run: `cargo bench -p jakguard --bench jwt`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use jakguard::server::auth::{AuthConfig, JwksSource, TrustedIssuer, Verifier};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::sync::atomic::{AtomicU64, Ordering};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ISS: &str = "https://ehr.example.org/";
const AUD: &str = "https://cds.example.org/cds-services/jakguard-order-sign";

fn der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let jwks = serde_json::from_str(include_str!("../tests/fixtures/keys/jwks.json")).unwrap();
    let verifier: Verifier = rt
        .block_on(Verifier::new(AuthConfig {
            trusted: vec![TrustedIssuer {
                iss: ISS.into(),
                jwks: JwksSource::Inline(jwks),
                jku: None,
            }],
            ..AuthConfig::default()
        }))
        .unwrap();
    let keys = [
        (
            Algorithm::ES384,
            "test-es384",
            EncodingKey::from_ec_der(&der(include_str!(
                "../tests/fixtures/keys/es384-private.pem"
            ))),
        ),
        (
            Algorithm::RS384,
            "test-rs384",
            EncodingKey::from_rsa_der(&der(include_str!(
                "../tests/fixtures/keys/rs384-private.pem"
            ))),
        ),
    ];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Every token carries a fresh `jti`: the replay cache must accept each one once.
    let counter = AtomicU64::new(0);
    let mut g = c.benchmark_group("JWT verification");
    for (alg, kid, key) in &keys {
        g.bench_function(format!("{alg:?}"), |b| {
            b.iter_batched(
                || {
                    let mut header = Header::new(*alg);
                    header.kid = Some((*kid).into());
                    let jti = counter.fetch_add(1, Ordering::Relaxed).to_string();
                    let claims = serde_json::json!({"iss": ISS, "aud": AUD, "iat": now, "exp": now + 300, "jti": jti});
                    format!("Bearer {}", jsonwebtoken::encode(&header, &claims, key).unwrap())
                },
                |token| {
                    rt.block_on(verifier.verify(Some(&token), AUD, now))
                        .unwrap()
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(jwt, benches);
criterion_main!(jwt);
