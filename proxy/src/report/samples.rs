//! A run's per-request latencies by cell, read from its `requests.csv` (streamed: one row at a
//! time, keeping only the three numbers the report's distributions draw). Only measured
//! requests that succeeded count, as in the cells' own percentiles.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use crate::export::RequestRow;

/// One cell's successful measured requests: TTFT, mean inter-token latency, and end-to-end
/// latency, each in ms (a request without a value, such as a one-token output's ITL, is absent
/// from that list only).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CellSamples {
    pub ttft: Vec<f64>,
    pub itl: Vec<f64>,
    pub e2e: Vec<f64>,
}

/// Per cell index.
pub type Samples = BTreeMap<u32, CellSamples>;

/// The samples in a `requests.csv`. A row that cannot be read (the last, cut by a kill) ends
/// the reading: every whole row before it counts.
pub fn read(reader: impl Read) -> Samples {
    let mut out = Samples::new();
    let mut csv = csv::Reader::from_reader(reader);
    for row in csv.deserialize::<RequestRow>() {
        let Ok(row) = row else { break };
        if row.warmup || row.error_class.is_some() {
            continue;
        }
        let cell = out.entry(row.cell).or_default();
        cell.e2e.push(row.e2e_ms);
        cell.ttft.extend(row.ttft_ms);
        cell.itl.extend(row.itl_mean_ms);
    }
    out
}

/// The samples of the run saved in `folder`, or None when it keeps no request (an imported
/// run) or its `requests.csv` cannot be read.
pub fn of_folder(folder: &Path) -> Option<Samples> {
    let file = crate::store::files::requests(folder).ok()?;
    Some(read(std::io::BufReader::new(file))).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use caplab_shared::{ErrorClass, RequestSample, RunInfo};

    #[test]
    fn only_successful_measured_requests_count_and_a_torn_row_ends_the_reading() {
        let info: RunInfo = serde_json::from_value(serde_json::json!({
            "id": "r", "spec": {"workload": "chat", "concurrency": [2, 4]}, "status": "finished", "started_unix_ms": 0,
            "message": null, "cells_total": 2, "requests_total": 0, "target": {"url": "", "simulated": true, "server": "vllm", "models": []},
        }))
        .unwrap();
        let s = |cell: u32, e2e: f64| RequestSample { cell, e2e_ms: e2e, ttft_ms: Some(e2e / 10.0), itl_mean_ms: Some(5.0), ..Default::default() };
        let samples = vec![
            RequestSample { warmup: true, ..s(0, 9999.0) },
            s(0, 100.0),
            s(0, 200.0),
            RequestSample { error: Some(ErrorClass::Server), ..s(0, 50.0) },
            RequestSample { itl_mean_ms: None, ..s(1, 300.0) },
        ];
        let mut csv = crate::export::requests_csv(&info, &samples).unwrap();
        csv.extend_from_slice(b"r,chat,x,true,1,4,");
        let got = read(csv.as_slice());
        assert_eq!(got[&0], CellSamples { ttft: vec![10.0, 20.0], itl: vec![5.0, 5.0], e2e: vec![100.0, 200.0] });
        assert_eq!(got[&1], CellSamples { ttft: vec![30.0], itl: vec![], e2e: vec![300.0] });
    }
}
