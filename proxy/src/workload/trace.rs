//! Traces to replay: when each request arrived and how long its prompt and output were.
//! - Azure LLM inference trace CSV (Azure/AzurePublicDataset, `AzureLLMInferenceTrace_*.csv`):
//!   `TIMESTAMP,ContextTokens,GeneratedTokens`, the timestamp a date and time with fractional
//!   seconds (`2023-11-16 18:15:46.6805900`).
//! - Mooncake JSONL (kvcache-ai/Mooncake's traces): one `{"timestamp": ms, "input_length": n,
//!   "output_length": m, "hash_ids": [..]}` a line; equal hash ids are equal 512-token blocks of
//!   prompt, which the replay keeps equal (the prefix cache sees what it saw).

use serde_json::Value;

/// One recorded request.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TraceRequest {
    /// Seconds after the trace's first arrival.
    pub at_s: f64,
    pub input_tokens: u32,
    pub output_tokens: u32,
    /// Mooncake: the prompt's blocks (equal ids, equal text); empty: all its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hash_ids: Vec<u64>,
}

/// Tokens in one Mooncake block.
pub const MOONCAKE_BLOCK: u32 = 512;

/// Whether `text` looks like a trace caplab reads, and which.
pub fn kind(text: &str) -> Option<&'static str> {
    let first = text.lines().find(|l| !l.trim().is_empty())?.trim();
    if first.to_ascii_lowercase().replace(' ', "").starts_with("timestamp,contexttokens,generatedtokens") {
        Some("Azure trace")
    } else if first.starts_with('{') && first.contains("\"input_length\"") && first.contains("\"timestamp\"") {
        Some("Mooncake trace")
    } else {
        None
    }
}

/// Reads a trace of either kind; a bad line, or a time earlier than the one before it, is
/// named by its line.
pub fn parse(text: &str) -> Result<(&'static str, Vec<TraceRequest>), String> {
    let kind = kind(text).ok_or("not a trace caplab reads: expected an Azure CSV (TIMESTAMP,ContextTokens,GeneratedTokens) or Mooncake JSONL (timestamp, input_length, output_length)")?;
    let mut out: Vec<TraceRequest> = Vec::new();
    let mut first_s = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && kind == "Azure trace") || (kind == "Azure trace" && line.to_ascii_lowercase().starts_with("timestamp")) {
            continue;
        }
        let at = |e: String| format!("line {}: {e}", i + 1);
        let (t_s, input_tokens, output_tokens, hash_ids) = if kind == "Azure trace" { azure_row(line).map_err(at)? } else { mooncake_row(line).map_err(at)? };
        let start = *first_s.get_or_insert(t_s);
        let at_s = t_s - start;
        if let Some(prev) = out.last().filter(|p| at_s < p.at_s) {
            return Err(at(format!("its time is {:.3} s before the line above's: a trace must be in time order", prev.at_s - at_s)));
        }
        if input_tokens == 0 {
            return Err(at("a request with no prompt tokens".into()));
        }
        out.push(TraceRequest { at_s, input_tokens, output_tokens: output_tokens.max(1), hash_ids });
    }
    if out.is_empty() {
        return Err(format!("a {kind} with no request"));
    }
    Ok((kind, out))
}

type Row = (f64, u32, u32, Vec<u64>);

fn azure_row(line: &str) -> Result<Row, String> {
    let cols: Vec<&str> = line.split(',').map(str::trim).collect();
    let [ts, ctx, gen] = cols[..] else { return Err(format!("expected 3 columns (TIMESTAMP,ContextTokens,GeneratedTokens), found {}", cols.len())) };
    let num = |v: &str, what: &str| v.parse::<u32>().map_err(|_| format!("{what} {v:?} is not a whole number"));
    Ok((datetime_s(ts)?, num(ctx, "ContextTokens")?, num(gen, "GeneratedTokens")?, vec![]))
}

/// Seconds since 1970 of `YYYY-MM-DD HH:MM:SS[.fraction]` (UTC; only differences are used).
fn datetime_s(ts: &str) -> Result<f64, String> {
    let bad = || format!("TIMESTAMP {ts:?} is not YYYY-MM-DD HH:MM:SS[.fraction]");
    let (date, time) = ts.split_once([' ', 'T']).ok_or_else(bad)?;
    let d: Vec<i64> = date.split('-').map(|p| p.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|p| p.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
    let (&[y, m, day], &[h, min, s]) = (d.as_slice(), t.as_slice()) else { return Err(bad()) };
    let frac: f64 = format!("0.{}", frac.trim_end_matches(|c: char| !c.is_ascii_digit())).parse().map_err(|_| bad())?;
    // Days since the epoch (Howard Hinnant's civil-from-days, inverted).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok((days * 86_400 + h * 3600 + min * 60 + s) as f64 + frac)
}

fn mooncake_row(line: &str) -> Result<Row, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
    let num = |k: &str| v.get(k).and_then(Value::as_f64).ok_or(format!("no number \"{k}\""));
    let hash_ids = v.get("hash_ids").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default();
    Ok((num("timestamp")? / 1000.0, num("input_length")? as u32, num("output_length")? as u32, hash_ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_and_mooncake_traces_are_read_in_time_order() {
        let azure = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.9951690,396,109\n2023-11-17 00:00:00.5,10,1\n";
        let (kind, t) = parse(azure).unwrap();
        assert_eq!(kind, "Azure trace");
        assert_eq!(t.len(), 3);
        assert!((t[1].at_s - 4.314579).abs() < 1e-6, "{}", t[1].at_s);
        assert!((t[2].at_s - (5.0 * 3600.0 + 44.0 * 60.0 + 13.8194100)).abs() < 1e-6, "across midnight: {}", t[2].at_s);
        assert_eq!((t[0].input_tokens, t[0].output_tokens), (374, 44));
        let moon = "{\"timestamp\": 0, \"input_length\": 6955, \"output_length\": 52, \"hash_ids\": [46, 47, 48]}\n{\"timestamp\": 1500, \"input_length\": 700, \"output_length\": 8, \"hash_ids\": [46, 99]}\n";
        let (kind, t) = parse(moon).unwrap();
        assert_eq!(kind, "Mooncake trace");
        assert_eq!((t[1].at_s, t[1].hash_ids.clone()), (1.5, vec![46, 99]));
    }

    #[test]
    fn a_bad_trace_names_its_line() {
        let back = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:50,10,1\n2023-11-16 18:15:46,10,1\n";
        assert!(parse(back).unwrap_err().starts_with("line 3: its time is 4.000 s before the line above's"), "{:?}", parse(back));
        assert!(parse("TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,1\n").unwrap_err().starts_with("line 2: TIMESTAMP"));
        assert!(parse("{\"timestamp\": 0, \"input_length\": 5, \"output_length\": 1}\n{\"timestamp\": 1}\n").unwrap_err().starts_with("line 2:"));
        assert!(parse("TIMESTAMP,ContextTokens,GeneratedTokens\n").unwrap_err().contains("no request"));
        assert!(kind("hello\n").is_none());
    }
}
