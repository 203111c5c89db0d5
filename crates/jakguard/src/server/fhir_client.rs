//! Fetching what a prefetch did not bring from the EHR's FHIR server, with the bearer token
//! the EHR passed in `fhirAuthorization` (never logged, never stored). Search results are
//! followed through `link[next]`, on the same server only, up to a page limit (beyond it the
//! results are flagged as incomplete, never passed off as the whole).

use serde::Deserialize;

/// Pages of one search followed at most; beyond, the results are flagged as incomplete.
const MAX_PAGES: usize = 50;

#[derive(Deserialize)]
struct Links {
    link: Option<Vec<LinkEntry>>,
}

#[derive(Deserialize)]
struct LinkEntry {
    relation: String,
    url: String,
}

/// Fills a prefetch template's tokens. Only `{{context.patientId}}`-style first-level context
/// tokens and the user tokens are defined by the spec; anything else is left unfilled and the
/// fetch will fail loudly.
pub fn fill(template: &str, patient_id: &str, user_id: Option<&str>) -> String {
    let mut s = template.replace("{{context.patientId}}", patient_id);
    if let Some(u) = user_id {
        s = s.replace("{{context.userId}}", u);
        if let Some(id) = u.strip_prefix("Practitioner/") {
            s = s.replace("{{userPractitionerId}}", id);
        }
    }
    s
}

/// The pages of a search, and why they are not all of it when they are not.
pub struct Pages {
    pub pages: Vec<String>,
    pub incomplete: Option<String>,
}

/// GETs `base/query` (and following pages); returns each page's JSON text. A next page is
/// followed only on the same server (under `base`): the token is for it alone. Results
/// beyond `MAX_PAGES` pages, or behind a next page elsewhere, are not read, and `incomplete`
/// says so (the caller must tell its user, not pass the shorter list off as the whole).
pub async fn fetch(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    token: Option<&str>,
) -> Result<Pages, String> {
    let kind = kind_of(query);
    let mut url = join(base, query);
    let mut pages = vec![];
    loop {
        let text = get(client, &url, token, kind).await?;
        let next = serde_json::from_str::<Links>(&text)
            .ok()
            .and_then(|l| l.link)
            .and_then(|l| l.into_iter().find(|x| x.relation == "next"))
            .map(|x| x.url);
        pages.push(text);
        // A search stopped early (too many pages, or a next page elsewhere) says so in
        // `incomplete`: never a shorter list passed off as the whole.
        let incomplete = match next {
            Some(_) if pages.len() >= MAX_PAGES => Some(format!(
                "the FHIR server's answer to the {kind} search has more than {MAX_PAGES} pages; only the first {MAX_PAGES} were read"
            )),
            Some(n) if !under(&n, base) => Some(format!(
                "the FHIR server's next page of the {kind} search is not on that server; only {} page(s) were read",
                pages.len()
            )),
            Some(n) => {
                url = n;
                continue;
            }
            None => None,
        };
        return Ok(Pages { pages, incomplete });
    }
}

/// GETs one resource, `base/path`; returns its JSON text.
pub async fn read(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    token: Option<&str>,
) -> Result<String, String> {
    get(client, &join(base, path), token, kind_of(path)).await
}

/// `base/query`, with exactly one `/` between them.
fn join(base: &str, query: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        query.trim_start_matches('/')
    )
}

/// The resource type a query or path starts with, for messages.
fn kind_of(query: &str) -> &str {
    query.split(['?', '/']).next().unwrap_or("")
}

/// One GET of `url` with the EHR's token; the answer's text, or why there is none.
async fn get(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    kind: &str,
) -> Result<String, String> {
    let mut req = client.get(url).header("accept", "application/fhir+json");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("cannot reach the FHIR server: {}", e.without_url()))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!(
            "the FHIR server answered {status} for a {kind} query"
        ));
    }
    resp.text()
        .await
        .map_err(|e| format!("cannot read the FHIR server's answer: {}", e.without_url()))
}

/// Whether `url` is on the FHIR server at `base`: the same scheme, host and port, no user
/// information, and a path within the base path, compared after the URL parser has resolved
/// `..`, `%2e` and `\` (which the HTTP client would resolve too) — a plain text prefix would
/// let `base/../another-tenant` through.
fn under(url: &str, base: &str) -> bool {
    let (Ok(next), Ok(base)) = (reqwest::Url::parse(url), reqwest::Url::parse(base)) else {
        return false;
    };
    let root = base.path().trim_end_matches('/');
    next.scheme() == base.scheme()
        && next.host_str() == base.host_str()
        && next.port_or_known_default() == base.port_or_known_default()
        && next.username().is_empty()
        && next.password().is_none()
        // An encoded `/` or `\` is a path step to a server that decodes it.
        && !["%2f", "%5c"]
            .iter()
            .any(|e| next.path().to_ascii_lowercase().contains(e))
        && (next.path() == root
            || next
                .path()
                .strip_prefix(root)
                .is_some_and(|rest| rest.starts_with('/')))
}

#[cfg(test)]
mod tests {
    use super::under;

    #[test]
    fn a_next_page_is_followed_on_the_same_server_only() {
        let base = "https://ehr.example/fhir/";
        for ok in [
            "https://ehr.example/fhir/Observation?page=2",
            "https://ehr.example/fhir?_getpages=1",
            "https://ehr.example/fhir",
            "HTTPS://EHR.example:443/fhir/Observation",
        ] {
            assert!(under(ok, base), "{ok}");
        }
        for refused in [
            "https://evil.example/fhir/Observation?page=2",
            "https://ehr.example/fhirx/Observation",
            "https://ehr.example.evil/fhir/Observation",
            "http://ehr.example/fhir/Observation",
            "https://ehr.example:444/fhir/Observation",
            "/fhir/Observation",
            "https://ehr.example/fhir/../other-tenant/Observation",
            "https://ehr.example/fhir/%2e%2e/other-tenant/Observation",
            "https://ehr.example/fhir/..%2F..%2Fother",
            "https://ehr.example/fhir\\..\\other/Observation",
            "https://ehr.example/fhir@evil.example/fhir/Observation",
            "https://user:pw@ehr.example/fhir/Observation",
        ] {
            assert!(!under(refused, base), "{refused}");
        }
    }
}
