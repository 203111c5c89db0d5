//! Verifies the JWT a CDS client sends with every CDS Hooks call (CDS Hooks 2.0, "Trusting CDS
//! Clients").
//!
//! A CDS client signs a short-lived JWT with its private key and sends it as
//! `Authorization: Bearer <jwt>`. This module decides whether such a token comes from a client we
//! trust and was meant for the endpoint being called. It knows nothing about the HTTP framework:
//! the server passes in the raw header value, the endpoint's public URL and the current time, and
//! gets back the verified [`Claims`] or an [`AuthError`] saying why the token was refused.
//!
//! The checks run in this order, so that everything that needs no key comes first:
//! 1. the `Bearer` scheme and the three-part JWS shape;
//! 2. the header: `alg` must be ES384 or RS384 (the two algorithms the spec recommends), so `none`
//!    and every HMAC algorithm are refused before any key is looked at; `kid` is required; `typ`,
//!    if present, must be `JWT`; `crit` is refused because we understand no extensions;
//! 3. the unverified `iss`, read only to choose the issuer's key set; it must be allowlisted;
//! 4. `jku`, if present, must equal the key set URL configured for that issuer;
//! 5. the key, by `kid`, in that issuer's key set (remote sets are cached);
//! 6. the signature and `aud` (via `jsonwebtoken`), then `exp`, `iat`, `nbf` and the lifetime
//!    against the caller's `now`;
//! 7. `jti` against the replay cache.
//!
//! Invariants, stated as things that never happen:
//! * The token is never logged, stored or copied into an error. Errors quote only short,
//!   sanitised header and claim values.
//! * No key set is fetched from a URL the configuration did not list. A `jku` header is compared
//!   with the configured URL; it is never followed.
//! * No time check reads the system clock for token times; `now` comes from the caller. The
//!   monotonic clock is used only to age the key set cache.
//! * A key from a token (`jwk`, `x5c` header parameters) is never used; only configured key sets
//!   are.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// A remote key set is refetched on an unknown `kid` only if the cached copy is at least this old.
/// That lets an issuer rotate keys without waiting for the cache to expire, while a stream of
/// tokens with made-up `kid`s cannot make us hammer the issuer's endpoint.
const ROTATION_REFETCH_AFTER: Duration = Duration::from_secs(60);

/// After a failed fetch, wait this long before trying the URL again. Requests arriving meanwhile
/// use the last good set (if any) or fail at once instead of queueing behind slow fetches.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);

/// How long past its cache lifetime a remote key set may still be used when refreshing it fails.
/// A short outage of the issuer's endpoint should not lock every client out, but a key the issuer
/// has withdrawn must not stay trusted forever either.
const STALE_GRACE: Duration = Duration::from_secs(24 * 60 * 60);

/// Whole-request timeout for fetching a key set. The fetch runs while a CDS client waits.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest key set document we accept. Real ones are a few kilobytes.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Largest token we decode. CDS Hooks tokens are well under 2 KiB; this bounds the work an
/// unauthenticated caller can make us do.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// RSA keys shorter than 2048 bits are refused (NIST SP 800-131A).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// Longest excerpt of a caller-supplied value quoted in an error message.
const MAX_EXCERPT_CHARS: usize = 100;

/// How keys for a trusted issuer are obtained.
#[derive(Debug, Clone)]
pub enum JwksSource {
    /// A JWK Set file exchanged out of band; read once, when the [`Verifier`] is built.
    File(PathBuf),
    /// The issuer's JWK Set URL: fetched on first use and cached. A token's `jku`, if present,
    /// must equal this string exactly. Must be `https`, or `http` on a loopback address.
    Url(String),
    /// A JWK Set given in the configuration itself.
    Inline(JwkSet),
}

/// A CDS client (or the identity provider signing for it) whose tokens we accept.
#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    /// The exact `iss` value, compared byte for byte (no URL normalisation).
    pub iss: String,
    /// Where that issuer's public keys come from.
    pub jwks: JwksSource,
    /// For a file or inline key set: the URL the issuer publishes it at. Tokens whose `jku`
    /// names it are accepted (the CDS Hooks sandbox always sends one); it is never fetched.
    pub jku: Option<String>,
}

/// Which clients are trusted and how strictly their tokens are checked.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The issuer allowlist. A token from any other `iss` is refused.
    pub trusted: Vec<TrustedIssuer>,
    /// Maximum exp - iat, seconds (default 300: what EHRs and the CDS Hooks sandbox use).
    pub max_lifetime_secs: u64,
    /// Clock skew tolerated on exp / iat, seconds (default 30).
    pub leeway_secs: u64,
    /// How long a JWKS fetched from a URL is cached, seconds (default 3600).
    pub jwks_cache_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            trusted: Vec::new(),
            max_lifetime_secs: 300,
            leeway_secs: 30,
            jwks_cache_secs: 3600,
        }
    }
}

/// What a verified token says about the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The trusted issuer that signed the token.
    pub iss: String,
    /// The token's unique id, already recorded in the replay cache.
    pub jti: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Issue time, Unix seconds.
    pub iat: u64,
    /// The healthcare organisation the call is made for, if the client says.
    pub tenant: Option<String>,
}

/// Why a token was refused, or why a key set could not be loaded.
///
/// The messages are written for the person reading the server log. They quote at most a short,
/// sanitised excerpt of a header or claim value, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization` header, or an empty one.
    Missing,
    /// Not a `Bearer` JWS with a readable header and payload; the text says what is wrong.
    Malformed(String),
    /// The header's `alg` is not ES384 or RS384 (this includes `none` and every HMAC algorithm).
    Algorithm(String),
    /// The header has no `kid`, so no key can be chosen.
    MissingKid,
    /// The `iss` is not on the allowlist.
    UnknownIssuer(String),
    /// The issuer's key set has no usable key with this `kid` (none at all, or one of a type that
    /// does not match the token's `alg`).
    UnknownKey(String),
    /// The signature does not verify with the issuer's key.
    Signature,
    /// `aud` does not contain the URL of the endpoint called.
    Audience,
    /// `exp` is in the past, beyond the leeway.
    Expired,
    /// `iat` (or `nbf`) is in the future, beyond the leeway.
    IssuedInFuture,
    /// `exp - iat` is longer than the configured maximum.
    LifetimeTooLong {
        /// The token's `exp - iat`, seconds.
        secs: u64,
        /// The configured maximum, seconds.
        max: u64,
    },
    /// A required claim (`iss`, `aud`, `exp`, `iat`, `jti`) is absent.
    MissingClaim(&'static str),
    /// This issuer has already used this `jti`.
    Replayed,
    /// A key set could not be read, fetched or used, or the token's `jku` is not the issuer's
    /// configured key set URL.
    Jwks(String),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("no `Authorization` header: send `Bearer <JWT>`"),
            Self::Malformed(why) => write!(f, "malformed bearer token: {why}"),
            Self::Algorithm(alg) => write!(
                f,
                "signing algorithm `{alg}` is not accepted; sign with ES384 or RS384"
            ),
            Self::MissingKid => f.write_str("the token header has no `kid`"),
            Self::UnknownIssuer(iss) => write!(f, "issuer `{iss}` is not trusted"),
            Self::UnknownKey(kid) => write!(
                f,
                "the issuer's key set has no usable key with `kid` `{kid}`"
            ),
            Self::Signature => f.write_str("the token signature does not verify"),
            Self::Audience => f.write_str("the token `aud` does not name this endpoint's URL"),
            Self::Expired => f.write_str("the token has expired"),
            Self::IssuedInFuture => {
                f.write_str("the token is not valid yet (`iat` or `nbf` is in the future)")
            }
            Self::LifetimeTooLong { secs, max } => write!(
                f,
                "the token is valid for {secs} s (`exp` - `iat`), longer than the {max} s allowed"
            ),
            Self::MissingClaim(claim) => write!(f, "the token has no `{claim}` claim"),
            Self::Replayed => f.write_str("the token `jti` has been used before"),
            Self::Jwks(why) => write!(f, "cannot use the issuer's key set: {why}"),
        }
    }
}

