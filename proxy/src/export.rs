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
    /// The cell's synthetic prompt length (the `input_tokens` axis), when it has one.
    #[serde(default)]
    pub input_tokens: Option<u32>,
    pub request: u32,
    /// A conversation's turn (1 = first), when the run held conversations.
    #[serde(default)]
    pub turn: Option<u32>,
    pub warmup: bool,
    pub scheduled_s: f64,
    pub queue_ms: f64,
    pub ttft_ms: Option<f64>,
    pub e2e_ms: f64,
    pub tpot_ms: Option<f64>,
    pub itl_mean_ms: Option<f64>,
    pub itl_max_ms: Option<f64>,
    pub events: u32,
    /// Synthetic prompts: the prompt tokens the request was made to have (`prompt_tokens` is
    /// what the server counted).
    #[serde(default)]
    pub prompt_tokens_requested: Option<u32>,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    pub finish_reason: Option<String>,
    pub http_status: Option<u16>,
    pub error_class: Option<ErrorClass>,
    pub error_message: Option<String>,
    #[serde(default)]
    pub done_marker: bool,
}

fn r2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
fn r3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
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
            concurrency: cell.as_ref().map_or(0, |c| c.load.concurrency()),
            max_new_tokens: cell.as_ref().map_or(0, |c| c.max_new_tokens),
            rate: cell.as_ref().and_then(|c| c.load.rate()),
            input_tokens: cell.and_then(|c| c.input_tokens),
            request: s.index,
            turn: s.turn,
            warmup: s.warmup,
            scheduled_s: (s.scheduled_s * 1e6).round() / 1e6,
            queue_ms: r3(s.queue_ms),
            ttft_ms: s.ttft_ms.map(r3),
            e2e_ms: r3(s.e2e_ms),
            tpot_ms: s.tpot_ms.map(r3),
            itl_mean_ms: s.itl_mean_ms.map(r3),
            itl_max_ms: s.itl_max_ms.map(r3),
            events: s.events,
            prompt_tokens_requested: s.prompt_tokens_requested,
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
            turn: self.turn,
            warmup: self.warmup,
            scheduled_s: self.scheduled_s,
            queue_ms: self.queue_ms,
            ttft_ms: self.ttft_ms,
            e2e_ms: self.e2e_ms,
            tpot_ms: self.tpot_ms,
            itl_mean_ms: self.itl_mean_ms,
            itl_max_ms: self.itl_max_ms,
            events: self.events,
            prompt_tokens_requested: self.prompt_tokens_requested,
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

/// The run's OOM surface as a standalone SVG (its whole grid: cells not run are grey).
pub fn surface_svg(view: &caplab_shared::RunView) -> String {
    caplab_shared::surface::svg_of(view)
}

/// The run's throughput–latency frontier as a standalone SVG.
pub fn frontier_svg(view: &caplab_shared::RunView) -> String {
    caplab_shared::frontier::svg(&view.cells, &view.chart_title())
}

/// `summary.csv`: the header and one row per cell, both from `summary_columns`.
pub fn summary_csv(info: &RunInfo, cells: &[CellResult]) -> std::io::Result<Vec<u8>> {
    let columns = summary_columns();
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(columns.iter().map(|c| c.name.as_str()))?;
    for cell in cells {
        w.write_record(columns.iter().map(|c| (c.value)(info, cell).to_string()))?;
    }
    w.into_inner().map_err(|e| std::io::Error::other(e.to_string()))
}

/// One value of the summary, as it is written.
enum Value {
    Text(String),
    Num(Option<f64>),
    Int(u64),
    Bool(bool),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Text(t) => f.write_str(t),
            Value::Num(Some(v)) => write!(f, "{v:?}"),
            Value::Num(None) => Ok(()),
            Value::Int(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
        }
    }
}

/// A column of `summary.csv`: its name and how a cell's value is read.
struct Column {
    name: String,
    value: Box<dyn Fn(&RunInfo, &CellResult) -> Value>,
}

fn col(name: impl Into<String>, value: impl Fn(&RunInfo, &CellResult) -> Value + 'static) -> Column {
    Column { name: name.into(), value: Box::new(value) }
}

fn num(v: Option<f64>, round: fn(f64) -> f64) -> Value {
    Value::Num(v.map(round))
}

