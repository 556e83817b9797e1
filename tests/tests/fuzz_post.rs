//! Thousands of random and malformed bodies to every POST route of the real binary: each gets a
//! clear 4xx (or starts a run, when it happens to be a valid experiment), never a 5xx, a panic or
//! a hang, and the server keeps serving.

use std::time::Duration;

use caplab::server::API_ROUTES;
use caplab_tests::{client, Caplab, FAST_SIM};
use proptest::prelude::*;
use serde_json::Value;

const FIELDS: &[&str] = &[
    "name", "workload", "target", "model", "gpu", "mode", "concurrency", "max_new_tokens", "rate", "burstiness", "max_in_flight",
    "requests", "repeat", "requests_per_worker", "warmup", "timeout_s", "ignore_eos", "slo", "seed", "max_error_rate", "error_window",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()).prop_map(Value::from),
        prop_oneof![Just("chat".to_string()), Just("batch".to_string()), Just("rate".to_string()), ".{0,12}"].prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,8}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A body: raw bytes, text, any JSON, or an experiment with random values in its real fields.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let spec_like = prop::collection::btree_map(prop::sample::select(FIELDS), value(), 0..8)
        .prop_map(|m| serde_json::to_vec(&m.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<serde_json::Map<_, _>>()).unwrap());
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        ".{0,64}".prop_map(String::into_bytes),
        value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        spec_like,
    ]
}

#[test]
fn random_bodies_to_every_post_route_get_4xx_never_5xx() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let caplab = rt.block_on(Caplab::start(FAST_SIM)).unwrap();
    let c = client();
    let posts: Vec<String> = API_ROUTES
        .iter()
        .filter(|(_, methods)| methods.contains(&"POST"))
        .map(|(path, _)| format!("{}{}", caplab.url, path.replace("{id}", "20261129-000000-0000").replace("{*rest}", "x")))
        .collect();
    assert!(posts.len() >= 4, "{posts:?}");
    let config = ProptestConfig { cases: 2500, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(route in prop::sample::select(posts.clone()), bytes in body())| {
        let status = rt.block_on(async {
            let req = c.post(&route).header("content-type", "application/json").body(bytes.clone()).timeout(Duration::from_secs(10));
            req.send().await.map(|r| r.status().as_u16())
        });
        let status = status.map_err(|e| TestCaseError::fail(format!("no answer (a hang or a crash?): {e}")))?;
        prop_assert!(status < 500, "{route} answered {status} to {:?}", String::from_utf8_lossy(&bytes));
        prop_assert!((400..500).contains(&status) || status == 201 || status == 200, "{route} answered {status}");
    });
    // Still serving, and still answering a good request.
    let ok = rt.block_on(async { c.get(caplab.api("runs")).send().await.map(|r| r.status().as_u16()) });
    assert_eq!(ok.unwrap(), 200);
}