impl std::error::Error for AuthError {}

/// Checks CDS Hooks bearer tokens against a fixed issuer allowlist.
///
/// Build one at start-up and share it (it is `Send + Sync`); its caches only work if every
/// request goes through the same instance.
#[derive(Debug)]
pub struct Verifier {
    /// Key sources by exact `iss`. Fixed after `new`, so read without a lock.
    issuers: HashMap<String, IssuerKeys>,
    max_lifetime_secs: u64,
    leeway_secs: u64,
    jwks_cache_ttl: Duration,
    /// Shared so that key set fetches reuse connections; built once because building loads the
    /// TLS root store.
    http: reqwest::Client,
    /// `jti`s already accepted. A `std` mutex rather than an async one: it is held only for a few
    /// map operations and never across an `.await`, which is the case the tokio documentation
    /// recommends `std::sync::Mutex` for (cheaper, and the `verify` future stays `Send`).
    replay: Mutex<ReplayCache>,
}

/// One issuer's keys.
#[derive(Debug)]
enum IssuerKeys {
    /// From a file or the configuration: loaded once, never refreshed; with the URL it is
    /// published at, if configured.
    Pinned(KeySet, Option<String>),
    /// From the issuer's JWK Set URL.
    Remote(RemoteKeys),
}

#[derive(Debug)]
struct RemoteKeys {
    url: String,
    /// An async mutex, held across the fetch on purpose: requests that find the set missing or
    /// stale wait for one fetch instead of each starting their own.
    state: tokio::sync::Mutex<RemoteState>,
}

#[derive(Debug, Default)]
struct RemoteState {
    keys: Option<KeySet>,
    /// When `keys` was last fetched successfully.
    fetched_at: Option<Instant>,
    /// When the last fetch failed, for `RETRY_AFTER_FAILURE`.
    failed_at: Option<Instant>,
}

/// The usable keys of one JWK Set, by `kid`, already converted for `jsonwebtoken`.
#[derive(Debug, Default)]
struct KeySet {
    by_kid: HashMap<String, VerifyingKey>,
}

#[derive(Debug, Clone)]
struct VerifyingKey {
    /// The one algorithm this key may verify: ES384 for P-384 keys, RS384 for RSA keys. Tying the
    /// algorithm to the key (not to the token) is what defeats algorithm-confusion attacks.
    alg: Algorithm,
    key: DecodingKey,
}

/// Accepted `(issuer, jti)` pairs, kept until the token could no longer pass the `exp` check.
#[derive(Debug, Default)]
struct ReplayCache {
    /// For the duplicate check.
    seen: HashMap<(String, String), u64>,
    /// The same entries ordered by expiry, so pruning touches only expired entries.
    by_expiry: BTreeSet<(u64, String, String)>,
}

