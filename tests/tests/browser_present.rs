//! Answers a user can put in front of a client, in a real Chromium: the form follows the
//! target it is pointed at, the first click runs something worth seeing, the presentation fits
//! a phone and a projector, rotating the viewer link shows the new one at once, compare ticks
//! survive another run being shown, and an imported run shows only what its file holds.

use std::time::Duration;

use caplab_tests::chromium::{browser, poll, set_input, text_of};
use caplab_tests::{client, start_run, temp_dir, wait_for_end, Caplab, FAST_SIM, TEST_TOKEN};
use fantoccini::{Client, Locator};
use serde_json::json;




/// Picks `value` in a `<select>` as a person would (the change event included).
async fn choose(c: &Client, id: &str, value: &str) {
    let script = format!("const s = document.getElementById('{id}'); s.value = '{value}'; s.dispatchEvent(new Event('change', {{bubbles: true}}));");
    c.execute(&script, vec![]).await.unwrap();
}

/// Whether the page scrolls sideways at the window's current size.
async fn scrolls_sideways(c: &Client) -> bool {
    let v = c.execute("return document.documentElement.scrollWidth > window.innerWidth + 1;", vec![]).await.unwrap();
    v.as_bool().unwrap_or(true)
}

#[tokio::test]
async fn the_page_tells_the_truth_to_an_operator_and_a_client() {
    let caplab = Caplab::start(FAST_SIM).await.unwrap();
    let api = client();
    let b = browser().await;
    let c = &b.client;
    c.set_window_size(1400, 1000).await.unwrap();
    c.goto(&format!("{}/?token={TEST_TOKEN}", caplab.url)).await.unwrap();

    // First contact: one click runs the notes' chat grid on a simulated GPU.
    let quick = c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Id("quick-start")).await.expect("the quick start");
    assert!(quick.text().await.unwrap().contains("simulated"));
    quick.click().await.unwrap();
    let first = poll("the quick start's run", Duration::from_secs(20), || async { text_of(c, "run-id").await }).await;
    let view = wait_for_end(&api, &caplab, &first, Duration::from_secs(240)).await.unwrap();
    assert!(view.info.target.simulated && view.info.spec.gpu.contains("RTX 2000"), "{}", view.info.spec.gpu);
    assert!(view.cells.iter().all(|c| c.requests_ok >= 2 * c.concurrency), "every concurrency is reached: two requests a worker");
    // The answer sits first, above the charts.
    let order = c.execute("const s = document.getElementById('summary'), ch = document.querySelector('.charts'); return !!s && !!ch && (s.compareDocumentPosition(ch) & Node.DOCUMENT_POSITION_FOLLOWING) > 0;", vec![]).await.unwrap();
    assert_eq!(order.as_bool(), Some(true), "the summary comes before the charts");
    // The lab view after a run, for the README.
    if let Ok(dir) = std::env::var("CAPLAB_SCREENSHOTS") {
        tokio::time::sleep(Duration::from_millis(500)).await;
        std::fs::write(std::path::Path::new(&dir).join("dashboard.png"), c.screenshot().await.unwrap()).unwrap();
    }

    // The form follows the chosen target: another simulated GPU, its own GPU and model.
    set_input(c, "f-gpu", "NVIDIA RTX 2000 Ada 16GB").await;
    set_input(c, "f-model", "stale-model").await;
    let a100 = c.execute("return [...document.querySelectorAll('#f-target option')].map(o => o.value).find(v => v.includes('a100')) || '';", vec![]).await.unwrap();
    let a100 = a100.as_str().unwrap().to_string();
    assert!(!a100.is_empty(), "a simulated A100 target is offered");
    choose(c, "f-target", &a100).await;
    for id in ["f-gpu", "f-model"] {
        let value = c.find(Locator::Id(id)).await.unwrap().prop("value").await.unwrap();
        assert_eq!(value.as_deref(), Some(""), "{id} is cleared for the new target, never sent stale");
    }
    let placeholder = poll("the A100's GPU as the placeholder", Duration::from_secs(10), || async {
        c.find(Locator::Id("f-gpu")).await.ok()?.attr("placeholder").await.ok()?.filter(|p| p.contains("A100"))
    })
    .await;
    assert!(placeholder.contains("simulator"), "{placeholder}");
    choose(c, "f-workload", "chat").await;
    set_input(c, "f-concurrency", "2").await;
    set_input(c, "f-max_new_tokens", "16").await;
    set_input(c, "f-requests", "4").await;
    c.find(Locator::Id("start")).await.unwrap().click().await.unwrap();
    let second = poll("the A100 run", Duration::from_secs(20), || async { text_of(c, "run-id").await.filter(|id| *id != first) }).await;
    let view = wait_for_end(&api, &caplab, &second, Duration::from_secs(60)).await.unwrap();
    assert!(view.info.spec.gpu.contains("A100") && !view.info.spec.gpu.contains("RTX"), "saved as {}", view.info.spec.gpu);
    let badge = poll("the header to name the A100 run", Duration::from_secs(10), || async { text_of(c, "target-badge").await.filter(|b| b.contains("A100")) }).await;
    assert!(badge.contains("SIMULATED"), "{badge}");

    // Ticks for Compare survive showing another run (#run=).
    c.goto(&format!("{}/#run={first}", caplab.url)).await.unwrap();
    poll("the first run shown", Duration::from_secs(20), || async { (text_of(c, "run-id").await.as_deref() == Some(first.as_str())).then_some(()) }).await;
    for id in [&first, &second] {
        c.find(Locator::Css(&format!("li[data-run='{id}'] input.pick"))).await.unwrap().click().await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(text_of(c, "compare-selected").await.as_deref(), Some("Compare (2)"));
    c.find(Locator::Css(&format!("li[data-run='{second}']"))).await.unwrap().click().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(text_of(c, "compare-selected").await.as_deref(), Some("Compare (2)"), "opening another run keeps the ticks");

    // An imported run shows what its file holds: no timeline, no engine claims, its model.
    let file = json!({"endpoint_type": "openai-chat", "backend": "openai-chat", "model_id": "Qwen/Qwen2.5-7B-Instruct", "num_prompts": 64, "max_concurrency": 8,
        "duration": 10.0, "completed": 64, "failed": 0, "total_input_tokens": 6400, "total_output_tokens": 1024, "request_throughput": 6.4,
        "output_throughput": 1800.0, "median_ttft_ms": 30.0, "p95_ttft_ms": 50.0, "median_e2el_ms": 300.0, "p95_e2el_ms": 450.0});
    let body = json!({"gpu": "A100 pod", "workload": "chat", "files": [{"name": "c8.json", "text": file.to_string()}]});
    let imported: Vec<caplab_shared::RunInfo> = api.post(caplab.api("import")).json(&body).send().await.unwrap().json().await.unwrap();
    let imported = &imported[0];
    assert_eq!(imported.spec.model, "Qwen/Qwen2.5-7B-Instruct", "the model from the file's model_id");
    c.goto(&format!("{}/#run={}", caplab.url, imported.id)).await.unwrap();
    let banner = c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Id("imported-banner")).await.unwrap().text().await.unwrap();
    assert!(banner.contains("IMPORTED") && banner.contains("c8.json"), "{banner}");
    for absent in ["chart-tokens", "progress-text", "stream-facts"] {
        assert!(c.find(Locator::Id(absent)).await.is_err(), "{absent} is not shown for an imported run");
    }
    let badge = text_of(c, "target-badge").await.unwrap();
    assert!(badge.contains("IMPORTED") && badge.contains("Qwen2.5-7B"), "{badge}");

    // Rotation asks first, then shows the new link at once.
    c.goto(&format!("{}/#run={first}", caplab.url)).await.unwrap();
    let old = c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Id("viewer-link")).await.unwrap().prop("value").await.unwrap().unwrap();
    c.find(Locator::Id("rotate-viewer-link")).await.unwrap().click().await.unwrap();
    poll("the confirmation", Duration::from_secs(5), || async { c.get_alert_text().await.ok() }).await;
    c.accept_alert().await.unwrap();
    let new = poll("the new link", Duration::from_secs(10), || async {
        c.find(Locator::Id("viewer-link")).await.ok()?.prop("value").await.ok()?.filter(|v| *v != old)
    })
    .await;
    assert!(new.contains("/?token="), "{new}");
    assert!(c.find(Locator::Css(".share .form-error")).await.is_err(), "no error after a rotation");

    // The presentation fits a phone and a projector, light and dark; screenshots for the README.
    let shots = std::env::var("CAPLAB_SCREENSHOTS").map(std::path::PathBuf::from).unwrap_or_else(|_| temp_dir("shots"));
    std::fs::create_dir_all(&shots).unwrap();
    c.find(Locator::Id("face-toggle")).await.unwrap().click().await.unwrap();
    c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Id("capacity-card")).await.unwrap();
    for (w, h, dark, name) in [(390, 844, false, "presentation-390.png"), (1920, 1080, true, "presentation-1920-dark.png"), (1920, 1080, false, "presentation-1920.png")] {
        c.set_window_size(w, h).await.unwrap();
        let is_dark = c.execute("return document.querySelector('.app').classList.contains('dark');", vec![]).await.unwrap().as_bool() == Some(true);
        if is_dark != dark {
            c.find(Locator::Id("dark-toggle")).await.unwrap().click().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!scrolls_sideways(c).await, "no sideways scroll at {w}×{h}");
        std::fs::write(shots.join(name), c.screenshot().await.unwrap()).unwrap();
    }
    let card = text_of(c, "capacity-card").await.unwrap();
    assert!(card.contains("SIMULATED") && card.contains("users") && card.contains("p95 end-to-end ≤ 3000 ms"), "{card}");
    assert!(!card.contains(&first), "no run id on the presentation");
    let _ = c.clone().close().await;
}

