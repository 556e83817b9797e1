//! A target is not trusted either: one that redirects gets no request followed anywhere else,
//! and one that echoes the credentials it was sent never gets them into a file, a download, an
//! API answer or caplab's own output.

use std::sync::atomic::Ordering;
use std::time::Duration;

use caplab_shared::{ErrorClass, RunStatus};
use caplab_tests::faults;
use caplab_tests::{client, start_run, wait_for_end, Caplab};
use serde_json::json;

#[tokio::test]
async fn a_redirecting_target_gets_no_request_beyond_the_first() {
    let (elsewhere, reached) = faults::counter().await;
    let (redirecting, asked) = faults::redirector(&elsewhere, false).await;
    let (all_redirecting, _) = faults::redirector(&elsewhere, true).await;
    let caplab = Caplab::start(&["--target", &format!("r={redirecting}"), "--target", &format!("all={all_redirecting}")]).await.unwrap();
    let c = client();

    // The probe of a target whose /v1/models redirects is refused, telling the operator where it pointed.
    let probe = c.get(caplab.api("target?name=all")).send().await.unwrap();
    assert_eq!(probe.status(), 422);
    let said = probe.text().await.unwrap();
    assert!(said.contains("redirect") && said.contains(&format!("{elsewhere}/v1/models")), "{said}");
    let refused = c.post(caplab.api("runs")).json(&json!({"workload": "chat", "target": "all", "requests": 1})).send().await.unwrap();
    assert_eq!(refused.status(), 422);

    // Both generation routes: 307 (chat, which keeps the POST and its body) and 302 (batch).
    for workload in ["chat", "batch"] {
        let spec = json!({"workload": workload, "target": "r", "concurrency": [2], "max_new_tokens": [4], "requests": 6, "warmup": 0});
        let id = start_run(&c, &caplab, spec).await.unwrap();
        let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(30)).await.unwrap();
        let cell = &view.cells[0];
        assert_eq!(cell.requests_ok, 0, "{workload}");
        assert_eq!(cell.errors.get(&ErrorClass::Redirect).copied(), Some(cell.requests_failed), "{workload}: {:?}", cell.errors);
        assert!(cell.requests_failed > 0);
        // What a viewer can download says a redirect happened, not where to.
        let csv = c.get(caplab.api(&format!("runs/{id}/requests.csv"))).send().await.unwrap().text().await.unwrap();
        assert!(csv.contains(",redirect,") && csv.contains("follows no redirects"), "{csv}");
        let port = elsewhere.rsplit(':').next().unwrap();
        for file in ["requests.csv", "summary.csv", "results.json", "run.json"] {
            let text = std::fs::read_to_string(caplab.data_dir.join(&id).join(file)).unwrap_or_default();
            assert!(!text.contains(&elsewhere) && !text.contains(&format!(":{port}/")), "{file} names the Location");
        }
    }
    assert!(asked.load(Ordering::SeqCst) > 0, "the redirecting target was asked");
    assert_eq!(reached.load(Ordering::SeqCst), 0, "no request followed a redirect to the other server");
    // The operator's terminal says where the requests were sent.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(caplab.output().contains(&format!("redirecting to \"{elsewhere}/v1/")), "{}", caplab.output());
}

/// The secrets a test target is given, in every form they could come back.
const KEY: &str = "sk-test-SECRET-7f3a9c";
const USER_PASS: &str = "alice:hunter2pass";

fn base64(s: &str) -> String {
    caplab::secrets::base64(s)
}

