//! The load's HTTP client: hyper's pooled client, with nothing between it and the request path.
//! reqwest (probe, `/metrics`, tokenize) wraps the same client in layers the load pays for on
//! every read: its body stream, its response future, its own timeout. Like reqwest here, it
//! follows no redirect (a 3xx is the `redirect` error class) and speaks plain HTTP/1.1.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// One pooled client shared by every worker of every run.
#[derive(Clone)]
pub struct LoadClient(Client<HttpConnector, Full<Bytes>>);

impl Default for LoadClient {
    fn default() -> Self {
        Self::new()
    }
}

impl LoadClient {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(usize::MAX)
            .build(connector);
        LoadClient(client)
    }

    /// POSTs a JSON `body` to `uri`, with `auth` as its `Authorization` if given.
    pub fn post_json(&self, uri: &hyper::Uri, auth: Option<&HeaderValue>, body: Bytes) -> ResponseFuture {
        let mut req = hyper::Request::new(Full::new(body));
        *req.method_mut() = hyper::Method::POST;
        *req.uri_mut() = uri.clone();
        let headers = req.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(auth) = auth {
            headers.insert(AUTHORIZATION, auth.clone());
        }
        self.0.request(req)
    }
}

/// A target URL as the load client takes it; why not, in words, when it cannot.
pub fn parse_uri(url: &str) -> Result<hyper::Uri, String> {
    url.parse::<hyper::Uri>().map_err(|e| format!("caplab cannot send to {url}: {e}"))
}