/// A run started from the API on an older caplab page: the form's defaults and the viewer
/// link's face need no run at all.
#[tokio::test]
async fn a_viewer_without_shared_runs_sees_a_plain_empty_presentation() {
    let caplab = Caplab::start(FAST_SIM).await.unwrap();
    let api = client();
    let me: serde_json::Value = api.get(caplab.api("whoami")).send().await.unwrap().json().await.unwrap();
    let link = me["viewer_link"].as_str().unwrap().to_string();
    let b = browser().await;
    let c = &b.client;
    c.goto(&format!("{}{link}", caplab.url)).await.unwrap();
    let card = c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Id("capacity-card")).await.unwrap().text().await.unwrap();
    assert!(card.contains("No run to show yet"), "{card}");
    // A run starts: the viewer's page picks it up once listed (the newest run is shown).
    let id = start_run(&api, &caplab, json!({"workload": "chat", "target": "sim", "concurrency": [2], "max_new_tokens": [8], "requests": 4})).await.unwrap();
    wait_for_end(&api, &caplab, &id, Duration::from_secs(60)).await.unwrap();
    c.refresh().await.unwrap();
    let card = poll("the newest run on the viewer's page", Duration::from_secs(20), || async { text_of(c, "capacity-card").await.filter(|t| t.contains("tok/s")) }).await;
    assert!(card.contains("SIMULATED"), "{card}");
    let _ = c.clone().close().await;
}