/// Every column of `summary.csv`, in order: the notes' eight first, then the rest. The error
/// classes, the latency distributions and the server and GPU statistics are looped over, so a
/// new class or statistic is one line here (the README's column table says what each means).
fn summary_columns() -> Vec<Column> {
    use caplab_shared::{Dist, GpuCellStats, ServerCellStats};
    let mut cols = vec![
        col("workload", |i, _| Value::Text(i.spec.workload.as_str().into())),
        col("gpu", |i, _| Value::Text(i.spec.gpu.clone())),
        col("concurrency", |_, c| Value::Int(c.concurrency.into())),
        col("max_new_tokens", |_, c| Value::Int(c.max_new_tokens.into())),
        col("total_time_s", |_, c| num(Some(c.total_time_s), r3)),
        col("throughput_tok_s", |_, c| num(Some(c.output_tok_s), r2)),
        col("p50_latency_ms", |_, c| num(c.e2e.p50, r2)),
        col("p95_latency_ms", |_, c| num(c.e2e.p95, r2)),
        col("simulated", |i, _| Value::Bool(i.target.simulated)),
        col("model", |i, _| Value::Text(i.spec.model.clone())),
        col("mode", |i, _| Value::Text(i.spec.mode.as_str().into())),
        col("rate", |_, c| Value::Num(c.rate)),
        col("input_tokens", |_, c| Value::Text(c.input_tokens.map_or(String::new(), |n| n.to_string()))),
        col("requests_ok", |_, c| Value::Int(c.requests_ok.into())),
        col("requests_failed", |_, c| Value::Int(c.requests_failed.into())),
        col("requests_cancelled", |_, c| Value::Int(c.requests_cancelled.into())),
        col("partial", |_, c| Value::Bool(c.partial)),
        col("warmup_requests", |_, c| Value::Int(c.warmup_requests.into())),
    ];
    for class in ErrorClass::ALL {
        cols.push(col(format!("errors_{}", class.as_str()), move |_, c| Value::Int(c.errors.get(&class).copied().unwrap_or(0).into())));
    }
    cols.extend([
        col("requests_per_s", |_, c| num(Some(c.requests_per_s), r3)),
        col("total_tok_s", |_, c| num(Some(c.total_tok_s), r2)),
        col("prompt_tokens", |_, c| Value::Int(c.prompt_tokens)),
        col("completion_tokens", |_, c| Value::Int(c.completion_tokens)),
    ]);
    type Stat = (&'static str, fn(&Dist) -> Option<f64>);
    const MEAN: Stat = ("mean", |d| d.mean);
    const P50: Stat = ("p50", |d| d.p50);
    const P90: Stat = ("p90", |d| d.p90);
    const P95: Stat = ("p95", |d| d.p95);
    const P99: Stat = ("p99", |d| d.p99);
    const MAX: Stat = ("max", |d| d.max);
    let dists: [(&str, fn(&CellResult) -> &Dist, &[Stat]); 5] = [
        ("ttft", |c| &c.ttft, &[MEAN, P50, P90, P95, P99, MAX]),
        ("itl", |c| &c.itl, &[MEAN, P50, P90, P95, P99, MAX]),
        ("tpot", |c| &c.tpot, &[MEAN, P50, P90, P95, P99, MAX]),
        // e2e p50/p95 are the notes' p50_latency_ms / p95_latency_ms above.
        ("e2e", |c| &c.e2e, &[MEAN, P90, P99, MAX]),
        ("queue", |c| &c.queue, &[P50, P95]),
    ];
    for (dist, of, stats) in dists {
        for &(stat, read) in stats {
            cols.push(col(format!("{dist}_{stat}_ms"), move |_, c| num(read(of(c)), r2)));
        }
    }
    cols.extend([
        col("peak_concurrency", |_, c| Value::Int(c.peak_concurrency.into())),
        col("steady_start_s", |_, c| num(Some(c.steady_start_s), r3)),
        col("steady_end_s", |_, c| num(Some(c.steady_end_s), r3)),
        col("slo_e2e_ms", |_, c| Value::Num(c.slo.e2e_ms)),
        col("slo_ttft_ms", |_, c| Value::Num(c.slo.ttft_ms)),
        col("slo_tpot_ms", |_, c| Value::Num(c.slo.tpot_ms)),
        col("slo_pass", |_, c| Value::Bool(c.slo_pass)),
        col("slo_state", |_, c| Value::Text(c.slo_state().as_str().into())),
        col("slo_missed", |_, c| Value::Text(c.slo_missed.join("; "))),
        col("good_requests", |_, c| Value::Int(c.good_requests.into())),
        col("goodput_rps", |_, c| num(Some(c.goodput_rps), r3)),
        col("short_outputs", |_, c| Value::Int(c.short_outputs.into())),
        col("tokens_unknown", |_, c| Value::Int(c.tokens_unknown.into())),
        col("done_markers", |_, c| Value::Int(c.done_markers.into())),
        col("outcome", |_, c| Value::Text(caplab_shared::surface::Outcome::of(c).as_str().into())),
        col("outcome_cause", |_, c| Value::Text(caplab_shared::surface::cause(c))),
    ]);
    // The server's side, from its /metrics (empty where the target has none).
    let server: [(&str, fn(&ServerCellStats) -> Option<f64>); 12] = [
        ("max_kv_usage", |s| s.max_kv_usage),
        ("max_waiting", |s| s.max_waiting),
        ("max_running", |s| s.max_running),
        ("preemptions", |s| s.preemptions),
        ("ttft_p50_ms", |s| s.ttft_p50_ms),
        ("ttft_p95_ms", |s| s.ttft_p95_ms),
        ("e2e_p50_ms", |s| s.e2e_p50_ms),
        ("e2e_p95_ms", |s| s.e2e_p95_ms),
        ("queue_p50_ms", |s| s.queue_p50_ms),
        ("queue_p95_ms", |s| s.queue_p95_ms),
        ("prefix_cache_hit_rate", |s| s.prefix_cache_hit_rate),
        ("requests", |s| s.requests),
    ];
    for (name, read) in server {
        cols.push(col(format!("server_{name}"), move |_, c| num(c.server.as_ref().and_then(read), r3)));
    }
    // Client minus server: what the network, the proxy and caplab add to the server's own view.
    let client_minus_server: [(&str, fn(&CellResult) -> Option<f64>, fn(&ServerCellStats) -> Option<f64>); 4] = [
        ("ttft_p50", |c| c.ttft.p50, |s| s.ttft_p50_ms),
        ("ttft_p95", |c| c.ttft.p95, |s| s.ttft_p95_ms),
        ("e2e_p50", |c| c.e2e.p50, |s| s.e2e_p50_ms),
        ("e2e_p95", |c| c.e2e.p95, |s| s.e2e_p95_ms),
    ];
    for (name, client, srv) in client_minus_server {
        cols.push(col(format!("{name}_client_minus_server_ms"), move |_, c| {
            num(client(c).zip(c.server.as_ref().and_then(srv)).map(|(a, b)| a - b), r2)
        }));
    }
    let gpu: [(&str, fn(&GpuCellStats) -> Option<f64>); 5] = [
        ("max_memory_used_mib", |g| g.max_memory_used_mib),
        ("memory_total_mib", |g| g.memory_total_mib),
        ("mean_util_pct", |g| g.mean_util_pct),
        ("max_power_w", |g| g.max_power_w),
        ("max_temp_c", |g| g.max_temp_c),
    ];
    for (name, read) in gpu {
        cols.push(col(format!("gpu_{name}"), move |_, c| num(c.gpu.as_ref().and_then(read), r2)));
    }
    cols.push(col("notes", |_, c| Value::Text(c.notes.join("; "))));
    cols
}

pub fn read_requests_csv(bytes: &[u8]) -> Result<Vec<RequestSample>, csv::Error> {
    csv::Reader::from_reader(bytes).deserialize::<RequestRow>().map(|r| r.map(RequestRow::into_sample)).collect()
}

/// The rows of a journal that may end in a torn write (caplab killed mid-append): every whole
/// row up to the first that cannot be read, and how many lines were dropped after it.
pub fn read_journal(bytes: &[u8]) -> (Vec<RequestSample>, usize) {
    let mut rows = Vec::new();
    let mut reader = csv::Reader::from_reader(bytes);
    let mut records = reader.deserialize::<RequestRow>();
    for r in records.by_ref() {
        match r {
            Ok(row) => rows.push(row.into_sample()),
            Err(_) => {
                let rest = records.count() + 1;
                return (rows, rest);
            }
        }
    }
    (rows, 0)
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
            headline: None,
            imported_from: None,
            shared: false,
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
        assert!(text.starts_with("run_id,workload,gpu,simulated,cell,concurrency,max_new_tokens,rate,input_tokens,request,"), "{text}");
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
