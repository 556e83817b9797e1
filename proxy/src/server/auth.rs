//! Who may do what, checked before any handler runs. The operator (a random token made at start,
//! or `--token` / `CAPLAB_TOKEN`) may do everything; a viewer (a second, separate token the
//! operator can rotate) may watch runs and download results; anyone else gets 401. As Jupyter
//! does it: the first visit with `?token=` swaps it for an HttpOnly, SameSite=Strict cookie and
//! drops it from the address bar; scripts send `Authorization: Bearer TOKEN`.
//!
//! Also refused here, whoever asks: a `Host` that is not this server's (DNS rebinding), a
//! cross-site `Origin` on a state-changing request or a WebSocket, and a POST whose body is not
//! declared `application/json` (a plain HTML form on any web page cannot start a run).

use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::AppState;

const COOKIE: &str = "caplab_token";

/// What a request may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Operator,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }
}

/// The tokens and the names this server answers to.
pub struct Access {
    /// None: `--no-auth`, everyone is the operator.
    operator: Option<String>,
    viewer: RwLock<String>,
    /// Bumped at each rotation: a viewer's WebSocket watches it and closes when it changes.
    rotations: tokio::sync::watch::Sender<u64>,
    /// `host[:port]` values (lower case) a request's `Host` may carry; empty = any.
    hosts: Vec<String>,
}

/// A fresh random token: 32 hex digits (128 bits).
pub fn new_token() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Access {
    /// `operator`: None for `--no-auth`. `hosts`: the names this server may be reached by
    /// (empty: any, as when it listens on all interfaces behind a proxy).
    pub fn new(operator: Option<String>, hosts: Vec<String>) -> Access {
        Access { operator, viewer: RwLock::new(new_token()), rotations: tokio::sync::watch::Sender::new(0), hosts: hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect() }
    }

    pub fn open(&self) -> bool {
        self.operator.is_none()
    }

    pub fn operator_token(&self) -> Option<&str> {
        self.operator.as_deref()
    }

    pub fn viewer_token(&self) -> String {
        self.viewer.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A new viewer token; links with the old one stop working at once, and the WebSockets
    /// opened with it are closed (they watch `rotations`).
    pub fn rotate_viewer(&self) -> String {
        let token = new_token();
        *self.viewer.write().unwrap_or_else(|p| p.into_inner()) = token.clone();
        self.rotations.send_modify(|n| *n += 1);
        token
    }

    /// Changes at every rotation of the viewer link.
    pub fn rotations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.rotations.subscribe()
    }

    /// The role a token grants, compared in constant time.
    pub fn role_of_token(&self, token: &str) -> Option<Role> {
        let Some(operator) = &self.operator else { return Some(Role::Operator) };
        if same(token.as_bytes(), operator.as_bytes()) {
            Some(Role::Operator)
        } else if same(token.as_bytes(), self.viewer_token().as_bytes()) {
            Some(Role::Viewer)
        } else {
            None
        }
    }

    /// The role of a request: its bearer token, else its cookie.
    pub fn role_of(&self, headers: &HeaderMap) -> Option<Role> {
        if self.open() {
            return Some(Role::Operator);
        }
        let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token);
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix(COOKIE).and_then(|rest| rest.strip_prefix('=')).map(str::to_string));
        bearer.map(str::to_string).or(cookie).and_then(|t| self.role_of_token(t.trim()))
    }

    fn host_allowed(&self, headers: &HeaderMap) -> bool {
        if self.hosts.is_empty() {
            return true;
        }
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
        self.hosts.contains(&host)
    }
}

/// The token of an `Authorization: Bearer TOKEN` header; the scheme's name is case-insensitive
/// (RFC 9110 §11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// Equal bytes, in time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a request changes state (anything but GET/HEAD, and the WebSocket upgrade is
/// checked for its origin like one).
fn is_state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// An `Origin` that is present and names another host than `Host` is cross-site.
fn cross_site(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return false };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest).trim_end_matches('/');
    !origin_host.eq_ignore_ascii_case(host)
}

fn refuse(status: StatusCode, api: bool, message: &str) -> Response {
    if api {
        return (status, Json(json!({ "error": message, "fields": [] }))).into_response();
    }
    let page = format!(
        "<!doctype html><meta charset=utf-8><title>caplab: {}</title>\
         <body style=\"font:15px system-ui;max-width:640px;margin:60px auto;line-height:1.5\">\
         <h1>caplab</h1><p>{message}</p>\
         <p>Open the link <code>caplab serve</code> printed when it started (it ends with <code>?token=…</code>), \
         or ask the person running caplab for a read-only viewer link. Scripts send \
         <code>Authorization: Bearer TOKEN</code>.</p></body>",
        status.as_u16()
    );
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

/// The gate every request passes before its handler.
pub async fn guard(State(st): State<Arc<AppState>>, req: Request<Body>, next: Next) -> Response {
    let access = &st.access;
    let api = req.uri().path().starts_with("/api/");
    if !access.host_allowed(req.headers()) {
        return refuse(StatusCode::FORBIDDEN, api, "this server is not reached by that name (Host header); start caplab with --allow-host NAME to allow it");
    }
    let ws = req.headers().get(header::UPGRADE).is_some();
    if (is_state_changing(req.method()) || ws) && cross_site(req.headers()) {
        return refuse(StatusCode::FORBIDDEN, api, "cross-site request refused (its Origin is not this server)");
    }
    // The first visit with ?token=: swap it for a cookie and drop it from the address bar.
    if let Some(token) = query_token(req.uri().query()) {
        if !api && req.method() == Method::GET {
            return match access.role_of_token(&token) {
                Some(_) => {
                    let secure = req.headers().get("x-forwarded-proto").is_some_and(|p| p == "https");
                    let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/{}", if secure { "; Secure" } else { "" });
                    let mut resp = StatusCode::SEE_OTHER.into_response();
                    resp.headers_mut().insert(header::LOCATION, header::HeaderValue::from_static("/"));
                    if let Ok(v) = header::HeaderValue::from_str(&cookie) {
                        resp.headers_mut().insert(header::SET_COOKIE, v);
                    }
                    resp
                }
                None => refuse(StatusCode::UNAUTHORIZED, false, "that link's token is not valid (it may have been rotated)"),
            };
        }
    }
    let Some(role) = access.role_of(req.headers()) else {
        return refuse(StatusCode::UNAUTHORIZED, api, "this caplab needs its access token");
    };
    if role == Role::Viewer && is_state_changing(req.method()) {
        return refuse(StatusCode::FORBIDDEN, api, "a viewer link can watch and download, not start, stop or change anything");
    }
    if req.method() == Method::POST {
        let json = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
            v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
        if !json {
            return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, api, "send the body as JSON with Content-Type: application/json");
        }
    }
    if role == Role::Viewer {
        if let Err(refusal) = viewer_may_see(&st, req.uri()) {
            return refusal;
        }
    }
    let mut req = req;
    req.extensions_mut().insert(role);
    next.run(req).await
}

