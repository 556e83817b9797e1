//! Safe to open on a public URL: every route needs a token, a viewer can only watch, and
//! requests a browser would send from another site (or by another name) are refused.

use std::time::Duration;

use caplab::server::API_ROUTES;
use caplab_tests::{client, start_run, wait_for_end, Caplab, TEST_TOKEN};
use serde_json::json;

/// A concrete URL for a route pattern (`{id}` and `{*rest}` filled in).
fn concrete(path: &str) -> String {
    path.replace("{id}", "20261129-000000-0000").replace("{*rest}", "anything")
}

#[tokio::test]
async fn every_route_refuses_a_missing_or_wrong_token() {
    let caplab = Caplab::start(&[]).await.unwrap();
    let anonymous = reqwest::Client::new();
    let mut wrong_headers = reqwest::header::HeaderMap::new();
    wrong_headers.insert(reqwest::header::AUTHORIZATION, "Bearer not-the-token".parse().unwrap());
    let wrong = reqwest::Client::builder().default_headers(wrong_headers).build().unwrap();
    let mut checked = 0;
    for (path, methods) in API_ROUTES {
        for method in *methods {
            let url = format!("{}{}", caplab.url, concrete(path));
            for (who, c) in [("no token", &anonymous), ("a wrong token", &wrong)] {
                let req = match *method {
                    "GET" => c.get(&url),
                    "POST" => c.post(&url).json(&json!({"workload": "chat"})),
                    "DELETE" => c.delete(&url),
                    other => panic!("a method the test does not know: {other}"),
                };
                let r = req.send().await.unwrap();
                assert_eq!(r.status(), 401, "{method} {url} with {who}");
                let body: serde_json::Value = r.json().await.unwrap();
                assert!(body["error"].as_str().unwrap().contains("token"), "{body}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "{checked}");
    // The page itself says how to get in.
    let page = anonymous.get(&caplab.url).send().await.unwrap();
    assert_eq!(page.status(), 401);
    assert!(page.text().await.unwrap().contains("?token="));
    // A run's WebSocket too.
    let ws = tokio_tungstenite::connect_async(format!("{}/api/runs/x/ws", caplab.url.replacen("http", "ws", 1))).await;
    assert!(ws.is_err(), "the WebSocket needs the token");
}

#[tokio::test]
async fn the_link_token_becomes_an_httponly_cookie_and_leaves_the_address_bar() {
    let caplab = Caplab::start(&[]).await.unwrap();
    let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = c.get(format!("{}/?token={TEST_TOKEN}", caplab.url)).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with(&format!("caplab_token={TEST_TOKEN};")) && cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let page = c.get(&caplab.url).header("cookie", format!("caplab_token={TEST_TOKEN}")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let bad = c.get(format!("{}/?token=nope", caplab.url)).send().await.unwrap();
    assert_eq!(bad.status(), 401);
}

#[tokio::test]
async fn a_viewer_watches_and_downloads_but_cannot_start_or_stop() {
    let caplab = Caplab::start(&["--sim-itl-ms", "20"]).await.unwrap();
    let c = client();
    let me: serde_json::Value = c.get(caplab.api("whoami")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["role"], "operator");
    let link = me["viewer_link"].as_str().unwrap().to_string();
    let viewer_token = link.strip_prefix("/?token=").unwrap().to_string();
    assert_ne!(viewer_token, TEST_TOKEN);
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(reqwest::header::AUTHORIZATION, format!("Bearer {viewer_token}").parse().unwrap());
    let viewer = reqwest::Client::builder().default_headers(h).build().unwrap();

    let id = start_run(&c, &caplab, json!({"workload": "chat", "concurrency": [2], "max_new_tokens": [64], "requests": 8})).await.unwrap();
    let me: serde_json::Value = viewer.get(caplab.api("whoami")).send().await.unwrap().json().await.unwrap();
    assert_eq!((me["role"].as_str(), me["viewer_link"].is_null()), (Some("viewer"), true), "a viewer is not handed the link");
    // It watches live…
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
        "{}/api/runs/{id}/ws",
        caplab.url.replacen("http", "ws", 1)
    ))
    .unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {viewer_token}").parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_ok(), "a viewer's WebSocket is accepted");
    assert_eq!(viewer.get(caplab.api(&format!("runs/{id}"))).send().await.unwrap().status(), 200);
    // …but cannot stop it, start another, or rotate the link, whatever the page does.
    let stop = viewer.post(caplab.api(&format!("runs/{id}/stop"))).json(&json!({})).send().await.unwrap();
    assert_eq!(stop.status(), 403);
    let start = viewer.post(caplab.api("runs")).json(&json!({"workload": "chat"})).send().await.unwrap();
    assert_eq!(start.status(), 403);
    assert_eq!(viewer.post(caplab.api("viewer-link/rotate")).json(&json!({})).send().await.unwrap().status(), 403);
    assert_eq!(viewer.delete(caplab.api(&format!("runs/{id}"))).send().await.unwrap().status(), 403);
    assert_eq!(viewer.post(caplab.api(&format!("runs/{id}/rename"))).json(&json!({"name": "mine"})).send().await.unwrap().status(), 403);
    let import = json!({"gpu": "x", "workload": "chat", "files": [{"name": "a.json", "text": "{}"}]});
    assert_eq!(viewer.post(caplab.api("import")).json(&import).send().await.unwrap().status(), 403);
    let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(view.cells[0].requests_ok, 8, "the viewer's stop changed nothing");
    assert_eq!(viewer.get(caplab.api(&format!("runs/{id}/requests.csv"))).send().await.unwrap().status(), 200);
    // Reading stays open to a viewer: the archive and the comparison.
    assert_eq!(viewer.get(caplab.api(&format!("runs/{id}/archive.tar"))).send().await.unwrap().status(), 200);
    assert_eq!(viewer.get(caplab.api(&format!("compare?runs={id}"))).send().await.unwrap().status(), 200);
    // The operator rotates the link: the old one stops working at once.
    let rotated: serde_json::Value = c.post(caplab.api("viewer-link/rotate")).json(&json!({})).send().await.unwrap().json().await.unwrap();
    assert_ne!(rotated["viewer_link"].as_str().unwrap(), link);
    assert_eq!(viewer.get(caplab.api("runs")).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn cross_site_requests_and_foreign_host_names_are_refused() {
    let caplab = Caplab::start(&[]).await.unwrap();
    let c = client();
    let spec = json!({"workload": "chat", "concurrency": [1], "max_new_tokens": [4], "requests": 1});
    // A plain HTML form on any page posts text/plain (or a form encoding): refused, even with the cookie.
    let form = c.post(caplab.api("runs")).header("content-type", "text/plain").body(spec.to_string()).send().await.unwrap();
    assert_eq!(form.status(), 415);
    let bare = c.post(caplab.api("runs")).body(spec.to_string()).send().await.unwrap();
    assert_eq!(bare.status(), 415, "no content type at all");
    // A script on another site: its Origin is not this server.
    let other = c.post(caplab.api("runs")).header("origin", "https://evil.example").json(&spec).send().await.unwrap();
    assert_eq!(other.status(), 403);
    // DNS rebinding: this server, reached by another name.
    let port = caplab.url.rsplit(':').next().unwrap();
    let rebound = c.get(caplab.api("runs")).header("host", format!("rebind.evil.example:{port}")).send().await.unwrap();
    assert_eq!(rebound.status(), 403);
    // A body far larger than any experiment is refused before it is read whole.
    let huge = format!("{{\"workload\":\"chat\",\"name\":\"{}\"}}", "x".repeat(1 << 20));
    // (Its own client: the server closes that connection without reading the body, and a pooled
    // connection closed so would fail the next request of a shared pool, a client-side race.)
    let r = caplab_tests::client().post(caplab.api("runs")).header("content-type", "application/json").body(huge).send().await.unwrap();
    assert_eq!(r.status(), 413);
    // 70 KB: past an experiment's 64 KB, refused there; within an import's 16 MiB, read there.
    let over = format!("{{\"workload\":\"chat\",\"name\":\"{}\"}}", "x".repeat(70 << 10));
    let r = caplab_tests::client().post(caplab.api("runs")).header("content-type", "application/json").body(over).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let big_import = json!({"workload": "chat", "files": [{"name": "big.json", "text": format!("{{\"pad\": \"{}\"}}", "x".repeat(70 << 10))}]});
    let r = caplab_tests::client().post(caplab.api("import")).json(&big_import).send().await.unwrap();
    assert_eq!(r.status(), 422, "read whole, then refused for what it holds (not a result), not for its size");
    // The same requests done right pass, and nothing was started before.
    let runs: Vec<serde_json::Value> = c.get(caplab.api("runs")).send().await.unwrap().json().await.unwrap();
    assert!(runs.is_empty(), "{runs:?}");
    let same_site = c.post(caplab.api("runs")).header("origin", caplab.url.clone()).json(&spec).send().await.unwrap();
    assert_eq!(same_site.status(), 201);
}

#[tokio::test]
async fn listening_beyond_loopback_needs_a_token_or_an_explicit_no_auth() {
    let out = tokio::process::Command::new(caplab_tests::caplab_bin())
        .args(["serve", "--listen", "0.0.0.0:0", "--token", " "])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token / CAPLAB_TOKEN is empty"));
    // --no-auth is allowed, with a warning.
    let caplab = Caplab::start(&["--no-auth"]).await.unwrap();
    assert!(caplab.token.is_none());
    assert_eq!(reqwest::Client::new().get(caplab.api("runs")).send().await.unwrap().status(), 200);
}

/// caplab is no request forwarder: experiments name an allowed target, never a URL, and the
/// probe takes a name too. Credentials in a target's URL never reach a view or a file.
#[tokio::test]
async fn only_allowed_targets_and_no_credentials_in_views_or_files() {
    let (fault_url, server) = caplab_tests::faults::start(vec![caplab_tests::faults::Fault::Ok], 4, Duration::from_millis(1), true).await;
    let with_creds = fault_url.replacen("http://", "http://alice:s3cret@", 1);
    let caplab = Caplab::start(&["--target", &format!("lab={with_creds}")]).await.unwrap();
    let c = client();
    for target in ["http://169.254.169.254/latest/meta-data", "http://127.0.0.1:22"] {
        let r = c.post(caplab.api("runs")).json(&json!({"workload": "chat", "target": target})).send().await.unwrap();
        assert_eq!(r.status(), 422);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["fields"][0]["field"], "target");
        assert!(body["fields"][0]["message"].as_str().unwrap().contains("lab, sim"), "{body}");
    }
    assert_eq!(c.get(caplab.api("target?url=http://127.0.0.1:22")).send().await.unwrap().status(), 422, "no port scanner");
    assert_eq!(c.get(caplab.api("target?name=nope")).send().await.unwrap().status(), 422);
    let targets = c.get(caplab.api("targets")).send().await.unwrap().text().await.unwrap();
    assert!(targets.contains("\"lab\"") && targets.contains("\"sim\"") && !targets.contains("s3cret"), "{targets}");

    let id = start_run(&c, &caplab, json!({"workload": "chat", "target": "lab", "concurrency": [1], "max_new_tokens": [4], "requests": 2})).await.unwrap();
    let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(view.cells[0].requests_ok, 2);
    assert_eq!(view.info.target.name, "lab");
    // The credentials went to the server as Basic auth, and nowhere else.
    let sent = server.last_auth.lock().unwrap().clone().unwrap();
    assert_eq!(sent, "Basic YWxpY2U6czNjcmV0", "alice:s3cret");
    for file in ["run.json", "requests.csv", "summary.csv"] {
        let text = std::fs::read_to_string(caplab.data_dir.join(&id).join(file)).unwrap();
        assert!(!text.contains("s3cret") && !text.contains("alice"), "{file} holds the credentials");
    }
    let shown = c.get(caplab.api(&format!("runs/{id}"))).send().await.unwrap().text().await.unwrap();
    assert!(!shown.contains("s3cret"));
}

/// A client that never finishes its request headers is cut off, and a cap on connections keeps
/// such clients from taking every descriptor: the dashboard keeps answering.
#[tokio::test]
async fn slow_header_clients_are_cut_off_and_connections_capped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let caplab = Caplab::start(&["--header-read-timeout-s", "1", "--max-connections", "8"]).await.unwrap();
    let addr = caplab.url.trim_start_matches("http://").to_string();
    let mut slow = Vec::new();
    for _ in 0..12 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /api/runs HTTP/1.1\r\nHost: x").await.unwrap(); // never finished
        slow.push(s);
    }
    // More slow clients than the cap: a real request still gets through once they are cut off.
    let started = std::time::Instant::now();
    let ok = client().get(caplab.api("runs")).timeout(Duration::from_secs(15)).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
    // Each slow client's connection was closed by the server.
    for mut s in slow {
        let mut buf = [0u8; 256];
        let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("closed, not left hanging");
        assert!(matches!(read, Ok(0) | Err(_)) || buf.starts_with(b"HTTP/1.1 408"), "{read:?}");
    }
}

/// A client on the viewer link sees what the operator shares, never an internal address, and
/// is cut off (socket included) the moment the link is rotated.
#[tokio::test]
async fn viewers_see_only_shared_runs_and_a_rotation_closes_their_sockets() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let caplab = Caplab::start(caplab_tests::FAST_SIM).await.unwrap();
    let c = client();
    let me: serde_json::Value = c.get(caplab.api("whoami")).send().await.unwrap().json().await.unwrap();
    let viewer_token = me["viewer_link"].as_str().unwrap().strip_prefix("/?token=").unwrap().to_string();
    let mut h = reqwest::header::HeaderMap::new();
    // The scheme's name in any case (RFC 9110).
    h.insert(reqwest::header::AUTHORIZATION, format!("bearer {viewer_token}").parse().unwrap());
    let viewer = reqwest::Client::builder().default_headers(h).build().unwrap();
    let spec = json!({"workload": "chat", "target": "sim", "concurrency": [2], "max_new_tokens": [8], "requests": 4});
    let older = start_run(&c, &caplab, spec.clone()).await.unwrap();
    wait_for_end(&c, &caplab, &older, Duration::from_secs(60)).await.unwrap();
    let newest = start_run(&c, &caplab, spec).await.unwrap();
    wait_for_end(&c, &caplab, &newest, Duration::from_secs(60)).await.unwrap();

    // The newest run is the one being shown: visible. The older one is not shared: not found.
    let listed: Vec<caplab_shared::RunInfo> = viewer.get(caplab.api("runs")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [newest.as_str()]);
    assert!(listed[0].target.url.is_empty() && listed[0].spec.target.is_empty(), "no internal address: {:?}", listed[0].target);
    for path in [format!("runs/{older}"), format!("runs/{older}/requests.csv"), format!("compare?runs={older}"), format!("runs/{older}/archive.tar")] {
        assert_eq!(viewer.get(caplab.api(&path)).send().await.unwrap().status(), 404, "{path}");
    }
    assert_eq!(viewer.get(caplab.api("report")).send().await.unwrap().status(), 400, "a viewer names the runs");
    assert_eq!(viewer.get(caplab.api("target?name=sim")).send().await.unwrap().status(), 403);
    let targets: Vec<caplab_shared::api::AllowedTarget> = viewer.get(caplab.api("targets")).send().await.unwrap().json().await.unwrap();
    assert!(!targets.is_empty() && targets.iter().all(|t| t.url.is_empty()), "{targets:?}");
    let view: caplab_shared::RunView = viewer.get(caplab.api(&format!("runs/{newest}"))).send().await.unwrap().json().await.unwrap();
    assert!(view.info.target.url.is_empty());
    // Only the operator shares a run; then the viewer sees it too.
    assert_eq!(viewer.post(caplab.api(&format!("runs/{older}/share"))).json(&json!({"shared": true})).send().await.unwrap().status(), 403);
    let shared: caplab_shared::RunInfo = c.post(caplab.api(&format!("runs/{older}/share"))).json(&json!({"shared": true})).send().await.unwrap().json().await.unwrap();
    assert!(shared.shared);
    assert_eq!(viewer.get(caplab.api(&format!("runs/{older}"))).send().await.unwrap().status(), 200);
    let listed: Vec<caplab_shared::RunInfo> = viewer.get(caplab.api("runs")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed.len(), 2);

    // A viewer's socket: its snapshot has no address; a rotation closes it, saying why.
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!("{}/api/runs/{newest}/ws", caplab.url.replacen("http", "ws", 1))).unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {viewer_token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let Some(Ok(Message::Text(first))) = ws.next().await else { panic!("no snapshot") };
    let snapshot: caplab_shared::ServerMsg = serde_json::from_str(&first).unwrap();
    let caplab_shared::ServerMsg::Snapshot { view } = snapshot else { panic!("not a snapshot first") };
    assert!(view.info.target.url.is_empty());
    let rotated: caplab_shared::api::WhoAmI = c.post(caplab.api("viewer-link/rotate")).json(&json!({})).send().await.unwrap().json().await.unwrap();
    assert!(rotated.is_operator() && rotated.viewer_link.is_some_and(|l| !l.contains(&viewer_token)), "the answer is whoami, with the new link");
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(msg) = ws.next().await {
            if let Ok(Message::Close(frame)) = msg {
                return frame.map(|f| f.reason.to_string());
            }
        }
        None
    })
    .await
    .expect("the socket is closed at once");
    assert!(closed.is_some_and(|r| r.contains("rotated")), "the close frame says why");
    assert_eq!(viewer.get(caplab.api("runs")).send().await.unwrap().status(), 401);
}