impl Verifier {
    /// Loads File/Inline key sets eagerly (error if unreadable); URL sets are fetched lazily and cached.
    ///
    /// # Errors
    ///
    /// [`AuthError::Jwks`] if an issuer is configured twice or with an empty `iss`, a key set file
    /// cannot be read or holds no usable key, an inline set holds no usable key, or a key set URL
    /// is not `https` (plain `http` is allowed only to a loopback address).
    pub async fn new(config: AuthConfig) -> Result<Verifier, AuthError> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| AuthError::Jwks(format!("cannot set up the HTTP client: {e}")))?;
        let mut issuers = HashMap::with_capacity(config.trusted.len());
        for trusted in config.trusted {
            if trusted.iss.is_empty() {
                return Err(AuthError::Jwks(
                    "a trusted issuer has an empty `iss`".into(),
                ));
            }
            if issuers.contains_key(&trusted.iss) {
                return Err(AuthError::Jwks(format!(
                    "issuer `{}` is configured twice",
                    trusted.iss
                )));
            }
            if let Some(u) = &trusted.jku {
                check_jwks_url(u).map_err(AuthError::Jwks)?;
            }
            let keys = match trusted.jwks {
                JwksSource::File(path) => {
                    let origin = format!("key set file `{}`", path.display());
                    // Blocking read: this runs once at start-up, before any request is served.
                    let text = std::fs::read(&path)
                        .map_err(|e| AuthError::Jwks(format!("cannot read {origin}: {e}")))?;
                    IssuerKeys::Pinned(
                        parse_key_set(&text, &origin).map_err(AuthError::Jwks)?,
                        trusted.jku.clone(),
                    )
                }
                JwksSource::Inline(set) => {
                    let origin = format!("the inline key set of issuer `{}`", trusted.iss);
                    IssuerKeys::Pinned(
                        usable_keys(&set.keys, &origin).map_err(AuthError::Jwks)?,
                        trusted.jku.clone(),
                    )
                }
                JwksSource::Url(url) => {
                    check_jwks_url(&url).map_err(AuthError::Jwks)?;
                    IssuerKeys::Remote(RemoteKeys {
                        url,
                        state: tokio::sync::Mutex::default(),
                    })
                }
            };
            issuers.insert(trusted.iss, keys);
        }
        Ok(Verifier {
            issuers,
            max_lifetime_secs: config.max_lifetime_secs,
            leeway_secs: config.leeway_secs,
            jwks_cache_ttl: Duration::from_secs(config.jwks_cache_secs),
            http,
            replay: Mutex::default(),
        })
    }

    /// `authorization` is the raw Authorization header value (`Bearer <jwt>`); `audience` is the
    /// exact public URL of the endpoint called; `now` is Unix seconds (passed in, for tests).
    ///
    /// # Errors
    ///
    /// The first check the token fails, as an [`AuthError`]. A token that fails is not recorded
    /// in the replay cache, so only a successful call uses up its `jti`.
    pub async fn verify(
        &self,
        authorization: Option<&str>,
        audience: &str,
        now: u64,
    ) -> Result<Claims, AuthError> {
        let token = bearer_token(authorization)?;
        let (header_part, payload_part) = split_token(token)?;

        let header = json_object(header_part, "header")?;
        let alg = accepted_algorithm(&header)?;
        if let Some(typ) = string_member(&header, "typ", "header")?
            && !typ.eq_ignore_ascii_case("JWT")
        {
            return Err(AuthError::Malformed(format!(
                "header `typ` is `{}`, not `JWT`",
                excerpt(typ)
            )));
        }
        if header.contains_key("crit") {
            return Err(AuthError::Malformed(
                "header `crit` lists extensions this service does not support".into(),
            ));
        }
        let kid = string_member(&header, "kid", "header")?.ok_or(AuthError::MissingKid)?;
        let jku = string_member(&header, "jku", "header")?;

        // The payload is not trusted yet: `iss` is read only to choose whose keys to verify
        // with. Every claim returned is re-read from the payload `jsonwebtoken` has verified.
        let unverified = json_object(payload_part, "payload")?;
        let iss =
            string_member(&unverified, "iss", "claim")?.ok_or(AuthError::MissingClaim("iss"))?;
        let issuer = self
            .issuers
            .get(iss)
            .ok_or_else(|| AuthError::UnknownIssuer(excerpt(iss)))?;
        check_jku(issuer, jku, iss)?;

        let key = self.find_key(issuer, kid).await?;
        if key.alg != alg {
            return Err(AuthError::UnknownKey(excerpt(kid)));
        }
        let payload = verify_signature(token, &key, audience, iss)?;
        let claims = self.check_claims(&payload, iss, now)?;
        self.remember_jti(&claims, now)?;
        Ok(claims)
    }

    async fn find_key(&self, issuer: &IssuerKeys, kid: &str) -> Result<VerifyingKey, AuthError> {
        match issuer {
            IssuerKeys::Pinned(set, _) => set
                .by_kid
                .get(kid)
                .cloned()
                .ok_or_else(|| AuthError::UnknownKey(excerpt(kid))),
            IssuerKeys::Remote(remote) => self.find_remote_key(remote, kid).await,
        }
    }

    async fn find_remote_key(
        &self,
        remote: &RemoteKeys,
        kid: &str,
    ) -> Result<VerifyingKey, AuthError> {
        let mut state = remote.state.lock().await;
        let fresh = state.keys.is_some()
            && state
                .fetched_at
                .is_some_and(|at| at.elapsed() < self.jwks_cache_ttl);
        if !fresh {
            self.refresh(remote, &mut state).await?;
        }
        if let Some(key) = state.lookup(kid) {
            return Ok(key);
        }
        // The issuer may have rotated keys since the last fetch. If that fetch is old enough,
        // look once more; a set fetched just now is not fetched again.
        if state
            .fetched_at
            .is_some_and(|at| at.elapsed() >= ROTATION_REFETCH_AFTER)
        {
            self.refresh(remote, &mut state).await?;
            if let Some(key) = state.lookup(kid) {
                return Ok(key);
            }
        }
        Err(AuthError::UnknownKey(excerpt(kid)))
    }

    /// Fetches the remote set again, or explains why the cached one is still used.
    async fn refresh(&self, remote: &RemoteKeys, state: &mut RemoteState) -> Result<(), AuthError> {
        if state
            .failed_at
            .is_some_and(|at| at.elapsed() < RETRY_AFTER_FAILURE)
        {
            return self.keep_stale(
                state,
                format!(
                    "fetching `{}` failed less than {} s ago",
                    remote.url,
                    RETRY_AFTER_FAILURE.as_secs()
                ),
            );
        }
        match self.fetch(&remote.url).await {
            Ok(set) => {
                tracing::debug!(url = %remote.url, keys = set.by_kid.len(), "fetched JWK set");
                state.keys = Some(set);
                state.fetched_at = Some(Instant::now());
                state.failed_at = None;
                Ok(())
            }
            Err(why) => {
                tracing::warn!(url = %remote.url, error = %why, "cannot refresh JWK set");
                state.failed_at = Some(Instant::now());
                self.keep_stale(state, why)
            }
        }
    }

    /// After a failed or skipped refresh: keep using the last good set within `STALE_GRACE`,
    /// otherwise drop it and report `why`.
    fn keep_stale(&self, state: &mut RemoteState, why: String) -> Result<(), AuthError> {
        let usable = state.keys.is_some()
            && state
                .fetched_at
                .is_some_and(|at| at.elapsed() < self.jwks_cache_ttl.saturating_add(STALE_GRACE));
        if usable {
            Ok(())
        } else {
            state.keys = None;
            Err(AuthError::Jwks(why))
        }
    }

    async fn fetch(&self, url: &str) -> Result<KeySet, String> {
        let mut response = self
            .http
            .get(url)
            .header(
                reqwest::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .send()
            .await
            .map_err(|e| format!("cannot fetch `{url}`: {}", error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("`{url}` answered HTTP {status}"));
        }
        let too_big = || format!("`{url}` sent more than {MAX_JWKS_BYTES} bytes");
        if response
            .content_length()
            .is_some_and(|len| len > MAX_JWKS_BYTES as u64)
        {
            return Err(too_big());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("cannot read `{url}`: {}", error_chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        parse_key_set(&body, &format!("key set `{url}`"))
    }

    /// Time and presence checks on the verified payload.
    fn check_claims(
        &self,
        payload: &Map<String, Value>,
        iss: &str,
        now: u64,
    ) -> Result<Claims, AuthError> {
        // `jsonwebtoken` verified the same bytes we read `iss` from, so this cannot differ; the
        // check keeps that reasoning out of the security argument.
        if string_member(payload, "iss", "claim")? != Some(iss) {
            return Err(AuthError::UnknownIssuer(excerpt(iss)));
        }
        let exp = numeric_date(payload, "exp")?.ok_or(AuthError::MissingClaim("exp"))?;
        let iat = numeric_date(payload, "iat")?.ok_or(AuthError::MissingClaim("iat"))?;
        let nbf = numeric_date(payload, "nbf")?;
        let jti = string_member(payload, "jti", "claim")?.ok_or(AuthError::MissingClaim("jti"))?;
        if jti.is_empty() {
            return Err(AuthError::Malformed("claim `jti` is empty".into()));
        }
        let tenant = string_member(payload, "tenant", "claim")?;

        if exp < iat {
            return Err(AuthError::Malformed("`exp` is before `iat`".into()));
        }
        if exp.saturating_add(self.leeway_secs) < now {
            return Err(AuthError::Expired);
        }
        let latest_start = now.saturating_add(self.leeway_secs);
        if iat > latest_start || nbf.is_some_and(|nbf| nbf > latest_start) {
            return Err(AuthError::IssuedInFuture);
        }
        let lifetime = exp - iat;
        if lifetime > self.max_lifetime_secs {
            return Err(AuthError::LifetimeTooLong {
                secs: lifetime,
                max: self.max_lifetime_secs,
            });
        }
        Ok(Claims {
            iss: iss.to_owned(),
            jti: jti.to_owned(),
            exp,
            iat,
            tenant: tenant.map(str::to_owned),
        })
    }

    /// Records the token's `jti`, or refuses it if this issuer used it before. Runs last, so a
    /// token refused for another reason does not use up its `jti`.
    fn remember_jti(&self, claims: &Claims, now: u64) -> Result<(), AuthError> {
        // A panic while the lock was held cannot leave the two maps disagreeing in a way that
        // weakens the check (at worst an entry is kept too long), so a poisoned lock is reused.
        let mut cache = self.replay.lock().unwrap_or_else(PoisonError::into_inner);
        cache.prune(now);
        // After `exp + leeway` the token fails the `exp` check, so the entry is no longer needed.
        let until = claims.exp.saturating_add(self.leeway_secs);
        if cache.insert(&claims.iss, &claims.jti, until) {
            Ok(())
        } else {
            Err(AuthError::Replayed)
        }
    }
}

impl RemoteState {
    fn lookup(&self, kid: &str) -> Option<VerifyingKey> {
        self.keys.as_ref()?.by_kid.get(kid).cloned()
    }
}

impl ReplayCache {
    /// Drops the entries that expired before `now`.
    fn prune(&mut self, now: u64) {
        while let Some((until, _, _)) = self.by_expiry.first()
            && *until < now
        {
            if let Some((_, iss, jti)) = self.by_expiry.pop_first() {
                self.seen.remove(&(iss, jti));
            }
        }
    }

    /// Returns false if `(iss, jti)` is already present.
    fn insert(&mut self, iss: &str, jti: &str, until: u64) -> bool {
        let key = (iss.to_owned(), jti.to_owned());
        if self.seen.contains_key(&key) {
            return false;
        }
        self.by_expiry
            .insert((until, iss.to_owned(), jti.to_owned()));
        self.seen.insert(key, until);
        true
    }
}

/// Extracts the token from `Bearer <token>`; the scheme is case-insensitive (RFC 9110 §11.1).
fn bearer_token(authorization: Option<&str>) -> Result<&str, AuthError> {
    let value = authorization.map(str::trim).unwrap_or_default();
    if value.is_empty() {
        return Err(AuthError::Missing);
    }
    let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("Bearer") {
        return Err(AuthError::Malformed(
            "the `Authorization` scheme must be `Bearer`".into(),
        ));
    }
    let token = credentials.trim_start_matches(' ');
    if token.is_empty() {
        return Err(AuthError::Malformed(
            "the `Bearer` credentials are empty".into(),
        ));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Malformed(format!(
            "the token is longer than {MAX_TOKEN_BYTES} bytes"
        )));
    }
    Ok(token)
}

/// Splits a compact JWS into its header and payload parts. The signature may be empty here, so
/// that an `alg: none` token is reported as such rather than as malformed.
fn split_token(token: &str) -> Result<(&str, &str), AuthError> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(payload), Some(_signature), None)
            if !header.is_empty() && !payload.is_empty() =>
        {
            Ok((header, payload))
        }
        _ => Err(AuthError::Malformed(
            "a signed JWT has three dot-separated parts (encrypted tokens are not accepted)".into(),
        )),
    }
}