/// A viewer reads only the runs the operator lets them see (`Registry::visible_to_viewers`):
/// any other run is "not found", and the routes that read several runs must name them.
fn viewer_may_see(st: &AppState, uri: &axum::http::Uri) -> Result<(), Response> {
    let not_found = |id: &str| Err(refuse(StatusCode::NOT_FOUND, true, &format!("no run with id {id:?}")));
    let path = uri.path();
    if path == "/api/target" {
        return Err(refuse(StatusCode::FORBIDDEN, true, "what a target is and where it listens is the operator's to see"));
    }
    if let Some(id) = path.strip_prefix("/api/runs/").map(|rest| rest.split('/').next().unwrap_or_default()) {
        return if st.lab.registry.visible_to_viewers(id) { Ok(()) } else { not_found(id) };
    }
    if path == "/api/report" || path.starts_with("/api/compare") {
        let runs = url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).find(|(k, _)| k == "runs").map(|(_, v)| v.into_owned());
        let Some(runs) = runs.filter(|r| !r.trim().is_empty()) else {
            return Err(refuse(StatusCode::BAD_REQUEST, true, "a viewer names the runs to read: ?runs=ID,ID"));
        };
        for id in runs.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if !st.lab.registry.visible_to_viewers(id) {
                return not_found(id);
            }
        }
    }
    Ok(())
}

fn query_token(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes()).find(|(k, _)| k == "token").map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn tokens_grant_roles_and_nothing_else_does() {
        let a = Access::new(Some("op".into()), vec![]);
        let viewer = a.viewer_token();
        assert_eq!(a.role_of(&headers(&[(header::AUTHORIZATION, "Bearer op")])), Some(Role::Operator));
        assert_eq!(a.role_of(&headers(&[(header::COOKIE, &format!("x=1; caplab_token={viewer}"))])), Some(Role::Viewer));
        assert_eq!(a.role_of(&headers(&[(header::AUTHORIZATION, "Bearer wrong")])), None);
        assert_eq!(a.role_of(&headers(&[(header::AUTHORIZATION, "Bearer o")])), None, "a prefix is not the token");
        assert_eq!(a.role_of(&headers(&[(header::AUTHORIZATION, "bearer op")])), Some(Role::Operator), "the scheme is case-insensitive");
        assert_eq!(a.role_of(&headers(&[(header::AUTHORIZATION, "Basic op")])), None);
        assert_eq!(a.role_of(&HeaderMap::new()), None);
        let rotations = a.rotations();
        let rotated = a.rotate_viewer();
        assert!(rotations.has_changed().unwrap(), "open viewer sockets are told");
        assert_ne!(rotated, viewer);
        assert_eq!(a.role_of_token(&viewer), None, "the old viewer link stops working");
        assert_eq!(a.role_of_token(&rotated), Some(Role::Viewer));
        assert_eq!(Access::new(None, vec![]).role_of(&HeaderMap::new()), Some(Role::Operator), "--no-auth");
    }

    #[test]
    fn cross_site_origins_and_foreign_hosts() {
        assert!(!cross_site(&headers(&[(header::HOST, "127.0.0.1:8080")])), "no Origin: not a browser's cross-site request");
        assert!(!cross_site(&headers(&[(header::HOST, "127.0.0.1:8080"), (header::ORIGIN, "http://127.0.0.1:8080")])));
        assert!(cross_site(&headers(&[(header::HOST, "127.0.0.1:8080"), (header::ORIGIN, "https://evil.example")])));
        assert!(cross_site(&headers(&[(header::HOST, "127.0.0.1:8080"), (header::ORIGIN, "null")])));
        let a = Access::new(Some("t".into()), vec!["127.0.0.1:8080".into(), "localhost:8080".into()]);
        assert!(a.host_allowed(&headers(&[(header::HOST, "LOCALHOST:8080")])));
        assert!(!a.host_allowed(&headers(&[(header::HOST, "rebind.evil.example:8080")])));
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"abc", b"abcd"));
        assert_eq!(new_token().len(), 32);
    }
}
