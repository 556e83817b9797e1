//! The dashboard in a real headless Chromium, served by the real binary: compose a
//! batch experiment, watch the chart move, see the summary, download the CSV.
//! Needs Debian's `chromium` and `chromedriver` (scripts/setup.sh browser).

use std::path::{Path, PathBuf};
use std::time::Duration;

use caplab_tests::chromium::{browser, free_port, poll, set_input, text_of};
use caplab_tests::{client, start_run, temp_dir, Caplab};
use fantoccini::{Client, Locator};
use serde_json::json;



async fn chart_points(c: &Client, id: &str) -> usize {
    let script = format!("const p = document.querySelector('#{id} path.line'); return p ? (p.getAttribute('d').match(/[ML]/g) || []).length : 0;");
    c.execute(&script, vec![]).await.ok().and_then(|v| v.as_u64()).unwrap_or(0) as usize
}

fn csv_in(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|e| e == "csv"))
}

#[tokio::test]
async fn dashboard_runs_a_batch_experiment_and_downloads_its_csv() {
    // ~1.5 s per request at concurrency 16: long enough to watch several ticks.
    let caplab = Caplab::start(&["--sim-itl-ms", "4", "--sim-itl-ms-per-seq", "0.1"]).await.unwrap();
    let b = browser().await;
    let c = &b.client;
    // The link caplab prints: its token becomes a cookie and leaves the address bar.
    c.goto(&format!("{}/?token={}", caplab.url, caplab_tests::TEST_TOKEN)).await.unwrap();
    c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Id("f-concurrency")).await.expect("the form renders");
    let address = c.current_url().await.unwrap();
    assert!(!address.as_str().contains("token"), "{address}");
    let badge = c.wait().for_element(Locator::Css("header .badge.simulated")).await.unwrap();
    assert!(badge.text().await.unwrap().contains("SIMULATED"));

    // A bad value is refused by the server and shown next to its field.
    set_input(c, "f-concurrency", "0").await;
    c.find(Locator::Id("start")).await.unwrap().click().await.unwrap();
    let err = c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(".field-error[data-field='concurrency']")).await.unwrap();
    assert!(err.text().await.unwrap().contains("between 1 and"), "{}", err.text().await.unwrap());
    // Four bad fields: each is shown beside its own field, at once, in words.
    set_input(c, "f-warmup", "abc").await;
    set_input(c, "f-concurrency", "-5").await;
    // Emptied as a person does it (select, delete): the page sees an input event.
    c.execute("const e = document.getElementById('f-max_new_tokens'); e.value = ''; e.dispatchEvent(new Event('input', {bubbles: true}));", vec![]).await.unwrap();
    set_input(c, "f-timeout", "-1").await;
    c.find(Locator::Id("start")).await.unwrap().click().await.unwrap();
    poll("four field errors", Duration::from_secs(10), || async move {
        let mut fields = Vec::new();
        for e in c.find_all(Locator::Css(".field-error")).await.ok()? {
            fields.push(e.attr("data-field").await.ok()??);
        }
        fields.sort();
        (fields == ["concurrency", "max_new_tokens", "timeout_s", "warmup"]).then_some(())
    })
    .await;
    let err = c.find(Locator::Css(".field-error[data-field='concurrency']")).await.unwrap().text().await.unwrap();
    assert!(err.contains("\"-5\" is not a whole number"), "{err}");
    set_input(c, "f-warmup", "0").await;
    set_input(c, "f-max_new_tokens", "256").await;
    set_input(c, "f-timeout", "300").await;
    // A concurrency above the cell's requests (batch: 5 documents × repeat 4 = 20) is flagged.
    set_input(c, "f-concurrency", "32").await;
    let warning = c.wait().at_most(Duration::from_secs(5)).for_element(Locator::Id("concurrency-warning")).await.unwrap();
    assert!(warning.text().await.unwrap().contains("c32 gets 20"), "{}", warning.text().await.unwrap());

    // The real experiment: batch summarization at concurrency 16.
    set_input(c, "f-concurrency", "16").await;
    set_input(c, "f-max_new_tokens", "300").await;
    set_input(c, "f-gpu", "browser-test").await;
    assert!(c.find(Locator::Id("concurrency-warning")).await.is_err(), "16 ≤ 20: no warning");
    c.find(Locator::Id("start")).await.unwrap().click().await.unwrap();
    c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Id("run-status")).await.unwrap();

    // The throughput chart grows while the run goes on.
    let first = poll("the chart to draw", Duration::from_secs(20), || async move {
        let n = chart_points(c, "chart-tokens").await;
        (n >= 2).then_some(n)
    })
    .await;
    poll("the chart to update", Duration::from_secs(20), || async move { (chart_points(c, "chart-tokens").await > first).then_some(()) }).await;
    let progress = c.find(Locator::Id("progress-text")).await.unwrap().text().await.unwrap();
    assert!(progress.contains("/ 20 requests"), "{progress}");

    // The summary appears when the run ends.
    let summary = c.wait().at_most(Duration::from_secs(60)).for_element(Locator::Id("summary")).await.unwrap();
    let text = summary.text().await.unwrap();
    assert!(text.contains("output tok/s") && text.contains("SIMULATED"), "{text}");
    let status = c.find(Locator::Id("run-status")).await.unwrap().text().await.unwrap();
    assert_eq!(status, "finished");

    let table = c.find(Locator::Id("results-table")).await.unwrap().text().await.unwrap();
    assert!(table.contains("c16 × 300") && table.contains("20 / 0"), "{table}");

    // Why capacity ends: the simulator's /metrics and modelled GPU beside the client's charts,
    // and the OOM surface with one tile, whose click shows the numbers behind it.
    c.find(Locator::Id("chart-server-queue")).await.expect("the server queue chart");
    c.find(Locator::Id("chart-kv")).await.expect("the KV cache chart");
    let gpu_title = c.find(Locator::Css("#chart-gpu-memory .chart-title")).await.unwrap().text().await.unwrap();
    assert!(gpu_title.contains("simulated"), "{gpu_title}");
    let tiles = c.find_all(Locator::Css("#surface .tile")).await.unwrap();
    assert_eq!(tiles.len(), 1);
    assert_eq!(tiles[0].attr("data-outcome").await.unwrap().as_deref(), Some("meets_slo"));
    c.execute("document.querySelector('#surface .tile rect').dispatchEvent(new MouseEvent('click', {bubbles: true}));", vec![]).await.unwrap();
    let detail = c.wait().at_most(Duration::from_secs(5)).for_element(Locator::Id("surface-detail")).await.unwrap().text().await.unwrap();
    assert!(detail.contains("c16 × 300") && detail.contains("server (/metrics)") && detail.contains("GPU: max memory"), "{detail}");

    // The frontier: the cell as a point, the SLO line, the best configuration ringed.
    assert_eq!(c.find_all(Locator::Css("#frontier .point")).await.unwrap().len(), 1);
    c.find(Locator::Css("#frontier circle.best")).await.expect("the best configuration ringed");

    // The notes, filled from this pod's runs, one click away.
    let notes = c.find(Locator::Id("download-notes")).await.expect("the Notes button");
    assert_eq!(notes.attr("href").await.unwrap().as_deref(), Some("api/report"));

    // Download the per-request CSV through the button.
    c.find(Locator::Id("download-csv")).await.unwrap().click().await.unwrap();
    let downloads = b.downloads.clone();
    let file = poll("the CSV download", Duration::from_secs(20), || {
        let dir = downloads.clone();
        async move { csv_in(&dir) }
    })
    .await;
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    assert_eq!(name.matches("simulated").count(), 1, "the download name says simulated once: {name}");
    let text = std::fs::read_to_string(file).unwrap();
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let headers = rdr.headers().unwrap().clone();
    let tokens_col = headers.iter().position(|h| h == "completion_tokens").unwrap();
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 20, "one row per request sent (5 documents × repeat 4)");
    assert!(rows.iter().all(|r| &r[tokens_col] == "300"));
    // The address names the shown run, so a reload (or a shared link) shows it again.
    let run_id = c.find(Locator::Id("run-id")).await.unwrap().text().await.unwrap();
    let hash = c.execute("return window.location.hash;", vec![]).await.unwrap();
    assert_eq!(hash.as_str(), Some(format!("#run={run_id}").as_str()));
    c.refresh().await.unwrap();
    let shown = c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css("#summary")).await;
    assert!(shown.is_ok(), "the finished run is shown again after a reload");
    assert_eq!(c.find(Locator::Id("run-id")).await.unwrap().text().await.unwrap(), run_id);
    // The form starts from the defaults, not from whatever run is shown…
    let value = c.find(Locator::Id("f-max_new_tokens")).await.unwrap().prop("value").await.unwrap();
    assert_eq!(value.as_deref(), Some("256"), "no field is taken silently from the shown run");
    // …and "Run again" copies that run's settings on purpose.
    c.find(Locator::Id("run-again")).await.unwrap().click().await.unwrap();
    for (id, want) in [("f-concurrency", "16"), ("f-max_new_tokens", "300"), ("f-gpu", "browser-test"), ("f-model", "sim-qwen2.5-1.5b")] {
        let value = c.find(Locator::Id(id)).await.unwrap().prop("value").await.unwrap();
        assert_eq!(value.as_deref(), Some(want), "{id} after Run again");
    }
    // The header names the shown run's engine, GPU and model.
    let badge = c.find(Locator::Id("target-badge")).await.unwrap().text().await.unwrap();
    assert!(badge.contains("SIMULATED") && badge.contains("browser-test") && badge.contains("sim-qwen2.5-1.5b"), "{badge}");
    // The read-only link the operator hands a client: the run is there, the controls are not.
    let link = c.find(Locator::Id("viewer-link")).await.unwrap().prop("value").await.unwrap().unwrap();
    assert!(link.contains("/?token="), "{link}");
    c.goto(&link).await.unwrap();
    // A client meets the presentation: the answer first, the run's provenance said.
    c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Id("presentation")).await.expect("the viewer's page renders");
    c.goto(&format!("{}/#run={run_id}", caplab.url)).await.unwrap();
    let card = poll("the viewer sees the run's capacity card", Duration::from_secs(20), || async {
        c.find(Locator::Id("capacity-card")).await.ok()?.text().await.ok().filter(|t| t.contains("browser-test"))
    })
    .await;
    assert!(card.contains("SIMULATED") && card.contains("tok/s"), "{card}");
    assert!(!card.contains(&run_id), "no run id for a client: {card}");
    assert!(c.find(Locator::Id("experiment-form")).await.is_err(), "no form for a viewer");
    assert!(c.find(Locator::Id("viewer-link")).await.is_err(), "no viewer link for a viewer");
    assert!(c.find(Locator::Id("face-toggle")).await.is_err(), "a viewer stays on the presentation");
    let _ = c.clone().close().await;
}


