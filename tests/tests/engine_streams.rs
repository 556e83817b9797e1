//! Streams of each engine family (tests/fixtures/: vLLM and transformers serve recorded from real
//! servers, SGLang, TGI, llama.cpp and Ollama built from their source, see SOURCES.md), replayed
//! byte for byte by a real HTTP server and measured by caplab's real request path.

use std::time::Duration;

use caplab::engine::http::{parse_uri, LoadClient};
use caplab::engine::request::{execute, Call, LiveCounters, Worker};
use caplab_shared::{ErrorClass, RequestSample};
use caplab_tests::faults::replay;
use tokio_util::sync::CancellationToken;

async fn measure(body: &'static [u8], usage_required: bool) -> RequestSample {
    let uri = parse_uri(&format!("{}/v1/chat/completions", replay(body).await));
    let (live, client) = (LiveCounters::default(), LoadClient::new());
    let call = Call { client: &client, uri: &uri, timeout: Duration::from_secs(10), live: &live, usage_required, auth: None, redactor: &caplab::secrets::Redactor::default() };
    execute(&call, &mut Worker::new(&CancellationToken::new()), bytes::Bytes::from_static(b"{}"), tokio::time::Instant::now()).await
}

/// (fixture, text events, completion tokens, ends with [DONE])
const ENGINES: &[(&str, &[u8], u32, u32, bool)] = &[
    ("vLLM 0.32 chat", include_bytes!("../fixtures/vllm_chat_stream.txt"), 9, 10, true),
    ("vLLM 0.32 completions", include_bytes!("../fixtures/vllm_completions_stream.txt"), 12, 12, true),
    ("transformers serve 5.17 chat", include_bytes!("../fixtures/transformers_serve_chat_stream.txt"), 5, 5, false),
    ("transformers serve 5.19 chat (CPU)", include_bytes!("../fixtures/transformers_serve_5_19_cpu_chat_stream.txt"), 6, 6, false),
    ("transformers serve 5.17 completions", include_bytes!("../fixtures/transformers_serve_completions_stream.txt"), 5, 5, false),
    ("transformers serve 5.17 chat, usage not asked", include_bytes!("../fixtures/transformers_serve_chat_stream_no_include_usage.txt"), 5, 5, false),
    ("SGLang chat", include_bytes!("../fixtures/sglang_chat_stream.txt"), 4, 4, true),
    ("TGI chat", include_bytes!("../fixtures/tgi_chat_stream.txt"), 4, 4, true),
    ("llama.cpp server chat", include_bytes!("../fixtures/llamacpp_chat_stream.txt"), 4, 4, true),
    ("Ollama chat", include_bytes!("../fixtures/ollama_chat_stream.txt"), 4, 4, true),
];

#[tokio::test]
async fn every_engine_family_stream_is_complete_with_exact_tokens() {
    for &(name, body, events, tokens, done) in ENGINES {
        let s = measure(body, true).await;
        assert_eq!(s.error, None, "{name}: {:?}", s.error_message);
        assert_eq!(s.events, events, "{name}: text-bearing events (role-only and empty chunks do not count)");
        assert_eq!(s.completion_tokens, Some(tokens), "{name}: tokens from usage");
        assert_eq!(s.done_marker, done, "{name}: [DONE] recorded as sent or not");
        assert!(s.finish_reason.is_some(), "{name}");
        assert!(s.ttft_ms.is_some(), "{name}");
    }
}

/// A stream cut before its finish reason is broken, whichever engine sent it.
#[tokio::test]
async fn a_stream_cut_before_its_finish_reason_is_broken() {
    for &(name, body, ..) in ENGINES {
        let text = std::str::from_utf8(body).unwrap();
        let cut = text.find("finish_reason\":\"").map(|i| text[..i].rfind("data:").unwrap()).unwrap();
        let s = measure(Box::leak(text.as_bytes()[..cut].to_vec().into_boxed_slice()), true).await;
        assert_eq!(s.error, Some(ErrorClass::Stream), "{name}: {:?}", s.error_message);
        assert!(s.error_message.as_deref().unwrap().contains("without a finish_reason"), "{name}");
    }
}

/// A body that ends inside an event (a JSON chunk cut in half) is a broken stream too, not a
/// malformed one, even after the finish reason (the usage chunk cut off).
#[tokio::test]
async fn a_body_cut_inside_an_event_is_a_broken_stream() {
    let text = std::str::from_utf8(include_bytes!("../fixtures/vllm_completions_stream.txt")).unwrap();
    let usage = text.find("\"usage\":{").unwrap();
    let s = measure(Box::leak(text.as_bytes()[..usage].to_vec().into_boxed_slice()), true).await;
    assert_eq!(s.error, Some(ErrorClass::Stream), "{:?}", s.error_message);
    assert!(s.error_message.as_deref().unwrap().starts_with("the stream ended in the middle of an event"), "{:?}", s.error_message);
}
