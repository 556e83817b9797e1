//! The CSV files: one row per request, and one summary row per grid cell that
//! starts with the notes' columns. Column meanings are documented in the README.

use caplab_shared::{CellResult, ErrorClass, RequestSample, RunInfo};
use serde::{Deserialize, Serialize};

/// One request, as written to `requests.csv`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RequestRow {
    pub run_id: String,
    pub workload: String,
    pub gpu: String,
    pub simulated: bool,
    pub cell: u32,
    pub concurrency: u32,
    pub max_new_tokens: u32,
    pub rate: Option<f64>,
    pub request: u32,
    pub warmup: bool,
    pub scheduled_s: f64,
    pub queue_ms: f64,
    pub ttft_ms: Option<f64>,
    pub e2e_ms: f64,
    pub tpot_ms: Option<f64>,
    pub itl_mean_ms: Option<f64>,
    pub itl_max_ms: Option<f64>,
    pub events: u32,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    pub finish_reason: Option<String>,
    pub http_status: Option<u16>,
    pub error_class: Option<ErrorClass>,
    pub error_message: Option<String>,
    #[serde(default)]
    pub done_marker: bool,
}

/// One grid cell, as written to `summary.csv`: the notes' eight columns first.
#[derive(Serialize, Debug, Clone)]
pub struct SummaryRow {
    pub workload: String,
    pub gpu: String,
    pub concurrency: u32,
    pub max_new_tokens: u32,
    pub total_time_s: f64,
    pub throughput_tok_s: f64,
    pub p50_latency_ms: Option<f64>,
    pub p95_latency_ms: Option<f64>,
    pub simulated: bool,
    pub model: String,
    pub mode: String,
    pub rate: Option<f64>,
    pub requests_ok: u32,
    pub requests_failed: u32,
    pub requests_cancelled: u32,
    pub partial: bool,
    pub warmup_requests: u32,
    pub errors_connect: u32,
    pub errors_timeout: u32,
    pub errors_context_length: u32,
    pub errors_unknown_model: u32,
    pub errors_bad_request: u32,
    pub errors_server: u32,
    pub errors_stream: u32,
    pub errors_protocol: u32,
    pub errors_cancelled: u32,
    pub errors_rate_limited: u32,
    pub errors_client: u32,
    pub requests_per_s: f64,
    pub total_tok_s: f64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub ttft_mean_ms: Option<f64>,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p90_ms: Option<f64>,
    pub ttft_p95_ms: Option<f64>,
    pub ttft_p99_ms: Option<f64>,
    pub ttft_max_ms: Option<f64>,
    pub itl_mean_ms: Option<f64>,
    pub itl_p50_ms: Option<f64>,
    pub itl_p90_ms: Option<f64>,
    pub itl_p95_ms: Option<f64>,
    pub itl_p99_ms: Option<f64>,
    pub itl_max_ms: Option<f64>,
    pub tpot_mean_ms: Option<f64>,
    pub tpot_p50_ms: Option<f64>,
    pub tpot_p90_ms: Option<f64>,
    pub tpot_p95_ms: Option<f64>,
    pub tpot_p99_ms: Option<f64>,
    pub tpot_max_ms: Option<f64>,
    pub e2e_mean_ms: Option<f64>,
    pub e2e_p90_ms: Option<f64>,
    pub e2e_p99_ms: Option<f64>,
    pub e2e_max_ms: Option<f64>,
    pub queue_p50_ms: Option<f64>,
    pub queue_p95_ms: Option<f64>,
    pub peak_concurrency: u32,
    pub steady_start_s: f64,
    pub steady_end_s: f64,
    pub slo_e2e_ms: Option<f64>,
    pub slo_ttft_ms: Option<f64>,
    pub slo_tpot_ms: Option<f64>,
    pub slo_pass: bool,
    pub slo_missed: String,
    pub good_requests: u32,
    pub goodput_rps: f64,
    pub short_outputs: u32,
    pub tokens_unknown: u32,
    pub done_markers: u32,
    pub notes: String,
}

fn r2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
fn r2o(v: Option<f64>) -> Option<f64> {
    v.map(r2)
}
fn r3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

