//! One measured request: what the engine records and the per-request CSV holds.

use serde::{Deserialize, Serialize};

/// Why a request failed. Failed requests are counted per class and kept out of
/// every latency and throughput statistic.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// No connection could be made, or it broke before a response status arrived.
    Connect,
    /// The request ran past the experiment's `timeout_s` (a stalled stream included).
    Timeout,
    /// The prompt or `max_tokens` exceeds the model's context (HTTP 400 from vLLM).
    ContextLength,
    /// The server does not serve the requested model (HTTP 404).
    UnknownModel,
    /// Any other 4xx: the server refused the request as malformed or unsupported.
    BadRequest,
    /// A 5xx status.
    Server,
    /// The body broke off mid-stream or ended before a finish reason, or the server sent an
    /// error event inside the stream.
    Stream,
    /// The response was not what an OpenAI-compatible server sends (a chunk that is not JSON, no
    /// usage from a server known to send it, `[DONE]` without a finish reason).
    Protocol,
    /// The run was stopped while this request was in flight.
    Cancelled,
    /// The target answered 429 Too Many Requests (its `Retry-After`, if any, is in the message).
    RateLimited,
    /// caplab's own resources ran out (e.g. too many open files): not the target's fault.
    Client,
    /// The server ran out of memory (a 5xx or stream error saying "out of memory", as PyTorch's
    /// CUDA allocator words it): the edge of the OOM surface.
    OutOfMemory,
    /// The target answered with a redirect (3xx). caplab follows none: a redirect could lead
    /// its load to an address the operator did not allow (the Location is logged for the operator).
    Redirect,
    /// The target refused caplab's credentials (401 or 403): a wrong or missing API key.
    Unauthorized,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 14] = [
        ErrorClass::Connect,
        ErrorClass::Timeout,
        ErrorClass::ContextLength,
        ErrorClass::UnknownModel,
        ErrorClass::BadRequest,
        ErrorClass::Server,
        ErrorClass::Stream,
        ErrorClass::Protocol,
        ErrorClass::Cancelled,
        ErrorClass::RateLimited,
        ErrorClass::Client,
        ErrorClass::OutOfMemory,
        ErrorClass::Redirect,
        ErrorClass::Unauthorized,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::ContextLength => "context_length",
            ErrorClass::UnknownModel => "unknown_model",
            ErrorClass::BadRequest => "bad_request",
            ErrorClass::Server => "server",
            ErrorClass::Stream => "stream",
            ErrorClass::Protocol => "protocol",
            ErrorClass::Cancelled => "cancelled",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::Client => "client",
            ErrorClass::OutOfMemory => "out_of_memory",
            ErrorClass::Redirect => "redirect",
            ErrorClass::Unauthorized => "unauthorized",
        }
    }
}

/// Everything measured about one request. Times are milliseconds; every latency
/// counts from the request's *scheduled* time, so client-side queueing is included
/// in latency and also reported on its own as `queue_ms`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct RequestSample {
    /// Grid cell index.
    pub cell: u32,
    /// Request number within the cell, in schedule order (warm-up requests first).
    pub index: u32,
    /// Warm-up requests are recorded but left out of every statistic.
    pub warmup: bool,
    /// A conversation's turn this request was (1 = its first; the spec's `turns`); None:
    /// single requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<u32>,
    /// Scheduled send time, seconds since the cell started.
    pub scheduled_s: f64,
    /// Time the request waited client-side between its scheduled and actual send.
    pub queue_ms: f64,
    /// Scheduled time → first event carrying generated text (role-only and empty chunks do not count).
    pub ttft_ms: Option<f64>,
    /// Scheduled time → end of the response.
    pub e2e_ms: f64,
    /// (e2e − ttft) / (completion_tokens − 1): mean time per output token after the first.
    pub tpot_ms: Option<f64>,
    /// Mean gap between consecutive text-bearing events after the first.
    pub itl_mean_ms: Option<f64>,
    /// Largest such gap (a stall shows here).
    pub itl_max_ms: Option<f64>,
    /// Text-bearing stream events received (vLLM may pack several tokens into one event).
    pub events: u32,
    /// From the server's `usage`.
    pub prompt_tokens: Option<u32>,
    /// The prompt tokens the request was made to have (synthetic prompts of the `input_tokens`
    /// axis); beside `prompt_tokens`, what the server counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_requested: Option<u32>,
    /// From the server's `usage`: the only token count caplab trusts.
    pub completion_tokens: Option<u32>,
    pub finish_reason: Option<String>,
    /// HTTP status, when a response arrived.
    pub http_status: Option<u16>,
    pub error: Option<ErrorClass>,
    /// The server's or the client's own words about the failure.
    pub error_message: Option<String>,
    /// The stream ended with `data: [DONE]`. Recorded about the server, never an error: a
    /// stream is complete once a chunk carried a finish reason (`transformers serve` sends no `[DONE]`).
    #[serde(default)]
    pub done_marker: bool,
    /// Every gap between consecutive text-bearing events (ms); kept in memory for exact
    /// ITL percentiles, not written per request.
    #[serde(skip)]
    pub itl_gaps_ms: Vec<f32>,
}

impl RequestSample {
    /// Counts toward latency and throughput statistics.
    pub fn is_measured_ok(&self) -> bool {
        !self.warmup && self.error.is_none()
    }

    /// Seconds since the cell started at which the request was actually sent.
    pub fn sent_s(&self) -> f64 {
        self.scheduled_s + self.queue_ms / 1000.0
    }

    /// Seconds since the cell started at which the response ended.
    pub fn end_s(&self) -> f64 {
        self.scheduled_s + self.e2e_ms / 1000.0
    }
}
