//! Multi-turn conversations against a real HTTP server that records what it is sent: every
//! turn resends the history with the server's own replies, a failed turn starts a new
//! conversation, the think time separates turns, and TTFT is reported per turn.

use std::time::Duration;

use caplab_tests::faults::{self, Fault};
use caplab_tests::{start_run, wait_for_end, Caplab};
use serde_json::{json, Value};

/// (request, turn, scheduled_s, e2e_ms, error_class) of each row of a run's requests.csv, by request.
fn rows(csv_text: &str) -> Vec<(u32, u32, f64, f64, String)> {
    let mut rdr = csv::Reader::from_reader(csv_text.as_bytes());
    let h = rdr.headers().unwrap().clone();
    let at = |name: &str| h.iter().position(|x| x == name).unwrap_or_else(|| panic!("column {name}"));
    let (req, turn, sched, e2e, err) = (at("request"), at("turn"), at("scheduled_s"), at("e2e_ms"), at("error_class"));
    let mut out: Vec<_> = rdr
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[req].parse().unwrap(), r[turn].parse().unwrap(), r[sched].parse().unwrap(), r[e2e].parse().unwrap(), r[err].to_string())
        })
        .collect();
    out.sort_by_key(|r| r.0);
    out
}

fn roles(body: &Value) -> Vec<String> {
    body["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn each_turn_resends_the_history_with_the_servers_replies() {
    use Fault::*;
    // One user: request n is served n-th. The fifth request (turn 2 of the second
    // conversation) fails, so the sixth starts a new conversation.
    let (target, server) = faults::start(vec![Ok, Ok, Ok, Ok, Status500, Ok], 3, Duration::from_millis(2), false).await;
    let caplab = Caplab::start(&["--target", &format!("faulty={target}")]).await.unwrap();
    let c = caplab_tests::client();
    let spec = json!({"target": "faulty", "workload": "chat", "concurrency": [1], "max_new_tokens": [3], "requests": 6, "turns": 3, "think_time_s": 0.2});
    let id = start_run(&c, &caplab, spec).await.unwrap();
    let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(30)).await.unwrap();
    let cell = &view.cells[0];
    assert_eq!((cell.requests_ok, cell.requests_failed, cell.partial), (5, 1, false), "every planned request was sent");

    let bodies = server.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 6);
    let shape: Vec<Vec<String>> = bodies.iter().map(roles).collect();
    let (u, a) = ("user".to_string(), "assistant".to_string());
    assert_eq!(shape[0], vec![u.clone()]);
    assert_eq!(shape[1], vec![u.clone(), a.clone(), u.clone()]);
    assert_eq!(shape[2], vec![u.clone(), a.clone(), u.clone(), a.clone(), u.clone()]);
    assert_eq!(shape[3], vec![u.clone()], "a new conversation after three turns");
    assert_eq!(shape[4], vec![u.clone(), a.clone(), u.clone()]);
    assert_eq!(shape[5], vec![u.clone()], "the failed turn left no reply: a new conversation");
    // The reply resent is the server's own text, and the earlier messages are resent as they were.
    assert_eq!(bodies[1]["messages"][1]["content"], " tok tok tok");
    assert_eq!(bodies[2]["messages"].as_array().unwrap()[..3], bodies[1]["messages"].as_array().unwrap()[..]);
    assert_ne!(bodies[1]["messages"][0]["content"], bodies[1]["messages"][2]["content"], "each turn a new user message");

    let csv_text = c.get(caplab.api(&format!("runs/{id}/requests.csv"))).send().await.unwrap().text().await.unwrap();
    let rows = rows(&csv_text);
    let turns: Vec<u32> = rows.iter().map(|r| r.1).collect();
    assert_eq!(turns, vec![1, 2, 3, 1, 2, 1]);
    // The think time passes between a reply and the next turn's scheduled time (not in its latency).
    for pair in [(0, 1), (1, 2), (3, 4)] {
        let (before, next) = (&rows[pair.0], &rows[pair.1]);
        let gap = next.2 - (before.2 + before.3 / 1000.0);
        assert!(gap >= 0.195, "turn {} waited {gap:.3} s after the reply before it", next.1);
    }
    assert!(rows[3].2 - (rows[2].2 + rows[2].3 / 1000.0) < 0.15, "a new conversation does not wait a think time");

    // TTFT per turn: turn 1 three times, turn 2 once (the other failed), turn 3 once.
    let by_turn: Vec<(u32, u32)> = cell.by_turn.iter().map(|t| (t.turn, t.requests)).collect();
    assert_eq!(by_turn, vec![(1, 3), (2, 1), (3, 1)]);
    assert!(cell.by_turn.iter().all(|t| t.ttft.p50.is_some()));
    assert!(cell.notes.iter().any(|n| n.starts_with("TTFT by turn")), "{:?}", cell.notes);
}

#[tokio::test]
async fn conversations_are_refused_where_they_cannot_run() {
    let caplab = Caplab::start(&[]).await.unwrap();
    let c = caplab_tests::client();
    for (spec, field) in [
        (json!({"workload": "batch", "turns": 3}), "turns"),
        (json!({"workload": "chat", "mode": "rate", "rate": [2.0], "turns": 3}), "turns"),
        (json!({"workload": "chat", "think_time_s": 1.0}), "think_time_s"),
        (json!({"workload": "chat", "turns": 0}), "turns"),
    ] {
        let resp = c.post(caplab.api("runs")).json(&spec).send().await.unwrap();
        assert_eq!(resp.status(), 422, "{spec}");
        let body: Value = resp.json().await.unwrap();
        assert!(body["fields"].as_array().unwrap().iter().any(|f| f["field"] == field), "{spec}: {body}");
    }
}

/// On the built-in simulator: the history grows the prompt turn over turn, as the server counts it.
#[tokio::test]
async fn later_turns_carry_longer_prompts() {
    let caplab = Caplab::start(&[]).await.unwrap();
    let c = caplab_tests::client();
    let spec = json!({"workload": "chat", "concurrency": [4], "max_new_tokens": [16], "requests": 12, "turns": 3});
    let id = start_run(&c, &caplab, spec).await.unwrap();
    let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(60)).await.unwrap();
    let turns = &view.cells[0].by_turn;
    assert_eq!(turns.iter().map(|t| (t.turn, t.requests)).collect::<Vec<_>>(), vec![(1, 4), (2, 4), (3, 4)]);
    let mean = |i: usize| turns[i].prompt_tokens_mean.unwrap();
    assert!(mean(1) > mean(0) + 16.0 && mean(2) > mean(1) + 16.0, "each turn adds a reply of 16 tokens and a prompt: {turns:?}");
}