impl SummaryRow {
    pub fn new(info: &RunInfo, c: &CellResult) -> SummaryRow {
        let err = |class| c.errors.get(&class).copied().unwrap_or(0);
        SummaryRow {
            workload: info.spec.workload.as_str().into(),
            gpu: info.spec.gpu.clone(),
            concurrency: c.concurrency,
            max_new_tokens: c.max_new_tokens,
            total_time_s: r3(c.total_time_s),
            throughput_tok_s: r2(c.output_tok_s),
            p50_latency_ms: r2o(c.e2e.p50),
            p95_latency_ms: r2o(c.e2e.p95),
            simulated: info.target.simulated,
            model: info.spec.model.clone(),
            mode: info.spec.mode.as_str().into(),
            rate: c.rate,
            requests_ok: c.requests_ok,
            requests_failed: c.requests_failed,
            requests_cancelled: c.requests_cancelled,
            partial: c.partial,
            warmup_requests: c.warmup_requests,
            errors_connect: err(ErrorClass::Connect),
            errors_timeout: err(ErrorClass::Timeout),
            errors_context_length: err(ErrorClass::ContextLength),
            errors_unknown_model: err(ErrorClass::UnknownModel),
            errors_bad_request: err(ErrorClass::BadRequest),
            errors_server: err(ErrorClass::Server),
            errors_stream: err(ErrorClass::Stream),
            errors_protocol: err(ErrorClass::Protocol),
            errors_cancelled: err(ErrorClass::Cancelled),
            errors_rate_limited: err(ErrorClass::RateLimited),
            errors_client: err(ErrorClass::Client),
            requests_per_s: r3(c.requests_per_s),
            total_tok_s: r2(c.total_tok_s),
            prompt_tokens: c.prompt_tokens,
            completion_tokens: c.completion_tokens,
            ttft_mean_ms: r2o(c.ttft.mean),
            ttft_p50_ms: r2o(c.ttft.p50),
            ttft_p90_ms: r2o(c.ttft.p90),
            ttft_p95_ms: r2o(c.ttft.p95),
            ttft_p99_ms: r2o(c.ttft.p99),
            ttft_max_ms: r2o(c.ttft.max),
            itl_mean_ms: r2o(c.itl.mean),
            itl_p50_ms: r2o(c.itl.p50),
            itl_p90_ms: r2o(c.itl.p90),
            itl_p95_ms: r2o(c.itl.p95),
            itl_p99_ms: r2o(c.itl.p99),
            itl_max_ms: r2o(c.itl.max),
            tpot_mean_ms: r2o(c.tpot.mean),
            tpot_p50_ms: r2o(c.tpot.p50),
            tpot_p90_ms: r2o(c.tpot.p90),
            tpot_p95_ms: r2o(c.tpot.p95),
            tpot_p99_ms: r2o(c.tpot.p99),
            tpot_max_ms: r2o(c.tpot.max),
            e2e_mean_ms: r2o(c.e2e.mean),
            e2e_p90_ms: r2o(c.e2e.p90),
            e2e_p99_ms: r2o(c.e2e.p99),
            e2e_max_ms: r2o(c.e2e.max),
            queue_p50_ms: r2o(c.queue.p50),
            queue_p95_ms: r2o(c.queue.p95),
            peak_concurrency: c.peak_concurrency,
            steady_start_s: r3(c.steady_start_s),
            steady_end_s: r3(c.steady_end_s),
            slo_e2e_ms: c.slo.e2e_ms,
            slo_ttft_ms: c.slo.ttft_ms,
            slo_tpot_ms: c.slo.tpot_ms,
            slo_pass: c.slo_pass,
            slo_missed: c.slo_missed.join("; "),
            good_requests: c.good_requests,
            goodput_rps: r3(c.goodput_rps),
            short_outputs: c.short_outputs,
            tokens_unknown: c.tokens_unknown,
            done_markers: c.done_markers,
            notes: c.notes.join("; "),
        }
    }
}

impl RequestRow {
    pub fn new(info: &RunInfo, s: &RequestSample) -> RequestRow {
        let cell = info.spec.cells().into_iter().nth(s.cell as usize);
        RequestRow {
            run_id: info.id.clone(),
            workload: info.spec.workload.as_str().into(),
            gpu: info.spec.gpu.clone(),
            simulated: info.target.simulated,
            cell: s.cell,
            concurrency: cell.as_ref().map_or(0, |c| c.concurrency),
            max_new_tokens: cell.as_ref().map_or(0, |c| c.max_new_tokens),
            rate: cell.and_then(|c| c.rate),
            request: s.index,
            warmup: s.warmup,
            scheduled_s: (s.scheduled_s * 1e6).round() / 1e6,
            queue_ms: r3(s.queue_ms),
            ttft_ms: s.ttft_ms.map(r3),
            e2e_ms: r3(s.e2e_ms),
            tpot_ms: s.tpot_ms.map(r3),
            itl_mean_ms: s.itl_mean_ms.map(r3),
            itl_max_ms: s.itl_max_ms.map(r3),
            events: s.events,
            prompt_tokens: s.prompt_tokens,
            completion_tokens: s.completion_tokens,
            finish_reason: s.finish_reason.clone(),
            http_status: s.http_status,
            error_class: s.error,
            error_message: s.error_message.clone(),
            done_marker: s.done_marker,
        }
    }

    fn into_sample(self) -> RequestSample {
        RequestSample {
            cell: self.cell,
            index: self.request,
            warmup: self.warmup,
            scheduled_s: self.scheduled_s,
            queue_ms: self.queue_ms,
            ttft_ms: self.ttft_ms,
            e2e_ms: self.e2e_ms,
            tpot_ms: self.tpot_ms,
            itl_mean_ms: self.itl_mean_ms,
            itl_max_ms: self.itl_max_ms,
            events: self.events,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            finish_reason: self.finish_reason,
            http_status: self.http_status,
            error: self.error_class,
            error_message: self.error_message,
            done_marker: self.done_marker,
            itl_gaps_ms: Vec::new(),
        }
    }
}

