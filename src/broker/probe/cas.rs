//! Probe of an Apereo CAS upstream: the login page answers for our service URL, ticket
//! validation answers a made-up ticket with a well-formed CAS failure (CAS 3.0, or 2.0 only),
//! and where single-logout requests will be accepted from.

use http::StatusCode;
use url::Url;

use super::{Check, UpstreamHttp, chain, upstream_url};
use crate::broker::cas_xml::{self, ServiceResponse};
use crate::config::UpstreamSettings;

/// A service ticket no CAS server issued.
const PROBE_TICKET: &str = "ST-0-sso-gateway-probe";

pub(super) async fn probe(u: &UpstreamSettings, http: &UpstreamHttp, issuer: &str) -> Vec<Check> {
    let Some(cas) = &u.cas else {
        return vec![Check::fail("configuration", "kind = \"cas\" without [upstreams.cas]")];
    };
    let base = cas.server.trim_end_matches('/');
    let service = format!("{}?attempt=sso-gateway-probe", upstream_url(issuer, &u.id, "callback"));
    let mut checks = Vec::new();
    let with_service = |path: &str, ticket: bool| -> Option<Url> {
        let mut url = Url::parse(&format!("{base}/{path}")).ok()?;
        url.query_pairs_mut().append_pair("service", &service);
        if ticket {
            url.query_pairs_mut().append_pair("ticket", PROBE_TICKET);
        }
        Some(url)
    };
    let Some(login) = with_service("login", false) else {
        return vec![Check::fail("configuration", format!("cas.server {base:?} is not a URL"))];
    };
    match get(http, &login).await {
        Ok((status, _)) => checks.push(classify_login(status, login.as_str())),
        Err(e) => {
            checks.push(Check::fail("login page", format!("{login}: {e}")));
            return checks;
        }
    }
    let mut validation = None;
    for path in ["p3/serviceValidate", "serviceValidate"] {
        let Some(url) = with_service(path, true) else { continue };
        match get(http, &url).await {
            Ok((StatusCode::NOT_FOUND, _)) if path == "p3/serviceValidate" => continue,
            Ok((status, body)) => validation = Some(classify_validation(path, status, &body)),
            Err(e) => validation = Some(Check::fail("ticket validation", format!("{url}: {e}"))),
        }
        break;
    }
    checks.push(validation.unwrap_or_else(|| {
        Check::fail(
            "ticket validation",
            format!("neither {base}/p3/serviceValidate nor {base}/serviceValidate exists"),
        )
    }));
    checks.push(single_logout_sources(cas).await);
    checks
}

async fn get(http: &UpstreamHttp, url: &Url) -> Result<(StatusCode, Vec<u8>), String> {
    let request = http::Request::get(url.as_str())
        .header(http::header::ACCEPT, "application/xml, text/xml, text/html")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let response = http.send(request).await.map_err(|e| chain(&e))?;
    let status = response.status();
    Ok((status, response.into_body()))
}

