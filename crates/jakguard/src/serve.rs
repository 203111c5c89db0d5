//! `jakguard serve` and `jakguard feedback report`: building the server's state from the
//! configuration (the only place that reads the config file, the key files and the clock).

use crate::config::{Config, Flags};
use crate::server::{self, AppState, auth};
use crate::store::{SqliteStore, Store};
use crate::{ListFormat, unusable};
use anyhow::Context;
use engine::Knowledge;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<String>,
    /// SQLite database for feedback and audit (default ./jakguard.db).
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Configuration file (TOML; see crates/jakguard/config/default.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The base URL as EHRs see it (JWT audience), when behind a proxy.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Skip JWT verification (local demos only).
    #[arg(long)]
    dev_insecure: bool,
    /// Fix "today" for every assessment (YYYY-MM-DD), for demos and tests.
    #[arg(long, value_name = "DATE")]
    as_of: Option<String>,
}

pub fn build_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let text = match &args.config {
        Some(p) => Some((
            p.display().to_string(),
            std::fs::read_to_string(p)
                .map_err(|e| unusable(format!("cannot read `{}`: {e}", p.display())))?,
        )),
        None => None,
    };
    let flags = Flags {
        listen: args.listen.clone(),
        db: args.db.clone(),
        public_url: args.public_url.clone(),
        dev_insecure: args.dev_insecure,
    };
    Config::build(text.as_ref().map(|(p, t)| (p.as_str(), t.as_str())), &flags).map_err(unusable)
}

/// Builds the shared state: store, verifier (unless insecure), HTTP client, services.
pub async fn state(
    kb: Knowledge,
    config: Config,
    as_of: Option<chrono::NaiveDate>,
) -> anyhow::Result<Arc<AppState>> {
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&config.db)
            .with_context(|| format!("cannot open the database `{}`", config.db.display()))?,
    );
    // With no trusted issuer configured, only a loopback listener may run (a local demo),
    // and it says so; anything reachable from elsewhere must verify tokens.
    let insecure = config.dev_insecure || config.auth.trusted.is_empty();
    if config.auth.trusted.is_empty() && !config.dev_insecure && !config.listen.ip().is_loopback() {
        return Err(unusable(format!(
            "listening on {} with no trusted issuer configured: add [[auth.trusted]] to the config, or use --dev-insecure",
            config.listen
        )));
    }
    let verifier = if insecure {
        None
    } else {
        let trusted = config
            .auth
            .trusted
            .iter()
            .map(|t| auth::TrustedIssuer {
                iss: t.iss.clone(),
                jwks: match (&t.jwks_file, &t.jwks_url) {
                    (Some(f), _) => auth::JwksSource::File(f.clone()),
                    (None, Some(u)) => auth::JwksSource::Url(u.clone()),
                    (None, None) => auth::JwksSource::Url(String::new()),
                },
                jku: t.jku.clone(),
            })
            .collect();
        let cfg = auth::AuthConfig {
            trusted,
            max_lifetime_secs: config.auth.max_lifetime_secs,
            leeway_secs: config.auth.leeway_secs,
            jwks_cache_secs: config.auth.jwks_cache_secs,
        };
        Some(
            auth::Verifier::new(cfg)
                .await
                .map_err(|e| unusable(format!("JWT keys: {e}")))?,
        )
    };
    // The EHR's FHIR server gets the EHR's token: a redirect, even to another path of the
    // same host, is not followed with it (a 3xx is then an error).
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("cannot build the HTTP client")?;
    let services = server::discovery::services(&kb);
    Ok(Arc::new(AppState {
        kb,
        config,
        store,
        verifier,
        http,
        services,
        as_of,
        assessments: crate::web::AssessmentCache::default(),
    }))
}

pub fn serve(kb: Knowledge, args: ServeArgs) -> anyhow::Result<()> {
    // Logs go to stderr, coloured only on a terminal. They carry no patient data: handlers
    // log errors and counts, never identifiers, tokens or clinical values.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,hyper=warn".into()),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = build_config(&args)?;
    let as_of = match &args.as_of {
        Some(s) => Some(
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| unusable(format!("--as-of `{s}` is not a date (YYYY-MM-DD)")))?,
        ),
        None => None,
    };
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|e| unusable(format!("cannot listen on {}: {e}", config.listen)))?;
        let addr = listener.local_addr()?;
        let state = state(kb, config, as_of).await?;
        let base = state.config.public_url.clone();
        if state.verifier.is_none() {
            tracing::warn!("INSECURE: JWTs are NOT verified (development mode). Never expose this server to an EHR or a network.");
        }
        tracing::info!(%addr, knowledge = %state.kb.version, "JAKGuard CDS Hooks service listening");
        println!("JAKGuard CDS Hooks service — supports clinical judgement; does not replace it.");
        println!("  web app:   {base}/  (patients and clinicians; demo patients on the home page)");
        println!("  discovery: {base}/cds-services");
        if state.verifier.is_none() {
            println!("  INSECURE development mode: JWTs are not verified.");
            println!("  try: curl -s -H 'content-type: application/json' --data @examples/cds-hooks/order-sign-tofacitinib.json {base}/cds-services/jakguard-order-sign");
        }
        server::run(listener, state, shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok::<(), anyhow::Error>(())
    })
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

pub fn feedback_report(db: &Path, format: ListFormat) -> anyhow::Result<()> {
    if !db.exists() {
        return Err(unusable(format!("no database at `{}`", db.display())));
    }
    let store = SqliteStore::open(db).map_err(|e| unusable(e.to_string()))?;
    let rows = store
        .feedback_report()
        .map_err(|e| unusable(e.to_string()))?;
    match format {
        ListFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        ListFormat::Text => {
            println!(
                "{:<44} {:>6} {:>9} {:>11} {:>9}  top override reason",
                "rule", "cards", "accepted", "overridden", "override%"
            );
            for r in rows {
                let answered = r.accepted + r.overridden;
                let pct = if answered == 0 {
                    "-".to_string()
                } else {
                    format!("{:.0}%", 100.0 * r.overridden as f64 / answered as f64)
                };
                let reason = r
                    .reasons
                    .first()
                    .map(|(s, n)| format!("{s} ({n})"))
                    .unwrap_or_default();
                println!(
                    "{:<44} {:>6} {:>9} {:>11} {:>9}  {reason}",
                    r.rule, r.cards, r.accepted, r.overridden, pct
                );
            }
        }
    }
    Ok(())
}