fn json_object(part: &str, what: &str) -> Result<Map<String, Value>, AuthError> {
    let bytes = base64url_decode(part)
        .ok_or_else(|| AuthError::Malformed(format!("the {what} is not base64url")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(AuthError::Malformed(format!(
            "the {what} is not a JSON object"
        ))),
    }
}

/// The spec allows only asymmetric algorithms and recommends ES384 and RS384; we accept exactly
/// those two. Checking the name before any key lookup means an HMAC token can never be verified
/// with a public key used as the secret.
fn accepted_algorithm(header: &Map<String, Value>) -> Result<Algorithm, AuthError> {
    match string_member(header, "alg", "header")? {
        Some("ES384") => Ok(Algorithm::ES384),
        Some("RS384") => Ok(Algorithm::RS384),
        Some(other) => Err(AuthError::Algorithm(excerpt(other))),
        None => Err(AuthError::Malformed("the header has no `alg`".into())),
    }
}

/// A key set URL configured for an issuer is the only one a `jku` may name; a file or inline
/// key set without a configured `jku` URL refuses every `jku`.
fn check_jku(issuer: &IssuerKeys, jku: Option<&str>, iss: &str) -> Result<(), AuthError> {
    match (jku, issuer) {
        (None, _) => Ok(()),
        (Some(jku), IssuerKeys::Remote(remote)) if remote.url == jku => Ok(()),
        (Some(jku), IssuerKeys::Pinned(_, Some(url))) if url == jku => Ok(()),
        (Some(jku), _) => Err(AuthError::Jwks(format!(
            "header `jku` `{}` is not the key set URL configured for issuer `{}`",
            excerpt(jku),
            excerpt(iss)
        ))),
    }
}

/// Verifies the signature and `aud`; returns the verified payload.
fn verify_signature(
    token: &str,
    key: &VerifyingKey,
    audience: &str,
    iss: &str,
) -> Result<Map<String, Value>, AuthError> {
    let mut validation = Validation::new(key.alg);
    validation.set_required_spec_claims(&["iss", "aud", "exp"]);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[iss]);
    // Times are checked in `check_claims` against the caller's `now`, not the system clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
        .map(|data| data.claims)
        .map_err(|e| from_jwt_error(&e))
}

/// Maps `jsonwebtoken` errors without quoting them: some carry `serde_json` messages that can
/// contain claim text.
fn from_jwt_error(error: &jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::InvalidSignature => AuthError::Signature,
        ErrorKind::InvalidAudience => AuthError::Audience,
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "iss" => AuthError::MissingClaim("iss"),
            "aud" => AuthError::MissingClaim("aud"),
            "exp" => AuthError::MissingClaim("exp"),
            _ => AuthError::Malformed("a required claim is missing".into()),
        },
        ErrorKind::InvalidIssuer => AuthError::Malformed("claim `iss` must be one string".into()),
        ErrorKind::Base64(_) => AuthError::Malformed("a part is not base64url".into()),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            AuthError::Malformed("the header or payload is not valid JSON".into())
        }
        _ => AuthError::Malformed("the token cannot be decoded".into()),
    }
}

/// Reads an optional string member; present but not a string is malformed.
fn string_member<'a>(
    object: &'a Map<String, Value>,
    name: &str,
    what: &str,
) -> Result<Option<&'a str>, AuthError> {
    match object.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(AuthError::Malformed(format!(
            "{what} `{name}` must be a string"
        ))),
    }
}

/// Reads an optional `NumericDate` (RFC 7519 §2): seconds, possibly fractional, rounded down.
fn numeric_date(object: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, AuthError> {
    let Some(value) = object.get(name) else {
        return Ok(None);
    };
    let seconds = value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| s.floor() as u64)
    });
    seconds.map(Some).ok_or_else(|| {
        AuthError::Malformed(format!(
            "claim `{name}` must be a non-negative number of seconds"
        ))
    })
}

/// Parses a JWK Set document. Keys that do not parse or cannot be used are skipped with a
/// warning, as RFC 7517 §5 asks, so one exotic key does not lock out the others.
fn parse_key_set(json: &[u8], origin: &str) -> Result<KeySet, String> {
    let document: Value =
        serde_json::from_slice(json).map_err(|e| format!("{origin} is not JSON: {e}"))?;
    let Some(entries) = document.get("keys").and_then(Value::as_array) else {
        return Err(format!("{origin} has no `keys` array"));
    };
    let mut keys = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        match serde_json::from_value::<Jwk>(entry.clone()) {
            Ok(jwk) => keys.push(jwk),
            Err(e) => {
                tracing::warn!(%origin, index, error = %e, "skipping a key that is not a JWK")
            }
        }
    }
    usable_keys(&keys, origin)
}

fn usable_keys(keys: &[Jwk], origin: &str) -> Result<KeySet, String> {
    let mut set = KeySet::default();
    for jwk in keys {
        let kid = jwk.common.key_id.as_deref().unwrap_or_default();
        match verifying_key(jwk) {
            Ok(key) => match set.by_kid.entry(kid.to_owned()) {
                Entry::Vacant(slot) => {
                    slot.insert(key);
                }
                // RFC 7517 §4.5 wants `kid`s distinct within a set; keep the first, as
                // `JwkSet::find` would.
                Entry::Occupied(_) => {
                    tracing::warn!(%origin, kid, "skipping a key whose `kid` is already used");
                }
            },
            Err(why) => tracing::warn!(%origin, kid, "skipping a key: {why}"),
        }
    }
    if set.by_kid.is_empty() {
        return Err(format!(
            "{origin} has no usable signing key (EC P-384 or RSA of at least 2048 bits, with a `kid`)"
        ));
    }
    Ok(set)
}

/// Converts one JWK, or says why it cannot verify CDS Hooks tokens.
fn verifying_key(jwk: &Jwk) -> Result<VerifyingKey, String> {
    if jwk.common.key_id.as_deref().is_none_or(str::is_empty) {
        return Err("it has no `kid`, so no token can select it".into());
    }
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|usage| *usage != PublicKeyUse::Signature)
    {
        return Err("its `use` is not `sig`".into());
    }
    if jwk
        .common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return Err("its `key_ops` do not include `verify`".into());
    }
    let (alg, declared, key) = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(ec) => {
            if ec.curve != EllipticCurve::P384 {
                return Err(format!("EC curve {:?} is not P-384", ec.curve));
            }
            let key = DecodingKey::from_ec_components(&ec.x, &ec.y)
                .map_err(|_| "its `x` or `y` is not base64url".to_owned())?;
            (Algorithm::ES384, KeyAlgorithm::ES384, key)
        }
        AlgorithmParameters::RSA(rsa) => {
            let modulus =
                base64url_decode(&rsa.n).ok_or_else(|| "its `n` is not base64url".to_owned())?;
            let significant = modulus.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return Err(format!(
                    "its RSA modulus has {} bits, fewer than 2048",
                    significant * 8
                ));
            }
            let key = DecodingKey::from_rsa_components(&rsa.n, &rsa.e)
                .map_err(|_| "its `n` or `e` is not base64url".to_owned())?;
            (Algorithm::RS384, KeyAlgorithm::RS384, key)
        }
        _ => return Err("only EC P-384 and RSA keys are accepted".into()),
    };
    if let Some(stated) = jwk.common.key_algorithm
        && stated != declared
    {
        return Err(format!("its `alg` is {stated}, not {declared}"));
    }
    // Building a verifier parses the key (point on the curve, RSA parameters), so a broken key
    // is reported now, by the key set, instead of as a bad signature on every request.
    jsonwebtoken::crypto::verify("", b"", &key, alg)
        .map_err(|_| "its parameters do not form a valid public key".to_owned())?;
    Ok(VerifyingKey { alg, key })
}

