//! The load generator's HTTP client: one keep-alive HTTP/1.1 connection per origin per
//! worker (hyper's connection API, no pool logic in the hot path), a cookie jar per origin,
//! and the few helpers a scripted browser or RP needs.

use std::net::SocketAddr;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use url::Url;

/// A response with its body read in full.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    /// The `Location` header resolved against `base`.
    pub fn location(&self, base: &Url) -> Result<Url> {
        let raw = self
            .headers
            .get(header::LOCATION)
            .ok_or_else(|| anyhow!("HTTP {} without Location", self.status))?
            .to_str()
            .context("non-ASCII Location")?;
        base.join(raw).context("bad Location")
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or("")
    }
}

/// One keep-alive connection to one address; reconnects after an error or a close.
pub struct Conn {
    addr: SocketAddr,
    host: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Result<Self> {
        let host = HeaderValue::from_str(&addr.to_string())?;
        Ok(Conn { addr, host, sender: None })
    }

    async fn sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>> {
        let usable = self.sender.as_ref().is_some_and(|s| !s.is_closed());
        if !usable {
            let stream =
                TcpStream::connect(self.addr).await.with_context(|| format!("connect {}", self.addr))?;
            stream.set_nodelay(true)?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        self.sender.as_mut().ok_or_else(|| anyhow!("no connection"))
    }

    /// Sends one request (the `Host` header is added) and reads the whole response.
    pub async fn send(&mut self, mut req: Request<Full<Bytes>>) -> Result<Resp> {
        req.headers_mut().insert(header::HOST, self.host.clone());
        let result = async {
            let sender = self.sender().await?;
            sender.ready().await?;
            let res = sender.send_request(req).await?;
            let (parts, body) = res.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, anyhow::Error>(Resp { status: parts.status, headers: parts.headers, body })
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }
}

/// Builds a request from parts; `form` makes it a urlencoded POST.
pub fn request(
    method: Method,
    path_and_query: &str,
    headers: &[(header::HeaderName, HeaderValue)],
    form: Option<Bytes>,
) -> Result<Request<Full<Bytes>>> {
    let mut builder = Request::builder().method(method).uri(path_and_query);
    for (k, v) in headers {
        builder = builder.header(k, v);
    }
    let body = match form {
        Some(body) => {
            builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            Full::new(body)
        }
        None => Full::new(Bytes::new()),
    };
    Ok(builder.body(body)?)
}

/// A scripted browser: connections and cookies per origin (address).
#[derive(Default)]
pub struct Agent {
    conns: Vec<Conn>,
    /// (origin, name, value)
    cookies: Vec<(SocketAddr, String, String)>,
    /// `X-Forwarded-For` sent with every request: the client address this browser stands for
    /// behind the trusted proxy (None: the load generator's own loopback address).
    pub forwarded_for: Option<HeaderValue>,
}

pub fn addr_of(url: &Url) -> Result<SocketAddr> {
    let host = url.host_str().ok_or_else(|| anyhow!("URL without host: {url}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().ok_or_else(|| anyhow!("URL without port: {url}"))?;
    let ip: std::net::IpAddr = host.parse().with_context(|| format!("not an IP address: {host}"))?;
    if !ip.is_loopback() {
        bail!("refusing to send load to a non-loopback address {ip}");
    }
    Ok(SocketAddr::new(ip, port))
}

impl Agent {
    pub fn conn(&mut self, addr: SocketAddr) -> Result<&mut Conn> {
        let idx = match self.conns.iter().position(|c| c.addr == addr) {
            Some(i) => i,
            None => {
                self.conns.push(Conn::new(addr)?);
                self.conns.len() - 1
            }
        };
        Ok(&mut self.conns[idx])
    }

    /// Forgets every cookie (a new browser profile, same TCP connections).
    pub fn clear_cookies(&mut self) {
        self.cookies.clear();
    }

    /// Sends a request to `url` with this browser's cookies for its origin and keeps the
    /// cookies the response sets.
    pub async fn send(
        &mut self,
        method: Method,
        url: &Url,
        extra: &[(header::HeaderName, HeaderValue)],
        form: Option<Bytes>,
    ) -> Result<Resp> {
        let addr = addr_of(url)?;
        let mut headers = extra.to_vec();
        if let Some(from) = &self.forwarded_for {
            headers.push((header::HeaderName::from_static("x-forwarded-for"), from.clone()));
        }
        let jar: Vec<String> =
            self.cookies.iter().filter(|(a, _, _)| *a == addr).map(|(_, n, v)| format!("{n}={v}")).collect();
        if !jar.is_empty() {
            headers.push((header::COOKIE, HeaderValue::from_str(&jar.join("; "))?));
        }
        let path = &url[url::Position::BeforePath..];
        let req = request(method, path, &headers, form)?;
        let resp = self.conn(addr)?.send(req).await?;
        for value in resp.headers.get_all(header::SET_COOKIE) {
            if let Some((name, value, removed)) = value.to_str().ok().and_then(parse_set_cookie) {
                self.cookies.retain(|(a, n, _)| !(*a == addr && *n == name));
                if !removed {
                    self.cookies.push((addr, name, value));
                }
            }
        }
        Ok(resp)
    }

    pub async fn get(&mut self, url: &Url) -> Result<Resp> {
        self.send(Method::GET, url, &[], None).await
    }
}

/// `name=value; attrs…` → (name, value, is-a-removal).
fn parse_set_cookie(line: &str) -> Option<(String, String, bool)> {
    let mut parts = line.split(';');
    let (name, value) = parts.next()?.trim().split_once('=')?;
    let removed = value.is_empty()
        || parts.any(|a| a.trim().eq_ignore_ascii_case("max-age=0") || a.trim() == "Max-Age=0");
    Some((name.trim().to_string(), value.trim().to_string(), removed))
}

/// The value of `name` in a URL's query.
pub fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// The `value` of the first `<input … name="NAME" value="…">` in an HTML page.
pub fn input_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\"");
    let at = html.find(&marker)?;
    let rest = &html[at..];
    let v = rest.find("value=\"")? + "value=\"".len();
    let end = rest[v..].find('"')?;
    Some(html_unescape(&rest[v..v + end]))
}

/// Every `href="…"` of an HTML page that starts with `prefix`, unescaped.
pub fn hrefs_with_prefix(html: &str, prefix: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(html_unescape)
        .filter(|h| h.starts_with(prefix))
        .collect()
}

fn html_unescape(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&#x2f;", "/")
        .replace("&#x2F;", "/")
        .replace("&#47;", "/")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_cookie_lines_are_parsed_and_removals_recognised() {
        assert_eq!(
            parse_set_cookie("sso_session=abc; Path=/; HttpOnly; Max-Age=43200"),
            Some(("sso_session".into(), "abc".into(), false))
        );
        assert_eq!(parse_set_cookie("sso_session=; Max-Age=0").map(|c| c.2), Some(true));
    }

    #[test]
    fn form_fields_and_links_are_found_in_html() {
        let html = r#"<input type="hidden" name="request_id" value="a&amp;b"><a href="/upstream/hcm/login?request=x&amp;lang=vi">"#;
        assert_eq!(input_value(html, "request_id").as_deref(), Some("a&b"));
        assert_eq!(hrefs_with_prefix(html, "/upstream/"), vec!["/upstream/hcm/login?request=x&lang=vi"]);
    }

    #[test]
    fn only_loopback_targets_are_accepted() {
        assert!(addr_of(&Url::parse("http://127.0.0.1:8080/x").unwrap()).is_ok());
        assert!(addr_of(&Url::parse("http://10.0.0.1:8080/x").unwrap()).is_err());
        assert!(addr_of(&Url::parse("http://example.com/x").unwrap()).is_err());
    }
}
