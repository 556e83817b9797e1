//! Headless Chromium under chromedriver, for the browser tests and the live-path benchmark.
//! Needs Debian's `chromium` and `chromedriver` (scripts/setup.sh browser); `CHROMIUM` and
//! `CHROMEDRIVER` override their paths.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::temp_dir;

pub struct Browser {
    pub client: Client,
    _driver: tokio::process::Child,
    /// Where the browser saves downloads.
    pub downloads: PathBuf,
    /// Its own profile folder, which also names its processes.
    profile: PathBuf,
}

impl Drop for Browser {
    /// chromedriver dies with the browser (`kill_on_drop`), but the Chromium it started would
    /// live on, orphaned: hundreds of them piled up over a day of test runs. They are ended by
    /// the profile folder their command lines name, and its folders removed.
    fn drop(&mut self) {
        let _ = std::process::Command::new("pkill")
            .args(["-f", "--"])
            .arg(format!("--user-data-dir={}", self.profile.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.profile);
        let _ = std::fs::remove_dir_all(&self.downloads);
    }
}

/// A TCP port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A new headless Chromium session with its own profile and download folder.
pub async fn browser() -> Browser {
    browser_with(&[]).await
}

/// The same, with more Chromium flags (e.g. a dead proxy, to keep it off the network).
pub async fn browser_with(extra_args: &[&str]) -> Browser {
    let driver_bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let port = free_port();
    let driver = tokio::process::Command::new(&driver_bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {driver_bin} ({e}); run scripts/setup.sh browser"));
    let downloads = temp_dir("downloads");
    let profile = temp_dir("chrome-profile");
    let mut caps = serde_json::Map::new();
    let mut args: Vec<String> = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=1400,1000"].map(String::from).to_vec();
    args.push(format!("--user-data-dir={}", profile.display()));
    args.extend(extra_args.iter().map(|a| a.to_string()));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": args,
            "prefs": {"download.default_directory": downloads.display().to_string(), "download.prompt_for_download": false}
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let mut last_err = None;
    for _ in 0..50 {
        let mut builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        match builder.capabilities(caps.clone()).connect(&url).await {
            Ok(client) => return Browser { client, _driver: driver, downloads, profile },
            Err(e) => last_err = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("chromedriver did not start a session: {last_err:?}");
}


/// Types `value` into the input with this id, replacing what it held.
pub async fn set_input(c: &Client, id: &str, value: &str) {
    let el = c.find(Locator::Id(id)).await.unwrap();
    el.clear().await.unwrap();
    el.send_keys(value).await.unwrap();
}

/// The text of the element with this id, or None while it is not there.
pub async fn text_of(c: &Client, id: &str) -> Option<String> {
    c.find(Locator::Id(id)).await.ok()?.text().await.ok()
}

/// Polls `check` every 100 ms until it yields a value; fails the test past `limit`.
pub async fn poll<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
