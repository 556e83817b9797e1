//! Helpers for caplab's end-to-end tests: start the real `caplab` binary on port 0,
//! and a fault-injecting OpenAI-compatible server that misbehaves on purpose.

pub mod chromium;
pub mod faults;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The `caplab` binary built by `cargo build -p caplab` (the test script builds it first).
pub fn caplab_bin() -> PathBuf {
    if let Ok(p) = std::env::var("CAPLAB_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test-binary> → target/<profile>/caplab
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(|d| d.parent()).map(|d| d.join("caplab")).expect("target dir")
}

/// The operator token every test server is started with (unless the test gives its own).
pub const TEST_TOKEN: &str = "caplab-test-operator-token";

/// An HTTP client that sends the test servers' operator token with every request.
pub fn client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {TEST_TOKEN}").parse().expect("token header"));
    reqwest::Client::builder().default_headers(headers).build().expect("client")
}

/// A running `caplab serve`, killed on drop.
pub struct Caplab {
    /// Base URL, without the token.
    pub url: String,
    /// The operator token from the printed URL (None with --no-auth).
    pub token: Option<String>,
    pub data_dir: PathBuf,
    /// Everything the process wrote on stdout and stderr so far (stderr is also passed on).
    pub output: std::sync::Arc<std::sync::Mutex<String>>,
    child: Child,
    /// Remove `data_dir` on drop (true when `start` made it).
    owns_dir: bool,
}

impl Drop for Caplab {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// Simulator flags that make runs quick (≈3 ms per token) but still streamed.
pub const FAST_SIM: &[&str] = &["--sim-itl-ms", "2", "--sim-itl-ms-per-seq", "0.05", "--sim-prefill-ms", "5"];

/// A fresh data folder under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("caplab-test-{tag}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

impl Caplab {
    /// Starts `caplab serve --listen 127.0.0.1:0 EXTRA…` (EXTRA may name its own `--listen`)
    /// and waits for the URL it prints.
    pub async fn start(extra: &[&str]) -> anyhow::Result<Caplab> {
        let mut caplab = Self::start_in(temp_dir("serve"), extra).await?;
        caplab.owns_dir = true;
        Ok(caplab)
    }

    /// Asks the process to stop as Ctrl-C or a pod shutdown would (SIGTERM) and waits for it to exit.
    pub async fn terminate(&mut self, limit: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.child.id().context("caplab already exited")?;
        std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
        Ok(tokio::time::timeout(limit, self.child.wait()).await.context("caplab did not exit after SIGTERM")??)
    }

    /// Stops the process (SIGKILL) and waits for it to exit.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    pub async fn start_in(data_dir: PathBuf, extra: &[&str]) -> anyhow::Result<Caplab> {
        Self::launch(data_dir, extra, &[], None).await
    }

    /// `start` with environment variables set for the process (e.g. `CAPLAB_API_KEY_<NAME>`).
    pub async fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Caplab> {
        let mut caplab = Self::launch(temp_dir("serve"), extra, env, None).await?;
        caplab.owns_dir = true;
        Ok(caplab)
    }

    /// `start` under an open-file limit (`prlimit --nofile=N:N`): its soft and hard limit.
    pub async fn start_with_nofile(extra: &[&str], nofile: u64) -> anyhow::Result<Caplab> {
        let mut caplab = Self::launch(temp_dir("serve"), extra, &[], Some(nofile)).await?;
        caplab.owns_dir = true;
        Ok(caplab)
    }

    async fn launch(data_dir: PathBuf, extra: &[&str], env: &[(&str, &str)], nofile: Option<u64>) -> anyhow::Result<Caplab> {
        let bin = caplab_bin();
        if !bin.exists() {
            bail!("{} is missing: run `cargo build -p caplab` first", bin.display());
        }
        let own_auth = extra.iter().any(|a| *a == "--token" || *a == "--no-auth");
        let own_listen = extra.contains(&"--listen");
        let mut command = match nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let mut child = command
            .envs(env.iter().copied())
            .arg("serve")
            .args(if own_listen { vec![] } else { vec!["--listen", "127.0.0.1:0"] })
            .arg("--data-dir")
            .arg(&data_dir)
            .args(if own_auth { vec![] } else { vec!["--token", TEST_TOKEN] })
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stderr = child.stderr.take().context("no stderr")?;
        let kept = output.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{line}");
                let mut out = kept.lock().unwrap_or_else(|p| p.into_inner());
                out.push_str(&line);
                out.push('\n');
            }
        });
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let keep = |line: &str, output: &std::sync::Mutex<String>| {
            let mut out = output.lock().unwrap_or_else(|p| p.into_inner());
            out.push_str(line);
            out.push('\n');
        };
        let printed = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await? {
                keep(&line, &output);
                if let Some(rest) = line.strip_prefix("caplab dashboard: ") {
                    return Ok::<_, anyhow::Error>(rest.trim().to_string());
                }
            }
            bail!("caplab exited before printing its URL")
        })
        .await
        .context("caplab did not print its URL within 20 s")??;
        // Keep draining stdout so the child never blocks on a full pipe.
        let kept = output.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                keep(&line, &kept);
            }
        });
        let (url, token) = match printed.split_once("/?token=") {
            Some((url, token)) => (url.to_string(), Some(token.to_string())),
            None => (printed.trim_end_matches('/').to_string(), None),
        };
        Ok(Caplab { url, token, data_dir, output, child, owns_dir: false })
    }

    /// What the process has written on stdout and stderr so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/api/{path}", self.url)
    }

    /// A WebSocket request to `path` (under /api/) carrying the operator token.
    pub fn ws_request(&self, path: &str) -> tokio_tungstenite::tungstenite::handshake::client::Request {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}/api/{path}", self.url.replacen("http://", "ws://", 1));
        let mut req = url.into_client_request().expect("ws url");
        if let Some(t) = &self.token {
            req.headers_mut().insert("authorization", format!("Bearer {t}").parse().expect("token header"));
        }
        req
    }
}

/// Polls `GET /api/runs/{id}` until the run ends and its files are final (the end is published
/// to viewers first, then the files are written, `info.json` last); returns its view.
pub async fn wait_for_end(client: &reqwest::Client, caplab: &Caplab, id: &str, limit: Duration) -> anyhow::Result<caplab_shared::RunView> {
    let deadline = tokio::time::Instant::now() + limit;
    let saved = || {
        std::fs::read(caplab.data_dir.join(id).join("info.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<caplab_shared::RunInfo>(&b).ok())
            .is_some_and(|i| i.status.is_terminal())
    };
    loop {
        let view: caplab_shared::RunView = client.get(caplab.api(&format!("runs/{id}"))).send().await?.json().await?;
        if view.info.status.is_terminal() && saved() {
            return Ok(view);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("run {id} still {:?} after {limit:?}", view.info.status);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts a run and returns its id, failing with the server's answer if it is refused.
pub async fn start_run(client: &reqwest::Client, caplab: &Caplab, spec: serde_json::Value) -> anyhow::Result<String> {
    let resp = client.post(caplab.api("runs")).json(&spec).send().await?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await?;
    if status != reqwest::StatusCode::CREATED {
        bail!("run refused with {status}: {body}");
    }
    Ok(body["id"].as_str().context("no id")?.to_string())
}