/// Key set URLs must be `https`, so the keys cannot be swapped in transit; plain `http` is
/// allowed only to a loopback address (local test clients).
fn check_jwks_url(url: &str) -> Result<(), String> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| format!("key set URL `{url}` is invalid: {e}"))?;
    let host = parsed.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!(
            "key set URL `{url}` must use https (plain http only on a loopback address)"
        )),
    }
}

/// Decodes unpadded base64url (RFC 7515 §2), rejecting padding, other alphabets and non-zero
/// trailing bits, as `jsonwebtoken` does, so both see the same bytes.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    (buffer == 0).then_some(out)
}

/// A caller-supplied value made safe to quote: control characters and backticks replaced,
/// length capped.
fn excerpt(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_EXCERPT_CHARS)
        .map(|c| if c.is_control() || c == '`' { '?' } else { c })
        .collect();
    if text.chars().nth(MAX_EXCERPT_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// `reqwest` errors put the useful part (refused, DNS, TLS) in their sources.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;
    use tokio::net::TcpListener;

    use super::*;

    const ES384_PRIVATE: &str = include_str!("../../tests/fixtures/keys/es384-private.pem");
    const ES384_OTHER_PRIVATE: &str =
        include_str!("../../tests/fixtures/keys/es384-other-private.pem");
    const RS384_PRIVATE: &str = include_str!("../../tests/fixtures/keys/rs384-private.pem");
    const RS384_PUBLIC: &str = include_str!("../../tests/fixtures/keys/rs384-public.pem");
    const TEST_JWKS: &str = include_str!("../../tests/fixtures/keys/jwks.json");

    /// The example from CDS Hooks 2.0, "Trusting CDS Clients" (cds-hooks/docs,
    /// `docs/specification/current.md`): header `{alg: ES384, typ: JWT, kid: example-kid,
    /// jku: https://fhir-ehr.example.com/jwk_uri}`, payload with `iat` 1311280970 and
    /// `exp` 1422568860.
    const SPEC_TOKEN: &str = "eyJhbGciOiJFUzM4NCIsInR5cCI6IkpXVCIsImtpZCI6ImV4YW1wbGUta2lkIiwiamt1IjoiaHR0cHM6Ly9maGlyLWVoci5leGFtcGxlLmNvbS9qd2tfdXJpIn0.eyJpc3MiOiJodHRwczovL2ZoaXItZWhyLmV4YW1wbGUuY29tLyIsImF1ZCI6Imh0dHBzOi8vY2RzLmV4YW1wbGUub3JnL2Nkcy1zZXJ2aWNlcy9zb21lLXNlcnZpY2UiLCJleHAiOjE0MjI1Njg4NjAsImlhdCI6MTMxMTI4MDk3MCwianRpIjoiZWUyMmIwMjEtZTFiNy00NjExLWJhNWItOGVlYzZhMzNhYzFlIiwidGVuYW50IjoiMmRkZDZjM2EtOGU5YS00NGM2LWEzMDUtNTIxMTFhZDMwMmEyIn0.d1WfLjGRKlcWB94l9do4cM8REXeYJLL6SGUBO8VHZhfM8mwKYP70EMxJ67War4TQblEpaQrp11wx5p7oPFm2ETYgCicS84vXWEIYTdjooZdooCSDf2L8-i4awdoUwiEb";
    /// The public JWK Set printed next to `SPEC_TOKEN`.
    const SPEC_JWKS: &str = r#"{
      "keys": [
        {
          "kty": "EC",
          "use": "sig",
          "crv": "P-384",
          "kid": "example-kid",
          "x": "46SDH7Znh821wblCBglA61sNE9ZrHYKKt3qRtRTmSXyOI_FIGBLWrWa0GPUkDCEk",
          "y": "XMcRuuoGW7CXjQdy-F5i3FeBE0x9hPLdeFdSoDd3ELmx404tLX0VRRcqzAsPhXcI",
          "alg": "ES384"
        }
      ]
    }"#;
    const SPEC_ISS: &str = "https://fhir-ehr.example.com/";
    const SPEC_JKU: &str = "https://fhir-ehr.example.com/jwk_uri";
    const SPEC_AUD: &str = "https://cds.example.org/cds-services/some-service";
    const SPEC_IAT: u64 = 1_311_280_970;

    const ISS: &str = "https://ehr.example.org/";
    const AUD: &str = "https://cds.example.org/cds-services/jakguard-order-select";
    /// 2026-01-01T00:00:00Z.
    const NOW: u64 = 1_767_225_600;

    // ---- helpers -------------------------------------------------------------------------

    fn base64url(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            }
        }
        out
    }

    /// PEM armour off, base64 body decoded (jsonwebtoken is built without `use_pem`).
    fn pem_to_der(pem: &str) -> Vec<u8> {
        let body: String = pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect::<String>()
            .chars()
            .filter_map(|c| match c {
                '+' => Some('-'),
                '/' => Some('_'),
                '=' => None,
                c => Some(c),
            })
            .collect();
        base64url_decode(&body).expect("fixture PEM body is base64")
    }

    fn es384_key() -> EncodingKey {
        EncodingKey::from_ec_der(&pem_to_der(ES384_PRIVATE))
    }

    fn es384_other_key() -> EncodingKey {
        EncodingKey::from_ec_der(&pem_to_der(ES384_OTHER_PRIVATE))
    }

    fn rs384_key() -> EncodingKey {
        EncodingKey::from_rsa_der(&pem_to_der(RS384_PRIVATE))
    }

    fn test_jwks() -> JwkSet {
        serde_json::from_str(TEST_JWKS).unwrap()
    }

    fn config(trusted: Vec<TrustedIssuer>) -> AuthConfig {
        AuthConfig {
            trusted,
            ..AuthConfig::default()
        }
    }

    async fn verifier() -> Verifier {
        Verifier::new(config(vec![TrustedIssuer {
            iss: ISS.into(),
            jwks: JwksSource::Inline(test_jwks()),
            jku: None,
        }]))
        .await
        .unwrap()
    }

    fn claims(jti: &str) -> Value {
        json!({ "iss": ISS, "aud": AUD, "iat": NOW, "exp": NOW + 300, "jti": jti })
    }

    fn sign_with(header: Header, claims: &Value, key: &EncodingKey) -> String {
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    fn header(alg: Algorithm, kid: &str) -> Header {
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        header
    }

    fn es384(claims: &Value) -> String {
        sign_with(header(Algorithm::ES384, "test-es384"), claims, &es384_key())
    }

    fn rs384(claims: &Value) -> String {
        sign_with(header(Algorithm::RS384, "test-rs384"), claims, &rs384_key())
    }

    /// A token with a hand-written header and an arbitrary signature part.
    fn raw_token(header: &Value, claims: &Value, signature: &str) -> String {
        format!(
            "{}.{}.{signature}",
            base64url(header.to_string().as_bytes()),
            base64url(claims.to_string().as_bytes())
        )
    }

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    async fn check(verifier: &Verifier, token: &str) -> Result<Claims, AuthError> {
        verifier.verify(Some(&bearer(token)), AUD, NOW).await
    }

    /// A verifier trusting the spec's issuer through its `jku` URL, with the cache pre-filled
    /// from the spec's JWK Set (the example host does not exist).
    async fn spec_verifier(max_lifetime_secs: u64) -> Verifier {
        let verifier = Verifier::new(AuthConfig {
            max_lifetime_secs,
            ..config(vec![TrustedIssuer {
                iss: SPEC_ISS.into(),
                jwks: JwksSource::Url(SPEC_JKU.into()),
                jku: None,
            }])
        })
        .await
        .unwrap();
        let Some(IssuerKeys::Remote(remote)) = verifier.issuers.get(SPEC_ISS) else {
            panic!("the spec issuer has a remote key set");
        };
        let mut state = remote.state.lock().await;
        state.keys = Some(parse_key_set(SPEC_JWKS.as_bytes(), "spec key set").unwrap());
        state.fetched_at = Some(Instant::now());
        drop(state);
        verifier
    }

    /// Serves `body` (which the test may change) as JSON on 127.0.0.1 with hand-written HTTP/1.1
    /// and counts the requests. Uses `try_read`/`try_write` so it needs only tokio's `net`.
    async fn serve_jwks(body: Arc<Mutex<String>>) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&requests);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let mut request = Vec::new();
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    stream.readable().await.unwrap();
                    let mut buf = [0u8; 1024];
                    match stream.try_read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => panic!("test server read: {e}"),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let body = body.lock().unwrap().clone();
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let mut rest = response.as_bytes();
                while !rest.is_empty() {
                    stream.writable().await.unwrap();
                    match stream.try_write(rest) {
                        Ok(n) => rest = &rest[n..],
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => panic!("test server write: {e}"),
                    }
                }
            }
        });
        (url, requests)
    }

    async fn url_verifier(url: &str) -> Verifier {
        Verifier::new(config(vec![TrustedIssuer {
            iss: ISS.into(),
            jwks: JwksSource::Url(url.into()),
            jku: None,
        }]))
        .await
        .unwrap()
    }

    /// Makes the cached remote set look `age` old.
    async fn age_cache(verifier: &Verifier, age: Duration) {
        let Some(IssuerKeys::Remote(remote)) = verifier.issuers.get(ISS) else {
            panic!("the test issuer has a remote key set");
        };
        remote.state.lock().await.fetched_at = Instant::now().checked_sub(age);
    }

    // ---- the spec's example token ---------------------------------------------------------

    #[tokio::test]
    async fn spec_example_token_verifies_inside_its_validity() {
        // Its lifetime is about 3.5 years, so the 300 s policy is lifted for this test.
        let verifier = spec_verifier(u64::MAX).await;
        let claims = verifier
            .verify(Some(&bearer(SPEC_TOKEN)), SPEC_AUD, SPEC_IAT + 10)
            .await
            .unwrap();
        assert_eq!(
            claims,
            Claims {
                iss: SPEC_ISS.into(),
                jti: "ee22b021-e1b7-4611-ba5b-8eec6a33ac1e".into(),
                exp: 1_422_568_860,
                iat: SPEC_IAT,
                tenant: Some("2ddd6c3a-8e9a-44c6-a305-52111ad302a2".into()),
            }
        );
    }

    #[tokio::test]
    async fn spec_example_token_is_expired_in_2026() {
        let verifier = spec_verifier(u64::MAX).await;
        let result = verifier
            .verify(Some(&bearer(SPEC_TOKEN)), SPEC_AUD, NOW)
            .await;
        assert_eq!(result, Err(AuthError::Expired));
    }

    #[tokio::test]
    async fn spec_example_token_breaks_the_default_lifetime_policy() {
        let verifier = spec_verifier(300).await;
        let result = verifier
            .verify(Some(&bearer(SPEC_TOKEN)), SPEC_AUD, SPEC_IAT + 10)
            .await;
        assert_eq!(
            result,
            Err(AuthError::LifetimeTooLong {
                secs: 1_422_568_860 - SPEC_IAT,
                max: 300
            })
        );
    }

    #[tokio::test]
    async fn spec_example_token_is_refused_at_the_discovery_url() {
        let verifier = spec_verifier(u64::MAX).await;
        let result = verifier
            .verify(
                Some(&bearer(SPEC_TOKEN)),
                "https://cds.example.org/cds-services",
                SPEC_IAT + 10,
            )
            .await;
        assert_eq!(result, Err(AuthError::Audience));
    }

    #[tokio::test]
    async fn spec_example_token_with_a_pinned_key_set_is_refused_for_its_jku() {
        // The example carries a `jku`; with a pinned (file or inline) key set no URL is
        // allowlisted for the issuer, so the token is refused before any key is used.
        let verifier = Verifier::new(AuthConfig {
            max_lifetime_secs: u64::MAX,
            ..config(vec![TrustedIssuer {
                iss: SPEC_ISS.into(),
                jwks: JwksSource::Inline(serde_json::from_str(SPEC_JWKS).unwrap()),
                jku: None,
            }])
        })
        .await
        .unwrap();
        let result = verifier
            .verify(Some(&bearer(SPEC_TOKEN)), SPEC_AUD, SPEC_IAT + 10)
            .await;
        assert!(
            matches!(&result, Err(AuthError::Jwks(why)) if why.contains(SPEC_JKU)),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn spec_example_token_with_a_pinned_key_set_and_its_configured_jku_passes() {
        // Offline trust of a client that always sends `jku` (the CDS Hooks sandbox): the key
        // set comes from configuration and the URL it names is accepted, never fetched.
        let verifier = Verifier::new(AuthConfig {
            max_lifetime_secs: u64::MAX,
            ..config(vec![TrustedIssuer {
                iss: SPEC_ISS.into(),
                jwks: JwksSource::Inline(serde_json::from_str(SPEC_JWKS).unwrap()),
                jku: Some(SPEC_JKU.into()),
            }])
        })
        .await
        .unwrap();
        let result = verifier
            .verify(Some(&bearer(SPEC_TOKEN)), SPEC_AUD, SPEC_IAT + 10)
            .await;
        assert!(result.is_ok(), "{result:?}");
    }

    // ---- good tokens ----------------------------------------------------------------------

    #[tokio::test]
    async fn valid_es384_token_passes() {
        let verifier = verifier().await;
        let claims = check(&verifier, &es384(&claims("es-1"))).await.unwrap();
        assert_eq!(
            claims,
            Claims {
                iss: ISS.into(),
                jti: "es-1".into(),
                exp: NOW + 300,
                iat: NOW,
                tenant: None,
            }
        );
    }

    #[tokio::test]
    async fn valid_rs384_token_passes() {
        let verifier = verifier().await;
        let mut claims = claims("rs-1");
        claims["tenant"] = json!("org-1");
        let claims = check(&verifier, &rs384(&claims)).await.unwrap();
        assert_eq!(claims.jti, "rs-1");
        assert_eq!(claims.tenant.as_deref(), Some("org-1"));
    }

    #[tokio::test]
    async fn bearer_scheme_is_case_insensitive() {
        let verifier = verifier().await;
        let header = format!("bEARER {}", es384(&claims("case-1")));
        assert!(verifier.verify(Some(&header), AUD, NOW).await.is_ok());
    }

    #[tokio::test]
    async fn audience_array_containing_the_url_passes() {
        let verifier = verifier().await;
        let mut claims = claims("aud-array-1");
        claims["aud"] = json!(["https://cds.example.org/cds-services", AUD]);
        assert!(check(&verifier, &es384(&claims)).await.is_ok());
    }

    #[tokio::test]
    async fn token_within_the_leeway_passes() {
        let verifier = verifier().await;
        let mut claims = claims("leeway-1");
        claims["iat"] = json!(NOW - 320);
        claims["exp"] = json!(NOW - 20);
        assert!(check(&verifier, &es384(&claims)).await.is_ok());
    }

    #[tokio::test]
    async fn file_key_set_is_loaded() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys/jwks.json");
        let verifier = Verifier::new(config(vec![TrustedIssuer {
            iss: ISS.into(),
            jwks: JwksSource::File(path),
            jku: None,
        }]))
        .await
        .unwrap();
        assert!(check(&verifier, &rs384(&claims("file-1"))).await.is_ok());
    }

    // ---- signature and key selection --------------------------------------------------------

    #[tokio::test]
    async fn wrong_signature_from_another_key_with_the_same_kid_fails() {
        let verifier = verifier().await;
        let token = sign_with(
            header(Algorithm::ES384, "test-es384"),
            &claims("forged-1"),
            &es384_other_key(),
        );
        assert_eq!(check(&verifier, &token).await, Err(AuthError::Signature));
    }

    #[tokio::test]
    async fn tampered_payload_fails() {
        let verifier = verifier().await;
        let token = es384(&claims("tamper-1"));
        let signature = token.rsplit('.').next().unwrap();
        let mut claims = claims("tamper-1");
        claims["aud"] = json!("https://cds.example.org/cds-services/other");
        let forged = raw_token(
            &json!({"alg": "ES384", "typ": "JWT", "kid": "test-es384"}),
            &claims,
            signature,
        );
        let result = verifier
            .verify(
                Some(&bearer(&forged)),
                "https://cds.example.org/cds-services/other",
                NOW,
            )
            .await;
        assert_eq!(result, Err(AuthError::Signature));
    }

    #[tokio::test]
    async fn missing_kid_fails() {
        let verifier = verifier().await;
        let token = sign_with(
            Header::new(Algorithm::ES384),
            &claims("nokid-1"),
            &es384_key(),
        );
        assert_eq!(check(&verifier, &token).await, Err(AuthError::MissingKid));
    }

    #[tokio::test]
    async fn unknown_kid_fails() {
        let verifier = verifier().await;
        let token = sign_with(
            header(Algorithm::ES384, "not-in-the-set"),
            &claims("kid-1"),
            &es384_key(),
        );
        assert_eq!(
            check(&verifier, &token).await,
            Err(AuthError::UnknownKey("not-in-the-set".into()))
        );
    }

    #[tokio::test]
    async fn kid_of_the_other_key_type_fails() {
        // An RS384 token naming the EC key: the key decides the algorithm, not the token.
        let verifier = verifier().await;
        let token = sign_with(
            header(Algorithm::RS384, "test-es384"),
            &claims("mix-1"),
            &rs384_key(),
        );
        assert_eq!(
            check(&verifier, &token).await,
            Err(AuthError::UnknownKey("test-es384".into()))
        );
    }

    // ---- algorithms --------------------------------------------------------------------------

    #[tokio::test]
    async fn alg_none_is_rejected() {
        let verifier = verifier().await;
        let token = raw_token(
            &json!({"alg": "none", "typ": "JWT", "kid": "test-es384"}),
            &claims("none-1"),
            "",
        );
        assert_eq!(
            check(&verifier, &token).await,
            Err(AuthError::Algorithm("none".into()))
        );
    }

    #[tokio::test]
    async fn hs256_signed_with_the_public_key_is_rejected() {
        let verifier = verifier().await;
        let token = sign_with(
            header(Algorithm::HS256, "test-rs384"),
            &claims("hs-1"),
            &EncodingKey::from_secret(RS384_PUBLIC.as_bytes()),
        );
        assert_eq!(
            check(&verifier, &token).await,
            Err(AuthError::Algorithm("HS256".into()))
        );
    }

    #[tokio::test]
    async fn es256_is_rejected() {
        let verifier = verifier().await;
        let token = raw_token(
            &json!({"alg": "ES256", "typ": "JWT", "kid": "test-es384"}),
            &claims("es256-1"),
            "AAAA",
        );
        assert_eq!(
            check(&verifier, &token).await,
            Err(AuthError::Algorithm("ES256".into()))
        );
    }

    #[tokio::test]
    async fn typ_other_than_jwt_is_rejected() {
        let verifier = verifier().await;
        let mut header = header(Algorithm::ES384, "test-es384");
        header.typ = Some("at+jwt".into());
        let token = sign_with(header, &claims("typ-1"), &es384_key());
        assert!(matches!(
            check(&verifier, &token).await,
            Err(AuthError::Malformed(_))
        ));
    }

    // ---- audience and time -------------------------------------------------------------------

    #[tokio::test]
    async fn wrong_audience_fails() {
        let verifier = verifier().await;
        let token = es384(&claims("aud-1"));
        let result = verifier
            .verify(
                Some(&bearer(&token)),
                "https://cds.example.org/cds-services/other",
                NOW,
            )
            .await;
        assert_eq!(result, Err(AuthError::Audience));
    }

    #[tokio::test]
    async fn audience_array_without_the_url_fails() {
        let verifier = verifier().await;
        let mut claims = claims("aud-array-2");
        claims["aud"] = json!(["https://cds.example.org/cds-services"]);
        assert_eq!(
            check(&verifier, &es384(&claims)).await,
            Err(AuthError::Audience)
        );
    }

    #[tokio::test]
    async fn expired_token_fails() {
        let verifier = verifier().await;
        let mut claims = claims("exp-1");
        claims["iat"] = json!(NOW - 400);
        claims["exp"] = json!(NOW - 100);
        assert_eq!(
            check(&verifier, &es384(&claims)).await,
            Err(AuthError::Expired)
        );
    }

    #[tokio::test]
    async fn iat_in_the_future_fails() {
        let verifier = verifier().await;
        let mut claims = claims("iat-1");
        claims["iat"] = json!(NOW + 120);
        claims["exp"] = json!(NOW + 400);
        assert_eq!(
            check(&verifier, &es384(&claims)).await,
            Err(AuthError::IssuedInFuture)
        );
    }

    #[tokio::test]
    async fn lifetime_over_300_seconds_fails() {
        let verifier = verifier().await;
        let mut claims = claims("life-1");
        claims["exp"] = json!(NOW + 301);
        assert_eq!(
            check(&verifier, &es384(&claims)).await,
            Err(AuthError::LifetimeTooLong {
                secs: 301,
                max: 300
            })
        );
    }

    #[tokio::test]
    async fn missing_iat_and_jti_fail() {
        let verifier = verifier().await;
        for claim in ["iat", "jti"] {
            let mut claims = claims("missing-1");
            claims.as_object_mut().unwrap().remove(claim);
            assert_eq!(
                check(&verifier, &es384(&claims)).await,
                Err(AuthError::MissingClaim(claim))
            );
        }
    }

    // ---- issuers, replay, jku ----------------------------------------------------------------

    #[tokio::test]
    async fn unknown_issuer_fails() {
        let verifier = verifier().await;
        let mut claims = claims("iss-1");
        claims["iss"] = json!("https://evil.example/");
        assert_eq!(
            check(&verifier, &es384(&claims)).await,
            Err(AuthError::UnknownIssuer("https://evil.example/".into()))
        );
    }

    #[tokio::test]
    async fn replayed_jti_fails_and_a_new_jti_passes() {
        let verifier = verifier().await;
        let token = es384(&claims("replay-1"));
        assert!(check(&verifier, &token).await.is_ok());
        assert_eq!(check(&verifier, &token).await, Err(AuthError::Replayed));
        assert!(check(&verifier, &es384(&claims("replay-2"))).await.is_ok());
    }

    #[tokio::test]
    async fn replay_cache_forgets_a_jti_once_its_token_has_expired() {
        let verifier = verifier().await;
        assert!(check(&verifier, &es384(&claims("prune-1"))).await.is_ok());
        // A later token, checked after the first one's exp + leeway, prunes it.
        let later = NOW + 400;
        let mut claims = claims("prune-2");
        claims["iat"] = json!(later);
        claims["exp"] = json!(later + 300);
        let result = verifier
            .verify(Some(&bearer(&es384(&claims))), AUD, later)
            .await;
        assert!(result.is_ok());
        let cache = verifier.replay.lock().unwrap();
        assert_eq!(cache.seen.len(), 1);
        assert_eq!(cache.by_expiry.len(), 1);
    }

    #[tokio::test]
    async fn jku_not_allowlisted_fails() {
        let verifier = verifier().await;
        let mut header = header(Algorithm::ES384, "test-es384");
        header.jku = Some("https://evil.example/jwks.json".into());
        let token = sign_with(header, &claims("jku-1"), &es384_key());
        let result = check(&verifier, &token).await;
        assert!(
            matches!(&result, Err(AuthError::Jwks(why)) if why.contains("https://evil.example/jwks.json")),
            "{result:?}"
        );
    }

    // ---- the Authorization header and token shape ------------------------------------------

    #[tokio::test]
    async fn missing_authorization_fails() {
        let verifier = verifier().await;
        assert_eq!(
            verifier.verify(None, AUD, NOW).await,
            Err(AuthError::Missing)
        );
        assert_eq!(
            verifier.verify(Some("  "), AUD, NOW).await,
            Err(AuthError::Missing)
        );
    }

    #[tokio::test]
    async fn basic_scheme_fails() {
        let verifier = verifier().await;
        let result = verifier
            .verify(Some("Basic dXNlcjpwYXNzd29yZA=="), AUD, NOW)
            .await;
        assert!(matches!(result, Err(AuthError::Malformed(_))), "{result:?}");
    }

    #[tokio::test]
    async fn malformed_tokens_fail() {
        let verifier = verifier().await;
        let good = es384(&claims("shape-1"));
        let mut parts = good.split('.');
        let (h, p, s) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let cases = [
            "Bearer".to_owned(),
            "Bearer ".to_owned(),
            bearer("not-a-jwt"),
            bearer(&format!("{h}.{p}")),
            bearer(&format!("{h}.{p}.{s}.{s}.{s}")),
            bearer(&format!(".{p}.{s}")),
            bearer(&format!("{h}!.{p}.{s}")),
            bearer(&format!("{}.{p}.{s}", base64url(b"[1,2,3]"))),
            bearer(&format!("{h}.{}.{s}", base64url(b"not json"))),
            bearer(&"a".repeat(MAX_TOKEN_BYTES + 1)),
        ];
        for case in &cases {
            let result = verifier.verify(Some(case), AUD, NOW).await;
            assert!(
                matches!(result, Err(AuthError::Malformed(_))),
                "{case:.40}: {result:?}"
            );
        }
    }

    #[tokio::test]
    async fn errors_never_quote_the_token() {
        let verifier = verifier().await;
        let token = es384(&claims("quote-1"));
        let mut failures = vec![
            verifier
                .verify(Some(&bearer(&token)), "https://other.example/", NOW)
                .await,
            verifier
                .verify(Some(&bearer(&token)), AUD, NOW + 10_000)
                .await,
            verifier
                .verify(Some(&format!("Bearer {token}x")), AUD, NOW)
                .await,
        ];
        assert!(check(&verifier, &token).await.is_ok());
        failures.push(check(&verifier, &token).await);
        for failure in failures {
            let message = failure.unwrap_err().to_string();
            for part in token.split('.') {
                assert!(!message.contains(part), "{message}");
            }
        }
    }

    // ---- key sets from a URL -------------------------------------------------------------------

    #[tokio::test]
    async fn url_key_set_is_fetched_once_and_cached() {
        let (url, requests) = serve_jwks(Arc::new(Mutex::new(TEST_JWKS.to_owned()))).await;
        let verifier = url_verifier(&url).await;
        assert_eq!(requests.load(Ordering::SeqCst), 0, "fetched lazily");

        // A matching `jku` is allowed.
        let mut header = header(Algorithm::ES384, "test-es384");
        header.jku = Some(url.clone());
        let token = sign_with(header, &claims("url-1"), &es384_key());
        assert!(check(&verifier, &token).await.is_ok());
        assert_eq!(requests.load(Ordering::SeqCst), 1);

        assert!(check(&verifier, &rs384(&claims("url-2"))).await.is_ok());
        assert_eq!(requests.load(Ordering::SeqCst), 1, "served from the cache");
    }

    #[tokio::test]
    async fn url_key_set_is_refetched_for_an_unknown_kid_only_when_older_than_a_minute() {
        let body = Arc::new(Mutex::new(TEST_JWKS.to_owned()));
        let (url, requests) = serve_jwks(Arc::clone(&body)).await;
        let verifier = url_verifier(&url).await;
        assert!(check(&verifier, &es384(&claims("rot-1"))).await.is_ok());
        assert_eq!(requests.load(Ordering::SeqCst), 1);

        // The issuer rotates in a new key.
        let mut rotated = Jwk::from_encoding_key(&es384_other_key(), Algorithm::ES384).unwrap();
        rotated.common.key_id = Some("rotated-es384".into());
        let mut set = test_jwks();
        set.keys.push(rotated);
        *body.lock().unwrap() = serde_json::to_string(&set).unwrap();
        let token = sign_with(
            header(Algorithm::ES384, "rotated-es384"),
            &claims("rot-2"),
            &es384_other_key(),
        );

        // A set fetched seconds ago is not fetched again.
        assert_eq!(
            check(&verifier, &token).await,
            Err(AuthError::UnknownKey("rotated-es384".into()))
        );
        assert_eq!(requests.load(Ordering::SeqCst), 1);

        // Once it is a minute old, an unknown kid triggers one refetch.
        age_cache(&verifier, Duration::from_secs(61)).await;
        assert!(check(&verifier, &token).await.is_ok());
        assert_eq!(requests.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn unreachable_url_key_set_fails_as_jwks() {
        // Bind then drop a listener so the port is (almost certainly) closed.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        drop(listener);
        let verifier = url_verifier(&url).await;
        let result = check(&verifier, &es384(&claims("down-1"))).await;
        assert!(matches!(result, Err(AuthError::Jwks(_))), "{result:?}");
    }

    // ---- configuration ---------------------------------------------------------------------------

    #[tokio::test]
    async fn unreadable_key_set_file_fails_at_start_up() {
        let result = Verifier::new(config(vec![TrustedIssuer {
            iss: ISS.into(),
            jwks: JwksSource::File("/nonexistent/jwks.json".into()),
            jku: None,
        }]))
        .await;
        assert!(matches!(result, Err(AuthError::Jwks(_))));
    }

    #[tokio::test]
    async fn plain_http_key_set_url_is_refused_unless_loopback() {
        for (url, ok) in [
            ("http://ehr.example.org/jwks.json", false),
            ("ftp://ehr.example.org/jwks.json", false),
            ("https://ehr.example.org/jwks.json", true),
            ("http://127.0.0.1:8080/jwks.json", true),
            ("http://[::1]:8080/jwks.json", true),
            ("http://localhost/jwks.json", true),
        ] {
            let result = Verifier::new(config(vec![TrustedIssuer {
                iss: ISS.into(),
                jwks: JwksSource::Url(url.into()),
                jku: None,
            }]))
            .await;
            assert_eq!(result.is_ok(), ok, "{url}");
        }
    }

    #[tokio::test]
    async fn unusable_keys_are_skipped_and_an_empty_set_is_refused() {
        // A symmetric key and a P-256 key are never usable; with nothing else the set is refused.
        let set: JwkSet = serde_json::from_value(json!({"keys": [
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "EC", "crv": "P-256", "kid": "p256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
        ]}))
        .unwrap();
        let result = Verifier::new(config(vec![TrustedIssuer {
            iss: ISS.into(),
            jwks: JwksSource::Inline(set),
            jku: None,
        }]))
        .await;
        assert!(matches!(result, Err(AuthError::Jwks(_))));
    }

    #[tokio::test]
    async fn verify_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let verifier = verifier().await;
        let future = verifier.verify(None, AUD, NOW);
        assert_send(&future);
        assert_eq!(future.await, Err(AuthError::Missing));
    }
}