/// Shows run `id` in the current tab and waits until it is shown running.
async fn open_run(c: &Client, base: &str, id: &str) {
    c.goto(&format!("{base}/#run={id}")).await.unwrap();
    poll("the run shown running", Duration::from_secs(20), || async move {
        (text_of(c, "run-id").await.as_deref() == Some(id) && text_of(c, "run-status").await.as_deref() == Some("running")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn tabs_follow_one_run_see_a_stop_and_reconnect_after_a_crash() {
    let dir = temp_dir("tabs");
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    // ~40 ms per token: 5 s a request, 16 waves of 4: over a minute unless stopped.
    let slow = ["--listen", listen.as_str(), "--sim-itl-ms", "40"];
    let caplab = Caplab::start_in(dir.clone(), &slow).await.unwrap();
    let http = client();
    let spec = json!({"workload": "chat", "target": "sim", "concurrency": [4], "max_new_tokens": [128], "requests": 64});
    let first = start_run(&http, &caplab, spec.clone()).await.unwrap();

    let b = browser().await;
    let c = &b.client;
    c.goto(&format!("{}/?token={}", caplab.url, caplab_tests::TEST_TOKEN)).await.unwrap();
    c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Id("f-concurrency")).await.unwrap();
    // Two tabs of one browser (one cookie) watch the same run.
    let tab1 = c.window().await.unwrap();
    open_run(c, &caplab.url, &first).await;
    let tab2 = c.new_window(true).await.unwrap().handle;
    c.switch_to_window(tab2.clone()).await.unwrap();
    open_run(c, &caplab.url, &first).await;
    // Stop in the second tab…
    c.find(Locator::Id("stop")).await.unwrap().click().await.unwrap();
    poll("tab 2 to show the stop", Duration::from_secs(20), || async move { (text_of(c, "run-status").await.as_deref() == Some("stopped")).then_some(()) }).await;
    // …is seen in the first, without a reload.
    c.switch_to_window(tab1.clone()).await.unwrap();
    poll("tab 1 to show the stop", Duration::from_secs(20), || async move { (text_of(c, "run-status").await.as_deref() == Some("stopped")).then_some(()) }).await;

    // caplab dies mid-run and comes back on the same address: the page reconnects by itself
    // (with backoff) and shows the run as the restarted caplab has it, interrupted, its
    // completed requests kept.
    let second = start_run(&http, &caplab, spec).await.unwrap();
    open_run(c, &caplab.url, &second).await;
    poll("a request to complete", Duration::from_secs(60), || async {
        let view: serde_json::Value = http.get(caplab.api(&format!("runs/{second}"))).send().await.ok()?.json().await.ok()?;
        (view["ticks"].as_array()?.last()?["requests_done"].as_u64()? >= 1).then_some(())
    })
    .await;
    caplab.kill().await;
    let caplab = Caplab::start_in(dir, &slow).await.unwrap();
    let status = poll("the page to show the run interrupted", Duration::from_secs(30), || async move {
        text_of(c, "run-status").await.filter(|s| s == "interrupted")
    })
    .await;
    assert_eq!(status, "interrupted");
    assert_eq!(text_of(c, "run-id").await.as_deref(), Some(second.as_str()));
    let view: serde_json::Value = http.get(caplab.api(&format!("runs/{second}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(view["info"]["status"], "interrupted");
    let _ = c.clone().close().await;
}

/// Decisions in the page: a pod's own chat grid and a GPU measured elsewhere (a `vllm bench
/// serve` file dropped on the page) compared side by side, priced, filtered, and a live chart
/// saved as SVG.
#[tokio::test]
async fn runs_are_imported_compared_priced_and_filtered_in_the_page() {
    // A small import limit, to see the page refuse a file past it before sending it.
    let caplab = Caplab::start(&["--max-import-bytes", "8192"]).await.unwrap();
    let api = client();
    let local = start_run(&api, &caplab, json!({"workload": "chat", "target": "sim", "gpu": "rtx-pod", "concurrency": [2, 4], "max_new_tokens": [16], "requests": 8})).await.unwrap();
    caplab_tests::wait_for_end(&api, &caplab, &local, Duration::from_secs(60)).await.unwrap();
    let bench = temp_dir("bench-files").join("a100_c8.json");
    std::fs::write(
        &bench,
        json!({"endpoint_type": "openai-chat", "backend": "openai-chat", "num_prompts": 64, "request_rate": "inf", "max_concurrency": 8,
               "duration": 10.0, "completed": 64, "failed": 0, "total_input_tokens": 6400, "total_output_tokens": 1024, "request_throughput": 6.4,
               "output_throughput": 1800.0, "total_token_throughput": 2440.0, "median_ttft_ms": 30.0, "p95_ttft_ms": 50.0, "median_e2el_ms": 300.0, "p95_e2el_ms": 450.0})
        .to_string(),
    )
    .unwrap();

    let b = browser().await;
    let c = &b.client;
    c.goto(&format!("{}/?token={}", caplab.url, caplab_tests::TEST_TOKEN)).await.unwrap();
    c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css(&format!("li[data-run='{local}'] .headline"))).await.expect("the run is listed");
    let headline = c.find(Locator::Css(&format!("li[data-run='{local}'] .headline"))).await.unwrap().text().await.unwrap();
    assert!(headline.starts_with("best c") && headline.contains("max stable"), "{headline}");

    // A file past this caplab's import limit is refused in the page, saying which limit.
    let big = temp_dir("bench-files").join("big.json");
    std::fs::write(&big, format!("{{\"pad\": \"{}\"}}", "x".repeat(20_000))).unwrap();
    c.find(Locator::Id("import-files")).await.unwrap().send_keys(&big.display().to_string()).await.unwrap();
    let refused = poll("the size refusal", Duration::from_secs(20), || async { text_of(c, "import-error").await }).await;
    assert!(refused.contains("--max-import-bytes"), "{refused}");
    // Import: the GPU it ran on, then the file (a file input, as a drop would give it).
    set_input(c, "import-gpu", "A100 pod").await;
    set_input(c, "import-model", "Qwen/Qwen2.5-1.5B-Instruct").await;
    c.find(Locator::Id("import-files")).await.unwrap().send_keys(&bench.display().to_string()).await.unwrap();
    let message = poll("the import", Duration::from_secs(20), || async {
        match text_of(c, "import-error").await {
            Some(e) => Some(format!("refused: {e}")),
            None => text_of(c, "import-message").await.filter(|t| t.contains("imported as run")),
        }
    })
    .await;
    assert!(message.starts_with("imported as run"), "{message}");
    let imported = message.rsplit(' ').next().unwrap().to_string();
    let tag = c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(&format!("li[data-run='{imported}'] .imported-tag"))).await.unwrap();
    assert!(tag.text().await.unwrap().contains("vllm bench serve: a100_c8.json"));

    // Compare: the imported run is ticked already; tick the local one too.
    c.find(Locator::Css(&format!("li[data-run='{local}'] input.pick"))).await.unwrap().click().await.unwrap();
    c.find(Locator::Id("compare-selected")).await.unwrap().click().await.unwrap();
    let notes = poll("the compared notes", Duration::from_secs(20), || async {
        c.find(Locator::Css("#compare-notes-html table")).await.ok()?;
        c.find(Locator::Id("compare-notes-html")).await.ok()?.text().await.ok()
    })
    .await;
    assert!(notes.contains("Max stable concurrency"), "{notes}");
    assert_eq!(c.find_all(Locator::Css("#compare-frontier path")).await.unwrap().len(), 2, "one line per run");
    // Neither GPU label matches a profile: no price, so no cost, until one is typed in.
    let html = c.find(Locator::Id("compare-notes-html")).await.unwrap().text().await.unwrap();
    assert!(html.contains("no price (it matches no GPU profile)"), "{html}");
    c.execute("const i = document.querySelector(\"input.price[data-gpu='A100 pod']\"); i.value = '2'; i.dispatchEvent(new Event('change'));", vec![]).await.unwrap();
    // $2/h at 1,800 tok/s: $0.309 per million output tokens.
    poll("the cost from the typed price", Duration::from_secs(20), || async {
        c.find(Locator::Id("compare-notes-html")).await.ok()?.text().await.ok().filter(|t| t.contains("$0.309"))
    })
    .await;
    let link = c.find(Locator::Id("compare-notes")).await.unwrap().attr("href").await.unwrap().unwrap();
    assert!(link.starts_with("api/report?runs=") && link.contains("prices="), "{link}");

    // Filters: by GPU, then by workload.
    c.execute("const s = document.getElementById('filter-gpu'); s.value = 'A100 pod'; s.dispatchEvent(new Event('change'));", vec![]).await.unwrap();
    poll("the GPU filter", Duration::from_secs(10), || async { (c.find_all(Locator::Css(".runs li")).await.ok()?.len() == 1).then_some(()) }).await;
    c.execute("const s = document.getElementById('filter-gpu'); s.value = ''; s.dispatchEvent(new Event('change')); const w = document.getElementById('filter-workload'); w.value = 'batch'; w.dispatchEvent(new Event('change'));", vec![]).await.unwrap();
    poll("the workload filter", Duration::from_secs(10), || async { c.find_all(Locator::Css(".runs li")).await.ok()?.is_empty().then_some(()) }).await;

    // A live chart of the local run, saved as a standalone SVG.
    c.goto(&format!("{}/#run={local}", caplab.url)).await.unwrap();
    c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css("#chart-tokens button.svg-save")).await.unwrap().click().await.unwrap();
    let downloads = b.downloads.clone();
    let svg = poll("the chart's SVG", Duration::from_secs(20), || {
        let dir = downloads.clone();
        async move { std::fs::read_dir(&dir).ok()?.flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|e| e == "svg")) }
    })
    .await;
    let text = std::fs::read_to_string(svg).unwrap();
    assert!(text.starts_with("<svg xmlns=") && text.contains("Output tokens/s") && text.contains("stroke=\"#2f6fed\""), "{text}");
    let _ = c.clone().close().await;
}
