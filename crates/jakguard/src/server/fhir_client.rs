//! Fetching what a prefetch did not bring from the EHR's FHIR server, with the bearer token
//! the EHR passed in `fhirAuthorization` (never logged, never stored). Search results are
//! followed through `link[next]` up to a page limit.

use serde::Deserialize;

const MAX_PAGES: usize = 20;

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

/// GETs `base/query` (and following pages); returns each page's JSON text.
pub async fn fetch(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    token: Option<&str>,
) -> Result<Vec<String>, String> {
    let mut url = format!(
        "{}/{}",
        base.trim_end_matches('/'),
        query.trim_start_matches('/')
    );
    let mut pages = vec![];
    for _ in 0..MAX_PAGES {
        let mut req = client.get(&url).header("accept", "application/fhir+json");
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
                "the FHIR server answered {status} for a {} query",
                query.split(['?', '/']).next().unwrap_or("")
            ));
        }
        let text = resp
            .text()
            .await
            .map_err(|e| format!("cannot read the FHIR server's answer: {}", e.without_url()))?;
        let next = serde_json::from_str::<Links>(&text)
            .ok()
            .and_then(|l| l.link)
            .and_then(|l| l.into_iter().find(|x| x.relation == "next"))
            .map(|x| x.url);
        pages.push(text);
        match next {
            Some(n) => url = n,
            None => return Ok(pages),
        }
    }
    Ok(pages)
}
