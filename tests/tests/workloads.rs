//! A user's own workload: documents and prompts uploaded over the API (as the page does) or
//! named on `caplab run`'s command line, run against the simulator, with every bad file
//! refused naming what is wrong, before anything is sent.

use std::time::Duration;

use caplab_tests::{caplab_bin, client, start_run, temp_dir, wait_for_end, Caplab, FAST_SIM};
use serde_json::json;

/// The distinct prompt token counts the server reported, from a run's requests.csv.
fn prompt_tokens(csv_text: &str) -> Vec<u32> {
    let mut rdr = csv::Reader::from_reader(csv_text.as_bytes());
    let col = rdr.headers().unwrap().iter().position(|h| h == "prompt_tokens").unwrap();
    let mut seen: Vec<u32> = rdr.records().filter_map(|r| r.ok()?.get(col)?.parse().ok()).collect();
    seen.sort_unstable();
    seen.dedup();
    seen
}

#[tokio::test]
async fn uploaded_documents_and_prompts_are_what_the_run_sends() {
    let dir = temp_dir("inputs");
    let caplab = Caplab::start_in(dir.clone(), FAST_SIM).await.unwrap();
    let api = client();
    let upload = |name: &str, workload: &str, text: String| {
        let (api, url, name, workload) = (api.clone(), caplab.api("inputs"), name.to_string(), workload.to_string());
        async move { api.post(url).json(&json!({"name": name, "workload": workload, "text": text})).send().await.unwrap() }
    };

    // The notes' [DOC] file: a short document and a long one.
    let long = "The scheduler batches requests. ".repeat(80);
    let docs = upload("my_docs.txt", "batch", format!("[DOC]\nA short note.\n[DOC]\n{long}\n")).await;
    assert_eq!(docs.status(), 200);
    let docs: caplab_shared::InputsRef = docs.json().await.unwrap();
    assert_eq!((docs.items, docs.format.as_str(), docs.id.len()), (2, "[DOC] documents", 16));
    let id = start_run(&api, &caplab, json!({"workload": "batch", "target": "sim", "concurrency": [2], "max_new_tokens": [16], "repeat": 2, "inputs": {"id": docs.id}})).await.unwrap();
    let view = wait_for_end(&api, &caplab, &id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(view.cells[0].requests_ok, 4, "2 documents × repeat 2");
    let kept = view.info.spec.inputs.clone().expect("the run says which inputs it sent");
    assert_eq!((kept.name.as_str(), kept.items, kept.id.as_str()), ("my_docs.txt", 2, docs.id.as_str()));
    let csv_text = api.get(caplab.api(&format!("runs/{id}/requests.csv"))).send().await.unwrap().text().await.unwrap();
    let counts = prompt_tokens(&csv_text);
    assert_eq!(counts.len(), 2, "two documents, two prompt lengths: {counts:?}");
    assert!(counts[1] > counts[0] + 300, "the long document's prompt is the long one: {counts:?}");

    // Chat from ShareGPT (first human turn) and from JSONL messages.
    let share = json!([{"conversations": [{"from": "human", "value": "What limits batch size on a GPU?"}, {"from": "gpt", "value": "Memory."}]},
                       {"conversations": [{"from": "system", "value": "be brief"}, {"from": "human", "value": "Explain the KV cache in one paragraph, please."}]}]);
    let share: caplab_shared::InputsRef = upload("sharegpt.json", "chat", share.to_string()).await.json().await.unwrap();
    assert_eq!((share.items, share.format.as_str()), (2, "ShareGPT"));
    let lines = "{\"messages\": [{\"role\": \"system\", \"content\": \"You are terse.\"}, {\"role\": \"user\", \"content\": \"hi\"}]}\n{\"messages\": [{\"role\": \"user\", \"content\": \"and again\"}]}\n";
    let jsonl: caplab_shared::InputsRef = upload("chats.jsonl", "chat", lines.to_string()).await.json().await.unwrap();
    assert_eq!((jsonl.items, jsonl.format.as_str()), (2, "JSONL messages"));
    for r in [&share, &jsonl] {
        let id = start_run(&api, &caplab, json!({"workload": "chat", "target": "sim", "concurrency": [2], "max_new_tokens": [8], "requests": 4, "inputs": {"id": r.id}})).await.unwrap();
        let view = wait_for_end(&api, &caplab, &id, Duration::from_secs(60)).await.unwrap();
        assert_eq!((view.cells[0].requests_ok, view.cells[0].requests_failed), (4, 0), "{}", r.name);
        assert_eq!(view.info.spec.inputs.as_ref().map(|i| i.format.clone()), Some(r.format.clone()));
    }

    // Bad files and bad references: refused with what is wrong, nothing started.
    let refused = |status: reqwest::StatusCode, body: serde_json::Value| (status.as_u16(), body["fields"][0]["message"].as_str().unwrap_or_default().to_string());
    for (name, workload, text, want) in [
        ("empty.txt", "batch", "  \n".to_string(), "empty.txt: empty"),
        ("bad.jsonl", "batch", "{\"text\": \"a\"}\n{oops\n".to_string(), "bad.jsonl: line 2: not JSON"),
        ("share.json", "chat", json!([{"conversations": [{"from": "gpt", "value": "x"}]}]).to_string(), "share.json: record 1: no human turn"),
        ("bin.txt", "chat", "a\u{0}b".to_string(), "bin.txt: a binary file"),
    ] {
        let r = upload(name, workload, text).await;
        let (status, message) = refused(r.status(), r.json().await.unwrap());
        assert_eq!(status, 422, "{name}");
        assert!(message.starts_with(want), "{name}: {message}");
    }
    let before = api.get(caplab.api("runs")).send().await.unwrap().json::<Vec<serde_json::Value>>().await.unwrap().len();
    for (spec, want) in [
        (json!({"workload": "chat", "target": "sim", "inputs": {"id": docs.id}}), "my_docs.txt holds batch inputs"),
        (json!({"workload": "batch", "target": "sim", "inputs": {"id": "0123456789abcdef"}}), "no inputs with id"),
    ] {
        let r = api.post(caplab.api("runs")).json(&spec).send().await.unwrap();
        let (status, message) = refused(r.status(), r.json().await.unwrap());
        assert_eq!(status, 422);
        assert!(message.contains(want), "{message}");
    }
    let after = api.get(caplab.api("runs")).send().await.unwrap().json::<Vec<serde_json::Value>>().await.unwrap().len();
    assert_eq!(before, after, "nothing half-started");
    // A restart keeps the uploads: the same id still runs.
    caplab.kill().await;
    let again = Caplab::start_in(dir, FAST_SIM).await.unwrap();
    let id = start_run(&api, &again, json!({"workload": "chat", "target": "sim", "concurrency": [1], "max_new_tokens": [4], "requests": 2, "inputs": {"id": share.id}})).await.unwrap();
    assert_eq!(wait_for_end(&api, &again, &id, Duration::from_secs(60)).await.unwrap().cells[0].requests_ok, 2);
}

#[tokio::test]
async fn caplab_run_takes_docs_and_prompts_from_the_command_line() {
    let dir = temp_dir("cli-inputs");
    std::fs::write(dir.join("docs.txt"), "[DOC]\nFirst document.\n[DOC]\nSecond document.\n[DOC]\nThird document.\n").unwrap();
    std::fs::write(dir.join("prompts.txt"), "hello\nhow are you\n").unwrap();
    std::fs::write(dir.join("batch.toml"), "workload = \"batch\"\nconcurrency = [2]\nmax_new_tokens = [8]\nrepeat = 1\n").unwrap();
    std::fs::write(dir.join("chat.toml"), "workload = \"chat\"\nconcurrency = [1]\nmax_new_tokens = [8]\nrequests = 2\n[inputs]\nfile = \"prompts.txt\"\n").unwrap();
    let run = |args: Vec<String>| async move {
        let out = tokio::process::Command::new(caplab_bin()).args(&args).output().await.unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let d = |f: &str| dir.join(f).display().to_string();
    let (ok, text) = run(vec!["run".into(), d("batch.toml"), "--docs".into(), d("docs.txt"), "--out".into(), d("out")]).await;
    assert!(ok, "{text}");
    assert!(text.contains("3 requests"), "3 documents × repeat 1: {text}");
    // The file named in the experiment, relative to it.
    let (ok, text) = run(vec!["run".into(), d("chat.toml"), "--out".into(), d("out")]).await;
    assert!(ok, "{text}");
    // The wrong flag for the workload, and a bad file: refused before anything is sent.
    let (ok, text) = run(vec!["run".into(), d("chat.toml"), "--docs".into(), d("docs.txt"), "--out".into(), d("out")]).await;
    assert!(!ok && text.contains("--docs is for batch runs"), "{text}");
    std::fs::write(dir.join("empty.txt"), "").unwrap();
    let (ok, text) = run(vec!["run".into(), d("batch.toml"), "--docs".into(), d("empty.txt"), "--out".into(), d("out")]).await;
    assert!(!ok && text.contains("empty.txt: empty"), "{text}");
    let runs = std::fs::read_dir(dir.join("out")).unwrap().count();
    assert_eq!(runs, 2, "only the two good runs left folders");
}

/// The simulator's `caplab sim` on its own, with these flags; its URL.
async fn sim(flags: &[&str]) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(caplab_bin())
        .args(["sim", "--listen", "127.0.0.1:0"])
        .args(flags)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next_line().await.unwrap().expect("caplab sim printed its URL");
        if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            break url.to_string();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}

/// Rows of a run's requests.csv as (prompt_tokens_requested, prompt_tokens, error_class).
fn requested_and_counted(csv_text: &str) -> Vec<(String, String, String)> {
    let mut rdr = csv::Reader::from_reader(csv_text.as_bytes());
    let h = rdr.headers().unwrap().clone();
    let at = |name: &str| h.iter().position(|c| c == name).unwrap_or_else(|| panic!("no column {name}"));
    let (a, b, e) = (at("prompt_tokens_requested"), at("prompt_tokens"), at("error_class"));
    rdr.records().map(|r| r.unwrap()).map(|r| (r[a].to_string(), r[b].to_string(), r[e].to_string())).collect()
}

#[tokio::test]
async fn synthetic_prompts_have_exactly_the_tokens_asked_for() {
    let caplab = Caplab::start(FAST_SIM).await.unwrap();
    let api = client();
    for workload in ["chat", "batch"] {
        let id = start_run(&api, &caplab, json!({"workload": workload, "target": "sim", "concurrency": [2], "input_tokens": [64, 300], "max_new_tokens": [8], "requests": 6})).await.unwrap();
        let view = wait_for_end(&api, &caplab, &id, Duration::from_secs(60)).await.unwrap();
        assert_eq!(view.cells.len(), 2);
        assert_eq!(view.cells.iter().map(|c| c.input_tokens).collect::<Vec<_>>(), [Some(64), Some(300)]);
        assert!(view.cells.iter().all(|c| c.notes.iter().all(|n| !n.contains("estimate") && !n.contains("assume"))), "counted with the target's tokenizer: {:?}", view.cells[0].notes);
        let csv_text = api.get(caplab.api(&format!("runs/{id}/requests.csv"))).send().await.unwrap().text().await.unwrap();
        let rows = requested_and_counted(&csv_text);
        assert_eq!(rows.len(), 12);
        assert!(rows.iter().all(|(asked, counted, _)| !asked.is_empty() && asked == counted), "{workload}: every request has the prompt tokens asked for: {rows:?}");
        let summary = api.get(caplab.api(&format!("runs/{id}/summary.csv"))).send().await.unwrap().text().await.unwrap();
        assert!(summary.lines().next().unwrap().contains("input_tokens") && summary.contains(",300,"), "{summary}");
    }
    // Too short for the chat template: the cell says so instead of pretending.
    let id = start_run(&api, &caplab, json!({"workload": "chat", "target": "sim", "concurrency": [1], "input_tokens": [3], "max_new_tokens": [4], "requests": 2})).await.unwrap();
    let view = wait_for_end(&api, &caplab, &id, Duration::from_secs(60)).await.unwrap();
    assert!(view.cells[0].notes.iter().any(|n| n.contains("too short")), "{:?}", view.cells[0].notes);
}

/// ShareGPT's recorded answers set each request's output length (`recorded_output_lengths`, as
/// `vllm bench serve` takes them): its answer's tokens as the target counts them; a record
/// without an answer asks for max_new_tokens; inputs without answers are refused.
#[tokio::test]
async fn recorded_answers_set_each_requests_output_length() {
    let caplab = Caplab::start(FAST_SIM).await.unwrap();
    let api = client();
    let upload = |name: &str, text: String| {
        let (api, url, name) = (api.clone(), caplab.api("inputs"), name.to_string());
        async move { api.post(url).json(&json!({"name": name, "workload": "chat", "text": text})).send().await.unwrap().json::<caplab_shared::InputsRef>().await.unwrap() }
    };
    let (short, long) = ("Batching shares the GPU.".repeat(2), "The KV cache holds every token of every sequence in flight. ".repeat(4));
    let share = json!([
        {"conversations": [{"from": "human", "value": "What does batching do?"}, {"from": "gpt", "value": short}]},
        {"conversations": [{"from": "human", "value": "And the KV cache?"}, {"from": "gpt", "value": long}]},
        {"conversations": [{"from": "human", "value": "No answer recorded here."}]}
    ]);
    let share = upload("share.json", share.to_string()).await;
    let id = start_run(&api, &caplab, json!({"workload": "chat", "concurrency": [1], "max_new_tokens": [64], "requests": 3, "recorded_output_lengths": true, "inputs": {"id": share.id}})).await.unwrap();
    let view = wait_for_end(&api, &caplab, &id, Duration::from_secs(60)).await.unwrap();
    assert!(view.cells[0].notes.iter().any(|n| n.starts_with("output lengths from the 2 recorded answers")), "{:?}", view.cells[0].notes);
    // What the target counts for each answer, less what it counts for nothing at all.
    let sim = view.info.target.url.clone();
    let count = |text: String| {
        let (api, url) = (api.clone(), format!("{sim}/tokenize"));
        async move { api.post(url).json(&json!({"model": "sim-qwen2.5-1.5b", "prompt": text})).send().await.unwrap().json::<serde_json::Value>().await.unwrap()["count"].as_u64().unwrap() as u32 }
    };
    let base = count(String::new()).await;
    let expected = [count(short).await - base, count(long).await - base, 64];
    let csv_text = api.get(caplab.api(&format!("runs/{id}/requests.csv"))).send().await.unwrap().text().await.unwrap();
    let mut rdr = csv::Reader::from_reader(csv_text.as_bytes());
    let h = rdr.headers().unwrap().clone();
    let (req, out) = (h.iter().position(|x| x == "request").unwrap(), h.iter().position(|x| x == "completion_tokens").unwrap());
    let mut got: Vec<(u32, u32)> = rdr.records().map(|r| r.unwrap()).map(|r| (r[req].parse().unwrap(), r[out].parse().unwrap())).collect();
    got.sort();
    assert_eq!(got.iter().map(|g| g.1).collect::<Vec<_>>(), expected, "each request its own answer's length");
    assert!(expected[1] > expected[0] + 20);
    // A file without recorded answers has none to give.
    let lines = upload("lines.txt", "one prompt\nanother\n".into()).await;
    let resp = api.post(caplab.api("runs")).json(&json!({"workload": "chat", "max_new_tokens": [64], "recorded_output_lengths": true, "inputs": {"id": lines.id}})).send().await.unwrap();
    assert_eq!(resp.status(), 422);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["fields"][0]["field"], "recorded_output_lengths", "{body}");
}