/// Writes rows with a header; with no rows, writes the header `template` would have.
fn write_rows<T: Serialize>(rows: impl IntoIterator<Item = T>, template: T) -> std::io::Result<Vec<u8>> {
    let finish = |w: csv::Writer<Vec<u8>>| w.into_inner().map_err(|e| std::io::Error::other(e.to_string()));
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut any = false;
    for row in rows {
        w.serialize(row)?;
        any = true;
    }
    if any {
        return finish(w);
    }
    w.serialize(template)?;
    let with_template = finish(w)?;
    let header_len = with_template.iter().position(|&b| b == b'\n').map_or(with_template.len(), |i| i + 1);
    Ok(with_template[..header_len].to_vec())
}

/// The notes' columns, which `summary.csv` starts with.
pub const NOTES_COLUMNS: &[&str] =
    &["workload", "gpu", "concurrency", "max_new_tokens", "total_time_s", "throughput_tok_s", "p50_latency_ms", "p95_latency_ms"];

pub fn requests_csv(info: &RunInfo, samples: &[RequestSample]) -> std::io::Result<Vec<u8>> {
    write_rows(samples.iter().map(|s| RequestRow::new(info, s)), RequestRow::new(info, &RequestSample::default()))
}

/// The rows (no header) for `samples`, as appended to a `requests.csv`.
pub fn request_rows(info: &RunInfo, samples: &[RequestSample]) -> std::io::Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
    for s in samples {
        w.serialize(RequestRow::new(info, s))?;
    }
    w.into_inner().map_err(|e| std::io::Error::other(e.to_string()))
}

/// Appends rows (no header) for `samples` to an open `requests.csv` in one write.
pub fn append_requests(file: &mut std::fs::File, info: &RunInfo, samples: &[RequestSample]) -> std::io::Result<()> {
    use std::io::Write;
    file.write_all(&request_rows(info, samples)?)?;
    file.flush()
}

pub fn summary_csv(info: &RunInfo, cells: &[CellResult]) -> std::io::Result<Vec<u8>> {
    write_rows(cells.iter().map(|c| SummaryRow::new(info, c)), SummaryRow::new(info, &CellResult::default()))
}

pub fn read_requests_csv(bytes: &[u8]) -> Result<Vec<RequestSample>, csv::Error> {
    csv::Reader::from_reader(bytes).deserialize::<RequestRow>().map(|r| r.map(RequestRow::into_sample)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use caplab_shared::{ExperimentSpec, RunStatus, TargetInfo};

    fn info() -> RunInfo {
        RunInfo {
            id: "r".into(),
            spec: ExperimentSpec { gpu: "RTX, 16GB".into(), ..Default::default() },
            target: TargetInfo { simulated: true, ..Default::default() },
            status: RunStatus::Finished,
            started_unix_ms: 0,
            message: None,
            cells_total: 1,
            requests_total: 2,
        }
    }

    #[test]
    fn request_rows_round_trip_and_quote_commas() {
        let samples = vec![
            RequestSample { index: 0, e2e_ms: 12.5, ttft_ms: Some(3.0), completion_tokens: Some(256), ..Default::default() },
            RequestSample {
                index: 1,
                e2e_ms: 1.0,
                error: Some(ErrorClass::ContextLength),
                error_message: Some("HTTP 400: too long, \"really\"".into()),
                ..Default::default()
            },
        ];
        let bytes = requests_csv(&info(), &samples).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("run_id,workload,gpu,simulated,cell,concurrency,max_new_tokens,rate,request,"), "{text}");
        assert!(text.contains("\"RTX, 16GB\""));
        assert!(text.contains("context_length"));
        assert_eq!(read_requests_csv(&bytes).unwrap(), samples);
    }

    #[test]
    fn summary_starts_with_the_notes_columns() {
        let cell = CellResult { concurrency: 16, max_new_tokens: 256, output_tok_s: 1234.5678, ..Default::default() };
        let text = String::from_utf8(summary_csv(&info(), &[cell]).unwrap()).unwrap();
        let header = text.lines().next().unwrap();
        assert!(header.starts_with(&NOTES_COLUMNS.join(",")), "{header}");
        assert!(text.lines().nth(1).unwrap().starts_with("batch,\"RTX, 16GB\",16,256,0.0,1234.57,,,true"));
        let empty = String::from_utf8(summary_csv(&info(), &[]).unwrap()).unwrap();
        assert_eq!(empty, format!("{header}\n"));
        let no_requests = String::from_utf8(requests_csv(&info(), &[]).unwrap()).unwrap();
        assert_eq!(no_requests.lines().count(), 1);
    }
}
