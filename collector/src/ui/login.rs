//! `/ui/login` and `/ui/logout`: a browser cannot send a bearer header from a link, so when
//! reader tokens are on, the login page takes a reader token once and keeps it in a cookie.
//!
//! Invariants: the cookie is `HttpOnly; SameSite=Strict; Path=/` (plus `Secure` when the HTTP
//! listener has TLS), so page scripts cannot read it and other sites cannot make the browser
//! send it; the token is checked with the same constant-time comparison as the header before
//! the cookie is set, and is never logged. The `next` target of a login is only ever a local
//! path (`/…`, never `//host` or a scheme), so the page cannot be used as an open redirect.

use axum::Extension;
use axum::Form;
use axum::extract::Query;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{enc, page};
use crate::auth::Auth;

/// The cookie that carries the reader token.
pub const COOKIE: &str = "dsreg_reader";
/// The login page.
pub const LOGIN_PATH: &str = "/ui/login";
/// The logout action.
pub const LOGOUT_PATH: &str = "/ui/logout";
/// How long the browser keeps the cookie (12 hours: a working day).
pub const COOKIE_MAX_AGE_SECS: u64 = 12 * 3600;

/// True for the paths that are web pages (answered with a login redirect, not a JSON 401).
pub fn is_page(path: &str) -> bool {
    path == "/" || path.starts_with("/ui/")
}

/// `next` when it is a local path, else `/`.
pub fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(|c| c.is_control());
    if local { next } else { "/" }
}

/// The reader token carried by the request's cookie, if any.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .and_then(|(_, value)| percent_decode(value))
        .filter(|t| !t.is_empty())
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The answer to an unauthenticated page request: a redirect to the login page that comes
/// back to `uri` afterwards.
pub fn login_redirect(uri: &Uri) -> Response {
    let back = uri.path_and_query().map_or("/", |p| p.as_str());
    Redirect::to(&format!("{LOGIN_PATH}?next={}", enc(safe_next(back)))).into_response()
}

/// The query of the login page.
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// The login form as posted.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

fn form(next: &str, refused: bool) -> Markup {
    page(
        "Sign in",
        html! {
            @if refused { div.box { p { "That token was not accepted." } } }
            p { "This collector needs a reader token. Paste one of the tokens of its reader token file; \
                 the browser keeps it in a cookie for this site only (12 hours)." }
            form method="post" action=(LOGIN_PATH) {
                input type="hidden" name="next" value=(next);
                input type="password" name="token" autocomplete="current-password" aria-label="reader token" size="48" autofocus;
                " "
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// `GET /ui/login`.
pub async fn login_page(Query(q): Query<LoginQuery>) -> Markup {
    form(safe_next(q.next.as_deref().unwrap_or("/")), false)
}

fn set_cookie(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let c =
        format!("{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}");
    HeaderValue::from_str(&c)
        .unwrap_or_else(|_| HeaderValue::from_static("dsreg_reader=; Max-Age=0"))
}

/// `POST /ui/login`: checks the token, sets the cookie, goes back to `next`.
pub async fn login(auth: Option<Extension<Auth>>, Form(f): Form<LoginForm>) -> Response {
    let next = safe_next(f.next.as_deref().unwrap_or("/")).to_string();
    let auth = auth.map(|Extension(a)| a).unwrap_or_default();
    let Some(tokens) = &auth.reader else {
        // Reader tokens are off: nothing to sign in to.
        return Redirect::to(&next).into_response();
    };
    let token = f.token.trim();
    if token.is_empty() || !tokens.accepts(token) {
        tracing::debug!("ui login refused: bad reader token");
        return (StatusCode::UNAUTHORIZED, form(&next, true)).into_response();
    }
    let mut resp = Redirect::to(&next).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(&enc(token), COOKIE_MAX_AGE_SECS, auth.secure_cookie),
    );
    resp
}

/// `POST /ui/logout`: forgets the cookie.
pub async fn logout(auth: Option<Extension<Auth>>) -> Response {
    let secure = auth.is_some_and(|Extension(a)| a.secure_cookie);
    let mut resp = Redirect::to(LOGIN_PATH).into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, set_cookie("", 0, secure));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_only_ever_local() {
        assert_eq!(safe_next("/ui/devices?cause=x"), "/ui/devices?cause=x");
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "",
            "ui",
            "/\nx",
        ] {
            assert_eq!(safe_next(bad), "/", "{bad:?}");
        }
    }

    #[test]
    fn cookie_round_trip() {
        let token = "tok; with=odd chars%";
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=b; {COOKIE}={}; c=d", enc(token))).unwrap(),
        );
        assert_eq!(cookie_token(&h).as_deref(), Some(token));
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("dsreg_reader=%zz"));
        assert_eq!(cookie_token(&h), None);
        let c = set_cookie("v", 60, true);
        let c = c.to_str().unwrap();
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
    }
}