/// The login page must answer for our service URL.
pub(super) fn classify_login(status: StatusCode, url: &str) -> Check {
    const NAME: &str = "login page";
    match status {
        s if s.is_success() => Check::ok(NAME, format!("{url} answered")),
        s if s.is_redirection() => {
            Check::warn(NAME, format!("{url} redirects (HTTP {s}); a browser will follow"))
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Check::fail(
            NAME,
            format!(
                "HTTP {status}: the CAS server does not allow our service URL; register the service pattern"
            ),
        ),
        StatusCode::NOT_FOUND => {
            Check::fail(NAME, format!("HTTP 404 at {url}: is cas.server the CAS base URL?"))
        }
        s => Check::fail(NAME, format!("HTTP {s} at {url}")),
    }
}

/// A made-up ticket must be refused in CAS's own words.
pub(super) fn classify_validation(path: &str, status: StatusCode, body: &[u8]) -> Check {
    const NAME: &str = "ticket validation";
    if !status.is_success() {
        return Check::fail(NAME, format!("/{path} answered HTTP {status}"));
    }
    let version = if path.starts_with("p3/") { "CAS 3.0" } else { "CAS 2.0 only (no /p3/serviceValidate)" };
    match cas_xml::parse_service_response(body) {
        Ok(ServiceResponse::Failure { code, .. })
            if matches!(code.as_str(), "INVALID_TICKET" | "INVALID_TICKET_SPEC" | "INVALID_REQUEST") =>
        {
            let detail = format!("{version}: a made-up ticket is refused with {code}, as it should be");
            if path.starts_with("p3/") { Check::ok(NAME, detail) } else { Check::warn(NAME, detail) }
        }
        Ok(ServiceResponse::Failure { code, message }) => Check::fail(
            NAME,
            format!(
                "{version}: {code} {message}: the server does not accept our service URL; register the service pattern"
            ),
        ),
        Ok(ServiceResponse::Success { .. }) => {
            Check::fail(NAME, format!("{version}: the server ACCEPTED a made-up ticket: do not trust it"))
        }
        Err(e) => Check::fail(NAME, format!("/{path} did not answer a CAS response: {e}")),
    }
}

/// Where single-logout requests will be accepted from: `cas.logout_from`, or the addresses
/// the CAS host resolves to now.
async fn single_logout_sources(cas: &crate::config::CasSettings) -> Check {
    const NAME: &str = "single logout";
    if !cas.single_logout {
        return Check::ok(NAME, "off (cas.single_logout = false)");
    }
    if let Some(networks) = &cas.logout_from {
        let list: Vec<String> = networks.iter().map(ToString::to_string).collect();
        return Check::ok(NAME, format!("accepted from cas.logout_from: {}", list.join(", ")));
    }
    let Some((host, port)) = Url::parse(&cas.server)
        .ok()
        .and_then(|u| Some((u.host_str()?.to_string(), u.port_or_known_default()?)))
    else {
        return Check::fail(NAME, "cas.server has no host");
    };
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    match tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::net::lookup_host((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(addrs)) => {
            let mut ips: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
            ips.sort();
            ips.dedup();
            Check::ok(
                NAME,
                format!(
                    "accepted from {host}'s addresses now: {} (set cas.logout_from if the server sends from others)",
                    ips.join(", ")
                ),
            )
        }
        Ok(Err(e)) => Check::fail(NAME, format!("{host} does not resolve: {e}")),
        Err(_) => Check::fail(NAME, format!("resolving {host} took longer than 5 s")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::probe::Status;

    fn failure(code: &str) -> Vec<u8> {
        format!(
            "<cas:serviceResponse xmlns:cas=\"http://www.yale.edu/tp/cas\"><cas:authenticationFailure code=\"{code}\">x</cas:authenticationFailure></cas:serviceResponse>"
        )
        .into_bytes()
    }

    #[test]
    fn a_made_up_ticket_refused_as_invalid_proves_a_working_cas_3_server() {
        let c = classify_validation("p3/serviceValidate", StatusCode::OK, &failure("INVALID_TICKET"));
        assert_eq!(c.status, Status::Ok, "{c:?}");
        let cas2 = classify_validation("serviceValidate", StatusCode::OK, &failure("INVALID_TICKET"));
        assert_eq!(cas2.status, Status::Warn, "CAS 2.0 releases no attributes: {cas2:?}");
    }

    #[test]
    fn an_unregistered_service_a_success_or_not_cas_at_all_fail() {
        for body in [failure("UNAUTHORIZED_SERVICE"), failure("INVALID_SERVICE")] {
            let c = classify_validation("p3/serviceValidate", StatusCode::OK, &body);
            assert_eq!(c.status, Status::Fail);
            assert!(c.detail.contains("register the service pattern"), "{c:?}");
        }
        let success = b"<cas:serviceResponse xmlns:cas=\"http://www.yale.edu/tp/cas\"><cas:authenticationSuccess><cas:user>x</cas:user></cas:authenticationSuccess></cas:serviceResponse>";
        assert_eq!(classify_validation("p3/serviceValidate", StatusCode::OK, success).status, Status::Fail);
        assert_eq!(
            classify_validation("p3/serviceValidate", StatusCode::OK, b"<html>hi</html>").status,
            Status::Fail
        );
        assert_eq!(
            classify_validation("p3/serviceValidate", StatusCode::INTERNAL_SERVER_ERROR, b"").status,
            Status::Fail
        );
    }

    #[test]
    fn the_login_page_must_answer_for_our_service() {
        assert_eq!(classify_login(StatusCode::OK, "u").status, Status::Ok);
        assert_eq!(classify_login(StatusCode::FOUND, "u").status, Status::Warn);
        assert_eq!(classify_login(StatusCode::FORBIDDEN, "u").status, Status::Fail);
        assert_eq!(classify_login(StatusCode::NOT_FOUND, "u").status, Status::Fail);
    }
}
