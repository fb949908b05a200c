//! The broker's browser-facing URLs, written in one place: the chooser (`/login`), the start of
//! a login at one upstream (`/upstream/{id}/login`, also the action of the gateway's own
//! password form), and where an upstream sends the browser back after its logout
//! (`/upstream/{id}/logged-out`). Other parts ask for these links; none writes them itself.
//!
//! The parked request's id is percent-encoded (a real id is base64url and comes out as it
//! went in; anything else a browser sent cannot break out of the query).

use std::fmt;

use url::form_urlencoded;

use crate::web::Lang;

/// A link into the login of parked authorization request `request`: the chooser, or the
/// start at one upstream, optionally in a given language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLink<'a> {
    upstream: Option<&'a str>,
    request: &'a str,
    lang: Option<Lang>,
}

impl<'a> LoginLink<'a> {
    /// The chooser: which system holds your account?
    pub fn chooser(request: &'a str) -> Self {
        LoginLink { upstream: None, request, lang: None }
    }

    /// The start of a login at upstream `upstream`.
    pub fn upstream(upstream: &'a str, request: &'a str) -> Self {
        LoginLink { upstream: Some(upstream), request, lang: None }
    }

    /// The chooser when `upstream` is None, else the start at that upstream.
    pub fn to(upstream: Option<&'a str>, request: &'a str) -> Self {
        LoginLink { upstream, request, lang: None }
    }

    /// The same page in `lang`.
    pub fn in_lang(self, lang: Lang) -> Self {
        LoginLink { lang: Some(lang), ..self }
    }
}

impl fmt::Display for LoginLink<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.upstream {
            Some(id) => f.write_str(&password_form_action(id))?,
            None => f.write_str("/login")?,
        }
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("request", self.request);
        if let Some(lang) = self.lang {
            query.append_pair("lang", lang.code());
        }
        write!(f, "?{}", query.finish())
    }
}

impl From<LoginLink<'_>> for String {
    fn from(link: LoginLink<'_>) -> String {
        link.to_string()
    }
}

/// Where the gateway's own password form of upstream `upstream` is posted (the same path
/// shows it at GET).
pub fn password_form_action(upstream: &str) -> String {
    format!("/upstream/{upstream}/login")
}

/// Where upstream `upstream` sends the browser back from its login (its connector's
/// `redirect_uri` or CAS service URL), and POSTs its single-logout requests.
pub fn callback(issuer: &str, upstream: &str) -> String {
    format!("{issuer}/upstream/{upstream}/callback")
}

/// Where upstream `upstream` sends the browser back after its own logout.
pub fn logged_out(issuer: &str, upstream: &str) -> String {
    format!("{issuer}/upstream/{upstream}/logged-out")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chooser_and_upstream_links_keep_their_public_shape() {
        let id = "q5xH3-_0aZ";
        assert_eq!(LoginLink::chooser(id).to_string(), "/login?request=q5xH3-_0aZ");
        assert_eq!(LoginLink::chooser(id).in_lang(Lang::En).to_string(), "/login?request=q5xH3-_0aZ&lang=en");
        assert_eq!(LoginLink::upstream("hcm", id).to_string(), "/upstream/hcm/login?request=q5xH3-_0aZ");
        assert_eq!(
            LoginLink::upstream("hcm", id).in_lang(Lang::Vi).to_string(),
            "/upstream/hcm/login?request=q5xH3-_0aZ&lang=vi"
        );
        assert_eq!(LoginLink::to(None, id), LoginLink::chooser(id));
        assert_eq!(LoginLink::to(Some("cas"), id), LoginLink::upstream("cas", id));
        assert_eq!(password_form_action("ldap"), "/upstream/ldap/login");
        assert_eq!(callback("https://sso.example", "cas"), "https://sso.example/upstream/cas/callback");
        assert_eq!(logged_out("https://sso.example", "hcm"), "https://sso.example/upstream/hcm/logged-out");
    }

    #[test]
    fn a_parked_id_a_browser_made_up_cannot_add_parameters() {
        let link = LoginLink::chooser("x&lang=en#frag").to_string();
        assert_eq!(link, "/login?request=x%26lang%3Den%23frag");
    }

    #[test]
    fn a_random_handle_comes_out_as_it_went_in() {
        let id = crate::state::random_handle();
        assert_eq!(LoginLink::chooser(&id).to_string(), format!("/login?request={id}"));
    }
}
