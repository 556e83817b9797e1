//! The workload as the server saw it, in a real Chromium: a run with prompt and output lengths
//! drawn per request shows both histograms of tokens per request, their bars adding up to the
//! run's successful requests, each bar's range in its tooltip.

use std::time::Duration;

use caplab_tests::chromium::{browser, poll};
use caplab_tests::{client, start_run, wait_for_end, Caplab, FAST_SIM, TEST_TOKEN};
use fantoccini::{Client, Locator};
use serde_json::json;

/// (tooltip, request count) of every bar of the histogram in element `id`.
async fn bars(c: &Client, id: &str) -> Vec<(String, u32)> {
    let script = format!("return [...document.querySelectorAll('#{id} rect.bar title')].map(t => t.textContent);");
    let titles: Vec<String> = serde_json::from_value(c.execute(&script, vec![]).await.unwrap()).unwrap();
    titles
        .into_iter()
        .map(|t| {
            let n = t.rsplit(": ").next().unwrap().split(' ').next().unwrap().parse().unwrap();
            (t, n)
        })
        .collect()
}

#[tokio::test]
async fn drawn_lengths_show_as_histograms_of_tokens_per_request() {
    let caplab = Caplab::start(FAST_SIM).await.unwrap();
    let api = client();
    let spec = json!({
        "workload": "chat", "concurrency": [4], "max_new_tokens": [64], "requests": 24,
        "input_dist": {"kind": "uniform", "mean": 500, "min": 64, "max": 1000},
        "output_dist": {"kind": "uniform", "mean": 36, "min": 8, "max": 64}
    });
    let id = start_run(&api, &caplab, spec).await.unwrap();
    let view = wait_for_end(&api, &caplab, &id, Duration::from_secs(60)).await.unwrap();
    let ok = view.cells[0].requests_ok;
    assert_eq!(ok, 24);

    let b = browser().await;
    let c = &b.client;
    c.set_window_size(1400, 1000).await.unwrap();
    c.goto(&format!("{}/?token={TEST_TOKEN}#run={id}", caplab.url)).await.unwrap();
    c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Id("tokens")).await.expect("the tokens-per-request card");
    let prompt = poll("the prompt histogram's bars", Duration::from_secs(10), || async {
        let b = bars(c, "prompt-tokens-hist").await;
        (!b.is_empty()).then_some(b)
    })
    .await;
    let output = bars(c, "output-tokens-hist").await;
    assert_eq!(prompt.iter().map(|b| b.1).sum::<u32>(), ok, "every successful request once: {prompt:?}");
    assert_eq!(output.iter().map(|b| b.1).sum::<u32>(), ok, "{output:?}");
    assert!(prompt.len() >= 3, "lengths drawn from 64 to 1,000 tokens spread over several bins: {prompt:?}");
    assert!(output.iter().all(|(t, _)| t.contains("tokens")), "each bar names its range: {output:?}");
    let text = c.find(Locator::Id("tokens")).await.unwrap().text().await.unwrap();
    assert!(text.contains("prompt tokens") && text.contains("output tokens") && text.contains("24 requests"), "{text}");
    let header = c.find(Locator::Id("run-what")).await.unwrap().text().await.unwrap();
    assert!(!header.contains("conversations"), "single requests are not called conversations: {header}");

    // A run of conversations says so where the run is named.
    let talk = start_run(&api, &caplab, json!({"workload": "chat", "concurrency": [2], "max_new_tokens": [8], "requests": 6, "turns": 3, "think_time_s": 0.1})).await.unwrap();
    wait_for_end(&api, &caplab, &talk, Duration::from_secs(60)).await.unwrap();
    c.goto(&format!("{}/?token={TEST_TOKEN}#run={talk}", caplab.url)).await.unwrap();
    let header = poll("the conversation run's header", Duration::from_secs(20), || async {
        c.find(Locator::Id("run-what")).await.ok()?.text().await.ok().filter(|t| t.contains("conversations"))
    })
    .await;
    assert!(header.contains("3-turn conversations, 0.1 s think time"), "{header}");
}