/// The live charts read as people expect: tooltips with values, legend keys that hide a line,
/// axis titles with units, cell boundaries marked, a note while long requests stream without
/// ending; after a stop, the partial cell is not "pass" and the cells not run are grey.
#[tokio::test]
async fn live_charts_explain_themselves() {
    // ~40 ms a token: a 128-token request takes about 5 s, so nothing ends for a while.
    let caplab = Caplab::start(&["--sim-itl-ms", "40"]).await.unwrap();
    let api = client();
    let id = start_run(&api, &caplab, json!({"workload": "chat", "target": "sim", "concurrency": [2, 4, 8], "max_new_tokens": [128], "requests": 4})).await.unwrap();
    let b = browser().await;
    let c = &b.client;
    c.set_window_size(1400, 1000).await.unwrap();
    c.goto(&format!("{}/?token={TEST_TOKEN}", caplab.url)).await.unwrap();
    c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Id("run-id")).await.unwrap();
    c.goto(&format!("{}/#run={id}", caplab.url)).await.unwrap();
    let note = poll("the waiting note", Duration::from_secs(20), || async { text_of(c, "waiting-note").await }).await;
    assert!(note.contains("No request has ended") && note.contains("in flight"), "{note}");
    // Axis titles with units.
    let titles: Vec<String> = {
        let mut t = Vec::new();
        for e in c.find_all(Locator::Css("#chart-latency .axis-title")).await.unwrap() {
            t.push(e.text().await.unwrap());
        }
        t
    };
    assert!(titles.iter().any(|t| t.contains("time since the run started (s)")) && titles.iter().any(|t| t == "ms"), "{titles:?}");
    // The second cell starts: its boundary is marked and labelled on every live chart.
    let mark = poll("a cell boundary", Duration::from_secs(40), || async { c.find(Locator::Css("#chart-tokens .cell-label")).await.ok()?.text().await.ok() }).await;
    assert_eq!(mark, "c4 × 128");
    // A tooltip with each line's value under the pointer.
    c.execute("const s = document.querySelector('#chart-tokens svg'); const r = s.getBoundingClientRect(); s.dispatchEvent(new MouseEvent('mousemove', {clientX: r.left + r.width * 0.8, clientY: r.top + r.height / 2, bubbles: true}));", vec![]).await.unwrap();
    let tip = poll("the tooltip", Duration::from_secs(5), || async { c.find(Locator::Css("#chart-tokens .chart-tip")).await.ok()?.text().await.ok() }).await;
    assert!(tip.contains("output tok/s") && tip.contains(" s"), "{tip}");
    // A click on a legend key hides that line, another shows it again.
    let lines = |c: &Client| {
        let c = c.clone();
        async move { c.find_all(Locator::Css("#chart-latency path.line")).await.unwrap().len() }
    };
    assert_eq!(lines(c).await, 4);
    c.find(Locator::Css("#chart-latency .legend button.key")).await.unwrap().click().await.unwrap();
    poll("a hidden line", Duration::from_secs(5), || async { (lines(c).await == 3).then_some(()) }).await;
    c.find(Locator::Css("#chart-latency .legend button.key")).await.unwrap().click().await.unwrap();
    poll("the line back", Duration::from_secs(5), || async { (lines(c).await == 4).then_some(()) }).await;
    // Stopped in the second cell: it is partial, never "pass", and c8 was not run.
    c.find(Locator::Id("stop")).await.unwrap().click().await.unwrap();
    let view = wait_for_end(&api, &caplab, &id, Duration::from_secs(30)).await.unwrap();
    assert!(view.cells.iter().any(|c| c.partial), "a cell was cut short");
    let table = poll("the stopped table", Duration::from_secs(20), || async {
        text_of(c, "run-status").await.filter(|s| s == "stopped")?;
        c.find(Locator::Css("#surface .tile-not-run")).await.ok()?;
        text_of(c, "results-table").await
    })
    .await;
    assert!(table.contains("partial: cut short by the stop, not judged"), "{table}");
    let outcome = c.find(Locator::Css("#surface .tile-not-run")).await.unwrap().attr("data-outcome").await.unwrap();
    assert_eq!(outcome.as_deref(), Some("not_run"));
    let _ = c.clone().close().await;
}

