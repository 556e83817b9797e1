//! Nothing lost silently when the disk fills: the data folder on a 1 MiB tmpfs. A run whose
//! journal cannot be appended to stops as `failed` naming the cause with counts; its file holds
//! whole rows only, never one twice; no half-written file is left; a restart on the still-full
//! disk lists it with the reason; `--min-free-mb` refuses a run below the floor.
//!
//! Needs to mount a tmpfs (root, as in this project's CI); elsewhere the test says so and passes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use caplab_shared::{RunStatus, RunView};
use caplab_tests::{client, start_run, temp_dir, Caplab, FAST_SIM};
use serde_json::json;

/// A tmpfs of `size`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = temp_dir("full-disk");
        let ok = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(&dir).status().is_ok_and(|s| s.success());
        ok.then_some(Tmpfs(dir))
    }

    fn resize(&self, size: &str) {
        let ok = std::process::Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.0).status().unwrap();
        assert!(ok.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Every row of a `requests.csv` text: (cell, index) of each, refusing a torn row.
fn rows(csv: &str) -> Vec<(u32, u32)> {
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap_or_else(|| panic!("no {name} column"));
    let (cell, index) = (col("cell"), col("request"));
    reader
        .records()
        .map(|r| {
            let r = r.expect("a whole row");
            assert_eq!(r.len(), headers.len(), "a torn row: {r:?}");
            (r[cell].parse().expect("a cell number"), r[index].parse().expect("an index"))
        })
        .collect()
}

/// Writes `path` until the disk takes no more.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let block = [0u8; 512];
    while f.write_all(&block).and_then(|()| f.flush()).is_ok() {}
}

fn partial_files(folder: &Path) -> Vec<String> {
    std::fs::read_dir(folder).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.contains(".tmp")).collect()
}

async fn wait_terminal(c: &reqwest::Client, caplab: &Caplab, id: &str) -> RunView {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let view: RunView = c.get(caplab.api(&format!("runs/{id}"))).send().await.unwrap().json().await.unwrap();
        // The journal's failure stops the run; the status that says why comes after the stop.
        if view.info.status == RunStatus::Failed && view.info.message.as_deref().is_some_and(|m| m.contains("not saved")) {
            return view;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {:?}: {:?}", view.info.status, view.info.message);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_full_disk_stops_the_run_says_why_and_loses_nothing_silently() {
    let Some(disk) = Tmpfs::mount("1m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    let c = client();
    let mut caplab = Caplab::start_in(disk.0.clone(), &[&["--min-free-mb", "0"], FAST_SIM].concat()).await.unwrap();
    let id = start_run(&c, &caplab, json!({"workload": "chat", "concurrency": [32], "max_new_tokens": [4], "requests": 20000, "warmup": 0})).await.unwrap();
    let view = wait_terminal(&c, &caplab, &id).await;
    let message = view.info.message.clone().unwrap();
    assert!(message.contains("the disk is full") && message.contains("of the run's requests are on disk"), "{message}");
    let on_disk: u64 = message.split(" of the run's requests are on disk").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    let held: u64 = message.split(" more held in memory").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(on_disk > 100 && on_disk < 20_000, "{message}");

    // The file holds whole rows only, each once, and as many as the message says.
    let folder = disk.0.join(&id);
    let file = String::from_utf8(std::fs::read(folder.join("requests.csv")).unwrap()).unwrap();
    let file_rows = rows(&file);
    assert_eq!(file_rows.len() as u64, on_disk);
    assert_eq!(file_rows.iter().collect::<HashSet<_>>().len(), file_rows.len(), "a row on disk twice");
    // The download is the disk's rows, then the memory's: none twice, none torn.
    let served = c.get(caplab.api(&format!("runs/{id}/requests.csv"))).send().await.unwrap().text().await.unwrap();
    let served_rows = rows(&served);
    assert_eq!(served_rows.len() as u64, on_disk + held, "{message}");
    assert_eq!(served_rows.iter().collect::<HashSet<_>>().len(), served_rows.len(), "a row served twice");
    assert!(partial_files(&folder).is_empty(), "half-written files left: {:?}", partial_files(&folder));
    let listed: Vec<serde_json::Value> = c.get(caplab.api("runs")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed[0]["status"], "failed");

    // Stopping tries once more, and says what cannot be kept.
    caplab.terminate(Duration::from_secs(20)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = caplab.output();
    assert!(stopped.contains(&format!("run {id} could not be saved as caplab stops")) && stopped.contains("requests held in memory are lost"), "{stopped}");
    drop(caplab);

    // Whatever the cut-back journal left free is taken too: the disk is full to the byte.
    fill(&disk.0.join("filler"));

    // A restart on the still-full disk lists the run, with the reason.
    let caplab = Caplab::start_in(disk.0.clone(), &["--min-free-mb", "100"]).await.unwrap();
    let view: RunView = c.get(caplab.api(&format!("runs/{id}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(view.info.status, RunStatus::Interrupted);
    let message = view.info.message.unwrap();
    assert!(message.contains(&format!("the {on_disk} requests that completed")) && message.contains("could not be updated (the disk is full"), "{message}");
    let refused = c.post(caplab.api("runs")).json(&json!({"workload": "chat", "concurrency": [1], "requests": 1})).send().await.unwrap();
    // Refused below the floor, with both numbers.
    assert_eq!(refused.status(), 409);
    let why = refused.text().await.unwrap();
    assert!(why.contains("MB free, below this caplab's floor of 100 MB (--min-free-mb)"), "{why}");
    caplab.kill().await;

    // With room again, the next start writes the recovered run's files.
    disk.resize("16m");
    let caplab = Caplab::start_in(disk.0.clone(), &[]).await.unwrap();
    let listed: Vec<serde_json::Value> = c.get(caplab.api("runs")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed[0]["status"], "interrupted");
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(folder.join("info.json")).unwrap()).unwrap();
    assert_eq!(info["status"], "interrupted", "rewritten once there was room");
    assert!(partial_files(&folder).is_empty());
    caplab.kill().await;
}

#[tokio::test]
async fn caplab_run_on_a_full_disk_exits_with_its_own_code() {
    let Some(disk) = Tmpfs::mount("512k") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    let dir = temp_dir("full-disk-run");
    let spec = dir.join("spec.toml");
    std::fs::write(&spec, "workload = \"chat\"\nconcurrency = [32]\nmax_new_tokens = [4]\nrequests = 20000\nwarmup = 0\n").unwrap();
    let out = tokio::process::Command::new(caplab_tests::caplab_bin())
        .arg("run")
        .arg(&spec)
        .arg("--out")
        .arg(&disk.0)
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{said}");
    assert!(said.contains("the disk is full"), "{said}");
    let _ = std::fs::remove_dir_all(dir);
}