fn leaks(text: &str) -> Vec<&'static str> {
    let forms: [(&'static str, String); 5] =
        [("the API key", KEY.into()), ("the key's base64", base64(KEY)), ("the password", "hunter2pass".into()), ("user:pass", USER_PASS.into()), ("user:pass as base64", base64(USER_PASS))];
    forms.into_iter().filter(|(_, f)| text.contains(f.as_str())).map(|(what, _)| what).collect()
}

#[tokio::test]
async fn credentials_a_target_echoes_are_kept_nowhere() {
    let echo = faults::echo_auth().await;
    let with_pass = echo.replacen("http://", &format!("http://{USER_PASS}@"), 1);
    let caplab = Caplab::start_with_env(
        &["--target", &format!("key={echo}"), "--target", &format!("basic={with_pass}")],
        &[("CAPLAB_API_KEY_KEY", KEY), ("CAPLAB_LOG", "caplab=debug")],
    )
    .await
    .unwrap();
    let c = client();
    let mut served = String::new();
    for target in ["key", "basic"] {
        served += &c.get(caplab.api(&format!("target?name={target}"))).send().await.unwrap().text().await.unwrap();
        let spec = json!({"workload": "chat", "target": target, "concurrency": [2], "max_new_tokens": [4], "requests": 6, "warmup": 0});
        let id = start_run(&c, &caplab, spec).await.unwrap();
        let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(30)).await.unwrap();
        let cell = &view.cells[0];
        assert_eq!(cell.errors.get(&ErrorClass::Unauthorized).copied(), Some(cell.requests_failed), "401 is its own class: {:?}", cell.errors);
        assert!(cell.requests_failed > 0 && cell.requests_ok == 0);
        assert!(view.info.status == RunStatus::Finished || view.info.message.as_deref().is_some_and(|m| m.contains("credentials")), "{:?}", view.info.message);
        for route in ["", "/requests.csv", "/summary.csv", "/results.json", "/archive.tar", "/report.html"] {
            let body = c.get(caplab.api(&format!("runs/{id}{route}"))).send().await.unwrap().bytes().await.unwrap();
            served += &String::from_utf8_lossy(&body);
        }
        let csv = std::fs::read_to_string(caplab.data_dir.join(&id).join("requests.csv")).unwrap();
        assert!(csv.contains("invalid credentials: ***"), "the message is kept, the secret masked: {csv}");
        for entry in std::fs::read_dir(caplab.data_dir.join(&id)).unwrap() {
            let path = entry.unwrap().path();
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            assert!(leaks(&text).is_empty(), "{} holds {:?}", path.display(), leaks(&text));
        }
    }
    served += &c.get(caplab.api("runs")).send().await.unwrap().text().await.unwrap();
    assert!(served.contains("***"), "the echoes were served, masked");
    assert!(leaks(&served).is_empty(), "an API answer holds {:?}", leaks(&served));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let output = caplab.output();
    assert!(leaks(&output).is_empty(), "caplab's output holds {:?}:\n{output}", leaks(&output));
}

/// Credentials need not be on the command line, where every user of the machine sees them in
/// `ps`: a key or a password from a file or the environment, a warning for a password in a URL.
#[tokio::test]
async fn target_credentials_come_from_files_or_the_environment() {
    let (url, server) = faults::start(vec![faults::Fault::Ok], 4, Duration::from_millis(1), true).await;
    let dir = caplab_tests::temp_dir("secrets");
    let key_file = dir.join("key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let pass_file = dir.join("pass");
    std::fs::write(&pass_file, "hunter2pass\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pass_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let with_user = url.replacen("http://", "http://alice@", 1);
    let with_pass = url.replacen("http://", &format!("http://{USER_PASS}@"), 1);
    let caplab = Caplab::start_with_env(
        &[
            "--target",
            &format!("keyed={url}"),
            "--target-key-file",
            &format!("keyed={}", key_file.display()),
            "--target",
            &format!("filed={with_user}"),
            "--target-password-file",
            &format!("filed={}", pass_file.display()),
            "--target",
            &format!("env={with_user}"),
            "--target",
            &format!("inline={with_pass}"),
        ],
        &[("CAPLAB_TARGET_PASSWORD_ENV", "from-the-env")],
    )
    .await
    .unwrap();
    let c = client();
    for (target, sent) in [
        ("keyed", format!("Bearer {KEY}")),
        ("filed", format!("Basic {}", base64(USER_PASS))),
        ("env", format!("Basic {}", base64("alice:from-the-env"))),
        ("inline", format!("Basic {}", base64(USER_PASS))),
    ] {
        let spec = json!({"workload": "chat", "target": target, "concurrency": [1], "max_new_tokens": [4], "requests": 1, "warmup": 0});
        let id = start_run(&c, &caplab, spec).await.unwrap();
        let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(30)).await.unwrap();
        assert_eq!(view.cells[0].requests_ok, 1, "{target}");
        assert_eq!(server.last_auth.lock().unwrap().clone(), Some(sent), "{target}");
    }
    let output = caplab.output();
    assert!(output.contains("--target inline: the password in its URL is visible to every user of this machine (ps)"), "{output}");
    assert!(!output.contains("hunter2pass") && !output.contains("from-the-env") && !output.contains(KEY), "{output}");
    let _ = std::fs::remove_dir_all(dir);
}