/// The notes' batch grid on the user's own `[DOC]` file, uploaded in the page.
#[tokio::test]
async fn the_notes_batch_grid_runs_on_documents_uploaded_in_the_page() {
    let caplab = Caplab::start(FAST_SIM).await.unwrap();
    let api = client();
    let docs = temp_dir("page-docs").join("my_docs.txt");
    std::fs::write(&docs, "[DOC]\nFirst: how the scheduler batches.\n[DOC]\nSecond: what fills the KV cache.\n[DOC]\nThird: why p95 rises with load.\n").unwrap();
    let b = browser().await;
    let c = &b.client;
    c.goto(&format!("{}/?token={TEST_TOKEN}", caplab.url)).await.unwrap();
    c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Id("f-inputs")).await.unwrap();
    choose(c, "f-workload", "batch").await;
    let builtin = text_of(c, "f-inputs-shown").await.unwrap();
    assert!(builtin.contains("built-in") && builtin.contains("5 documents"), "{builtin}");
    c.find(Locator::Id("f-inputs")).await.unwrap().send_keys(&docs.display().to_string()).await.unwrap();
    let shown = poll("the upload", Duration::from_secs(20), || async { text_of(c, "f-inputs-shown").await.filter(|t| t.contains("my_docs.txt")) }).await;
    assert!(shown.contains("3 documents") && shown.contains("[DOC] documents"), "{shown}");
    set_input(c, "f-concurrency", "8, 16, 32").await;
    set_input(c, "f-max_new_tokens", "256, 512").await;
    set_input(c, "f-repeat", "4").await;
    c.find(Locator::Id("start")).await.unwrap().click().await.unwrap();
    let id = poll("the run", Duration::from_secs(20), || async { text_of(c, "run-id").await }).await;
    let view = wait_for_end(&api, &caplab, &id, Duration::from_secs(120)).await.unwrap();
    assert_eq!(view.cells.len(), 6, "the notes' grid: 3 concurrencies × 2 lengths");
    assert!(view.cells.iter().all(|c| c.requests_ok == 12), "3 documents × repeat 4 in every cell");
    assert_eq!(view.info.spec.inputs.as_ref().map(|i| i.name.as_str()), Some("my_docs.txt"));
    // A wrong file for the workload is refused beside the field, nothing sent.
    choose(c, "f-workload", "chat").await;
    let share = temp_dir("page-docs").join("share.json");
    std::fs::write(&share, "[{\"conversations\": [{\"from\": \"gpt\", \"value\": \"x\"}]}]").unwrap();
    c.find(Locator::Id("f-inputs")).await.unwrap().send_keys(&share.display().to_string()).await.unwrap();
    let err = poll("the refusal", Duration::from_secs(20), || async { c.find(Locator::Css(".field-error[data-field='inputs']")).await.ok()?.text().await.ok() }).await;
    assert!(err.contains("share.json: record 1: no human turn"), "{err}");
    let _ = c.clone().close().await;
}
