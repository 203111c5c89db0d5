//! Server configuration: embedded defaults (`config/default.toml`), overridden by an optional
//! file and then by flags, validated once in `main` into a `Config` passed down explicitly.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

pub const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: String,
    pub public_url: String,
    pub db: PathBuf,
    pub max_body_bytes: usize,
    pub request_timeout_secs: u64,
    pub concurrency_limit: usize,
    pub cors_origins: Vec<String>,
    pub dev_insecure: bool,
    pub auth: AuthFile,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    pub max_lifetime_secs: u64,
    pub leeway_secs: u64,
    pub jwks_cache_secs: u64,
    #[serde(default)]
    pub trusted: Vec<TrustedFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedFile {
    pub iss: String,
    pub jwks_file: Option<PathBuf>,
    pub jwks_url: Option<String>,
    /// With `jwks_file`: the URL the issuer publishes the set at, accepted in a token's `jku`
    /// header but never fetched (the CDS Hooks sandbox sends one).
    pub jku: Option<String>,
}

/// A partial file: every key optional, laid over the defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Overlay {
    listen: Option<String>,
    public_url: Option<String>,
    db: Option<PathBuf>,
    max_body_bytes: Option<usize>,
    request_timeout_secs: Option<u64>,
    concurrency_limit: Option<usize>,
    cors_origins: Option<Vec<String>>,
    dev_insecure: Option<bool>,
    auth: Option<AuthOverlay>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthOverlay {
    max_lifetime_secs: Option<u64>,
    leeway_secs: Option<u64>,
    jwks_cache_secs: Option<u64>,
    trusted: Option<Vec<TrustedFile>>,
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Base URL without trailing slash, e.g. `https://cds.example.org`.
    pub public_url: String,
    pub db: PathBuf,
    pub max_body_bytes: usize,
    pub request_timeout_secs: u64,
    pub concurrency_limit: usize,
    pub cors_origins: Vec<String>,
    pub dev_insecure: bool,
    pub auth: AuthFile,
}

/// Command-line overrides.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub listen: Option<String>,
    pub db: Option<PathBuf>,
    pub public_url: Option<String>,
    pub dev_insecure: bool,
}

impl Config {
    /// Defaults, then the file (if any), then the flags.
    pub fn build(file_text: Option<(&str, &str)>, flags: &Flags) -> Result<Config, String> {
        let mut c: FileConfig =
            toml::from_str(DEFAULTS).map_err(|e| format!("embedded defaults: {}", e.message()))?;
        if let Some((path, text)) = file_text {
            let o: Overlay = toml::from_str(text).map_err(|e| {
                let line = e
                    .span()
                    .map(|s| text[..s.start].matches('\n').count() + 1)
                    .unwrap_or(0);
                format!("{path}:{line}: {}", e.message().trim())
            })?;
            if let Some(v) = o.listen {
                c.listen = v
            }
            if let Some(v) = o.public_url {
                c.public_url = v
            }
            if let Some(v) = o.db {
                c.db = v
            }
            if let Some(v) = o.max_body_bytes {
                c.max_body_bytes = v
            }
            if let Some(v) = o.request_timeout_secs {
                c.request_timeout_secs = v
            }
            if let Some(v) = o.concurrency_limit {
                c.concurrency_limit = v
            }
            if let Some(v) = o.cors_origins {
                c.cors_origins = v
            }
            if let Some(v) = o.dev_insecure {
                c.dev_insecure = v
            }
            if let Some(a) = o.auth {
                if let Some(v) = a.max_lifetime_secs {
                    c.auth.max_lifetime_secs = v
                }
                if let Some(v) = a.leeway_secs {
                    c.auth.leeway_secs = v
                }
                if let Some(v) = a.jwks_cache_secs {
                    c.auth.jwks_cache_secs = v
                }
                if let Some(v) = a.trusted {
                    c.auth.trusted = v
                }
            }
        }
        if let Some(v) = &flags.listen {
            c.listen = v.clone()
        }
        if let Some(v) = &flags.db {
            c.db = v.clone()
        }
        if let Some(v) = &flags.public_url {
            c.public_url = v.clone()
        }
        c.dev_insecure |= flags.dev_insecure;

        let listen: SocketAddr = c
            .listen
            .parse()
            .map_err(|_| format!("listen `{}` is not ADDR:PORT", c.listen))?;
        for t in &c.auth.trusted {
            if t.jwks_file.is_some() == t.jwks_url.is_some() {
                return Err(format!(
                    "trusted issuer `{}` needs exactly one of jwks_file or jwks_url",
                    t.iss
                ));
            }
        }
        if c.max_body_bytes < 1024 || c.concurrency_limit == 0 || c.request_timeout_secs == 0 {
            return Err(
                "max_body_bytes, concurrency_limit and request_timeout_secs must be positive"
                    .into(),
            );
        }
        let public_url = if c.public_url.trim().is_empty() {
            format!("http://{listen}")
        } else {
            c.public_url.trim_end_matches('/').to_string()
        };
        Ok(Config {
            listen,
            public_url,
            db: c.db,
            max_body_bytes: c.max_body_bytes,
            request_timeout_secs: c.request_timeout_secs,
            concurrency_limit: c.concurrency_limit,
            cors_origins: c.cors_origins,
            dev_insecure: c.dev_insecure,
            auth: c.auth,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_are_valid() {
        let c = Config::build(None, &Flags::default()).expect("defaults");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.public_url, "http://127.0.0.1:8080");
        assert!(!c.dev_insecure);
        assert_eq!(c.auth.max_lifetime_secs, 300);
    }

    #[test]
    fn file_and_flags_override_in_order_and_typos_are_errors() {
        let file = "listen = \"0.0.0.0:9000\"\n[auth]\nleeway_secs = 5\n";
        let flags = Flags {
            listen: Some("127.0.0.1:9999".into()),
            ..Flags::default()
        };
        let c = Config::build(Some(("x.toml", file)), &flags).expect("config");
        assert_eq!(c.listen.to_string(), "127.0.0.1:9999");
        assert_eq!(c.auth.leeway_secs, 5);
        let e = Config::build(
            Some(("x.toml", "\nlisten_addr = \"x\"\n")),
            &Flags::default(),
        )
        .unwrap_err();
        assert!(
            e.starts_with("x.toml:2:") && e.contains("listen_addr"),
            "{e}"
        );
        let e = Config::build(
            Some(("x.toml", "[[auth.trusted]]\niss = \"a\"\n")),
            &Flags::default(),
        )
        .unwrap_err();
        assert!(e.contains("exactly one of jwks_file or jwks_url"), "{e}");
    }
}