/// Your own prompt longer than the target's context is refused before anything is sent, naming
/// the prompt and both numbers; prompts that fit run.
#[tokio::test]
async fn a_prompt_longer_than_the_context_is_refused_before_the_run() {
    let (_sim, url) = sim(&["--gpu", "rtx2000-ada-16gb", "--model", "qwen2.5-0.5b", "--max-model-len", "512"]).await;
    let caplab = Caplab::start(&["--target", &url]).await.unwrap();
    let api = client();
    let upload = |name: &str, text: String| {
        let (api, url, name) = (api.clone(), caplab.api("inputs"), name.to_string());
        async move { api.post(url).json(&json!({"name": name, "workload": "chat", "text": text})).send().await.unwrap().json::<caplab_shared::InputsRef>().await.unwrap() }
    };
    // 3,000 characters: 750 of the simulator's tokens, past its 512.
    let long = upload("long.txt", format!("a short question\n{}\nanother one\n", "x".repeat(3000))).await;
    let resp = api.post(caplab.api("runs")).json(&json!({"workload": "chat", "concurrency": [1], "max_new_tokens": [8], "requests": 2, "inputs": {"id": long.id}})).send().await.unwrap();
    assert_eq!(resp.status(), 422);
    let body: serde_json::Value = resp.json().await.unwrap();
    let refusal = &body["fields"][0];
    assert_eq!(refusal["field"], "inputs", "{body}");
    let says = refusal["message"].as_str().unwrap();
    assert!(says.starts_with("prompt 2 of long.txt is 757 tokens as the target counts them") && says.contains("its context is 512 tokens"), "{says}");
    let listed: Vec<serde_json::Value> = api.get(caplab.api("runs")).send().await.unwrap().json().await.unwrap();
    assert!(listed.is_empty(), "nothing half-started");
    let fine = upload("fine.txt", "a short question\nanother one\n".into()).await;
    let id = start_run(&api, &caplab, json!({"workload": "chat", "concurrency": [1], "max_new_tokens": [8], "requests": 2, "inputs": {"id": fine.id}})).await.unwrap();
    let view = wait_for_end(&api, &caplab, &id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(view.cells[0].requests_ok, 2);
}

/// The simulator's block-hashed prefix cache: a shared 1,400-token prefix of 1,500-token prompts
/// is served from it (its /metrics say so, under vLLM's names) and answers sooner than the same
/// run without sharing; a conversation's resent history is served too.
#[tokio::test]
async fn the_simulators_prefix_cache_serves_shared_prefixes_and_histories() {
    let (_sim, url) = sim(&["--gpu", "rtx2000-ada-16gb", "--model", "qwen2.5-1.5b"]).await;
    let caplab = Caplab::start(&["--target", &url]).await.unwrap();
    let api = client();
    let run = |spec: serde_json::Value| {
        let (api, caplab) = (&api, &caplab);
        async move {
            let id = start_run(api, caplab, spec).await.unwrap();
            wait_for_end(api, caplab, &id, Duration::from_secs(120)).await.unwrap()
        }
    };
    let shared_spec = |prefix: u32| json!({"workload": "chat", "concurrency": [1], "input_tokens": [1500], "prefix_tokens": prefix, "max_new_tokens": [4], "requests": 8, "warmup": 1});
    let own = run(shared_spec(0)).await;
    let shared = run(shared_spec(1400)).await;
    let hit = |v: &caplab_shared::RunView| v.cells[0].server.as_ref().and_then(|s| s.prefix_cache_hit_rate).expect("the simulator's prefix-cache counters");
    assert!(hit(&own) < 0.05, "every prompt its own: {}", hit(&own));
    assert!(hit(&shared) > 0.7, "1,400 of 1,500 tokens shared: {}", hit(&shared));
    let ttft = |v: &caplab_shared::RunView| v.cells[0].ttft.p50.unwrap();
    assert!(ttft(&shared) < ttft(&own) * 0.5, "a cached prefix is not computed again: {} vs {} ms", ttft(&shared), ttft(&own));
    let talk = run(json!({"workload": "chat", "concurrency": [2], "input_tokens": [300], "max_new_tokens": [16], "requests": 6, "turns": 3})).await;
    assert!(hit(&talk) > 0.3, "turns 2 and 3 resend the history: {}", hit(&talk));
}

/// Input length as the grid's third axis, on the simulated RTX 2000 with a small KV cache:
/// long prompts exhaust it (preemptions or queueing), prompts past the context are refused by
/// the server, and the surface shows both.
#[tokio::test]
async fn an_input_length_axis_finds_the_context_and_kv_limits() {
    let (_sim, url) = sim(&["--gpu", "rtx2000-ada-16gb", "--model", "qwen2.5-0.5b", "--max-model-len", "1024", "--num-gpu-blocks-override", "64", "--max-num-seqs", "8"]).await;
    let dir = temp_dir("input-axis");
    std::fs::write(dir.join("grid.toml"), "workload = \"chat\"\nconcurrency = [1, 8]\ninput_tokens = [128, 400, 2000]\nmax_new_tokens = [32]\nrequests = 8\n").unwrap();
    let out = tokio::process::Command::new(caplab_bin()).arg("run").arg(dir.join("grid.toml")).args(["--target", &url, "--out"]).arg(dir.join("out")).output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let run = std::fs::read_dir(dir.join("out")).unwrap().next().unwrap().unwrap().path();
    let surface = std::fs::read_to_string(run.join("surface.svg")).unwrap();
    assert!(surface.contains("2000 in → 32"), "rows by prompt length: {surface}");
    assert!(surface.contains(r#"data-outcome="context_length""#), "2000 prompt tokens do not fit a context of 1024: {surface}");
    assert!(surface.contains(r#"data-outcome="preemptions""#) || surface.contains(r#"data-outcome="queueing""#), "8 × 432 tokens exhaust 64 blocks of 16: {surface}");
    assert!(surface.contains(r#"data-outcome="meets_slo""#), "a short prompt alone fits");
}

/// The requests.csv rows of a run as (requested prompt tokens, server's prompt tokens, server's
/// completion tokens).
fn replay_rows(csv_text: &str) -> Vec<(u32, u32, u32)> {
    let mut rdr = csv::Reader::from_reader(csv_text.as_bytes());
    let h = rdr.headers().unwrap().clone();
    let at = |name: &str| h.iter().position(|c| c == name).unwrap();
    let (a, p, c) = (at("prompt_tokens_requested"), at("prompt_tokens"), at("completion_tokens"));
    rdr.records().map(|r| r.unwrap()).map(|r| (r[a].parse().unwrap(), r[p].parse().unwrap(), r[c].parse().unwrap())).collect()
}

#[tokio::test]
async fn a_trace_is_replayed_at_its_speedup_with_its_lengths() {
    let caplab = Caplab::start(FAST_SIM).await.unwrap();
    let api = client();
    let trace_text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../data/traces/azure_sample.csv")).unwrap();
    let r = api.post(caplab.api("inputs")).json(&json!({"name": "azure_sample.csv", "workload": "chat", "text": trace_text})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let trace: caplab_shared::InputsRef = r.json().await.unwrap();
    assert_eq!((trace.items, trace.format.as_str()), (40, "Azure trace"));
    let span = trace.duration_s.unwrap();
    // Open loop is required, and a speedup instead of a rate.
    let closed = api.post(caplab.api("runs")).json(&json!({"workload": "chat", "target": "sim", "inputs": {"id": trace.id}})).send().await.unwrap();
    assert_eq!(closed.status(), 422);
    let started = std::time::Instant::now();
    let id = start_run(&api, &caplab, json!({"workload": "chat", "target": "sim", "mode": "rate", "speedup": [10], "max_new_tokens": [16], "inputs": {"id": trace.id}})).await.unwrap();
    let view = wait_for_end(&api, &caplab, &id, Duration::from_secs(120)).await.unwrap();
    let cell = &view.cells[0];
    assert_eq!((cell.requests_ok, cell.requests_failed), (40, 0), "every request of the trace, once");
    assert!(started.elapsed().as_secs_f64() >= span / 10.0 * 0.9, "ten times faster than the trace's {span:.1} s, not all at once");
    assert!((cell.rate.unwrap() - 40.0 / span * 10.0).abs() < 0.01, "the cell's offered rate is the trace's × 10: {:?}", cell.rate);
    let notes = cell.notes.join(" | ");
    assert!(notes.contains("arrivals: 40 requests sent") && notes.contains("after their time in the trace"), "{notes}");
    let csv_text = api.get(caplab.api(&format!("runs/{id}/requests.csv"))).send().await.unwrap().text().await.unwrap();
    let rows = replay_rows(&csv_text);
    let wanted: Vec<(u32, u32)> = trace_text.lines().skip(1).map(|l| {
        let c: Vec<&str> = l.split(',').collect();
        (c[1].parse().unwrap(), c[2].parse().unwrap())
    }).collect();
    let mut got: Vec<(u32, u32)> = rows.iter().map(|(asked, counted, out)| {
        assert_eq!(asked, counted, "prompt tokens as recorded");
        (*counted, *out)
    }).collect();
    let mut wanted_sorted = wanted.clone();
    got.sort_unstable();
    wanted_sorted.sort_unstable();
    assert_eq!(got, wanted_sorted, "each request's prompt and output lengths are the trace's");
    // A trace out of time order is refused, naming its line.
    let back = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:50,10,1\n2023-11-16 18:15:46,10,1\n";
    let r = api.post(caplab.api("inputs")).json(&json!({"name": "back.csv", "workload": "chat", "text": back})).send().await.unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["fields"][0]["message"].as_str().unwrap().contains("back.csv: line 3: its time is 4.000 s before"), "{body}");
}

#[tokio::test]
async fn lengths_drawn_from_distributions_are_what_each_request_gets() {
    let caplab = Caplab::start(FAST_SIM).await.unwrap();
    let api = client();
    let spec = json!({"workload": "chat", "target": "sim", "concurrency": [4], "max_new_tokens": [16], "requests": 60,
        "input_dist": {"kind": "lognormal", "mean": 300, "stdev": 150, "min": 32, "max": 1500},
        "output_dist": {"kind": "uniform", "mean": 0, "min": 4, "max": 64}});
    let id = start_run(&api, &caplab, spec).await.unwrap();
    let view = wait_for_end(&api, &caplab, &id, Duration::from_secs(120)).await.unwrap();
    assert_eq!(view.cells[0].requests_ok, 60);
    let csv_text = api.get(caplab.api(&format!("runs/{id}/requests.csv"))).send().await.unwrap().text().await.unwrap();
    let rows = replay_rows(&csv_text);
    assert!(rows.iter().all(|(asked, counted, _)| asked == counted), "each prompt has the tokens drawn for it");
    let mut asked: Vec<u32> = rows.iter().map(|r| r.0).collect();
    let mean = asked.iter().map(|&x| f64::from(x)).sum::<f64>() / asked.len() as f64;
    asked.sort_unstable();
    asked.dedup();
    assert!(asked.len() > 30 && (200.0..400.0).contains(&mean), "drawn, not fixed: {} distinct, mean {mean}", asked.len());
    assert!(rows.iter().all(|r| (4..=64).contains(&r.2)), "outputs within 4..64");
    let mut outs: Vec<u32> = rows.iter().map(|r| r.2).collect();
    outs.sort_unstable();
    outs.dedup();
    assert!(outs.len() > 10, "output lengths drawn too: {outs:?}");
    // A distribution beside the input_tokens axis is refused, naming the field.
    let both = api.post(caplab.api("runs")).json(&json!({"workload": "chat", "target": "sim", "input_tokens": [64], "input_dist": {"kind": "normal", "mean": 100, "stdev": 10, "min": 1, "max": 200}})).send().await.unwrap();
    let body: serde_json::Value = both.json().await.unwrap();
    assert!(body["fields"].as_array().unwrap().iter().any(|f| f["field"] == "input_dist"), "{body}");
}
