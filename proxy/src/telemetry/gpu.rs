//! Reads this machine's NVIDIA GPUs: through NVML, loaded at run time (so caplab starts on a
//! machine without the driver), else through `nvidia-smi --query-gpu=… -lms`, else not at all
//! (and says why).

use std::time::Duration;

use caplab_shared::GpuSample;
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::Nvml;
use tokio::io::AsyncBufReadExt;

/// How often a GPU is read.
pub const EVERY: Duration = Duration::from_secs(1);

/// The fields `nvidia-smi` is asked for, in the order `parse_smi_line` reads them.
pub const SMI_QUERY: &str = "index,memory.used,memory.total,utilization.gpu,power.draw,clocks.sm,temperature.gpu";

/// Where GPU readings come from.
pub enum Source {
    Nvml { nvml: Nvml, count: u32 },
    Smi,
}

impl Source {
    /// NVML if its library loads and sees a GPU, else `nvidia-smi` if it answers; otherwise why not.
    /// `CAPLAB_GPU_READER=nvidia-smi` skips NVML (to compare the two, or where NVML misbehaves).
    pub async fn open() -> Result<(Source, String), String> {
        let nvml = if std::env::var("CAPLAB_GPU_READER").is_ok_and(|v| v == "nvidia-smi") {
            Err("NVML skipped: CAPLAB_GPU_READER=nvidia-smi".to_string())
        } else {
            // Containers often carry only the versioned name (the driver's, mounted in).
            Nvml::builder().lib_path(std::ffi::OsStr::new("libnvidia-ml.so.1")).init().or_else(|_| Nvml::init()).map_err(|e| format!("NVML cannot be loaded ({e})"))
        };
        let nvml_error = match nvml {
            Ok(nvml) => match nvml.device_count() {
                Ok(count) if count > 0 => {
                    let driver = nvml.sys_driver_version().unwrap_or_default();
                    return Ok((Source::Nvml { nvml, count }, format!("NVML, {count} GPU(s), driver {driver}, every {} s", EVERY.as_secs())));
                }
                Ok(_) => "NVML loaded but sees no GPU".to_string(),
                Err(e) => format!("NVML: {e}"),
            },
            Err(why) => why,
        };
        let probe = tokio::process::Command::new("nvidia-smi")
            .args([&format!("--query-gpu={SMI_QUERY}"), "--format=csv,noheader,nounits"])
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(Duration::from_secs(10), probe).await {
            Ok(Ok(out)) if out.status.success() && !out.stdout.is_empty() => {
                Ok((Source::Smi, format!("nvidia-smi --query-gpu=… -lms {} ({nvml_error})", EVERY.as_millis())))
            }
            _ => Err(format!("no NVIDIA GPU can be read on this machine: {nvml_error}, and nvidia-smi does not answer")),
        }
    }

    /// Reads every GPU until `cancel`, handing each reading to `emit` (seconds since `start`).
    pub async fn follow(self, start: tokio::time::Instant, cancel: tokio_util::sync::CancellationToken, mut emit: impl FnMut(Vec<GpuSample>)) {
        match self {
            Source::Nvml { nvml, count } => {
                let mut every = tokio::time::interval(EVERY);
                loop {
                    tokio::select! {
                        _ = every.tick() => {}
                        _ = cancel.cancelled() => return,
                    }
                    let t_s = start.elapsed().as_secs_f64();
                    emit((0..count).map(|i| read_nvml(&nvml, i, t_s)).collect());
                }
            }
            Source::Smi => {
                let child = tokio::process::Command::new("nvidia-smi")
                    .args([&format!("--query-gpu={SMI_QUERY}"), "--format=csv,noheader,nounits", &format!("-lms={}", EVERY.as_millis())])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .spawn();
                let Ok(mut child) = child else { return };
                let Some(stdout) = child.stdout.take() else { return };
                let mut lines = tokio::io::BufReader::new(stdout).lines();
                loop {
                    let line = tokio::select! {
                        l = lines.next_line() => l,
                        _ = cancel.cancelled() => return,
                    };
                    match line {
                        Ok(Some(line)) => {
                            if let Some(s) = parse_smi_line(&line, start.elapsed().as_secs_f64()) {
                                emit(vec![s]);
                            }
                        }
                        _ => return,
                    }
                }
            }
        }
    }
}

fn read_nvml(nvml: &Nvml, index: u32, t_s: f64) -> GpuSample {
    let mut s = GpuSample { t_s, gpu: index, ..Default::default() };
    let Ok(d) = nvml.device_by_index(index) else { return s };
    if let Ok(m) = d.memory_info() {
        s.memory_used_mib = Some(m.used as f64 / 1_048_576.0);
        s.memory_total_mib = Some(m.total as f64 / 1_048_576.0);
    }
    s.util_pct = d.utilization_rates().ok().map(|u| f64::from(u.gpu));
    s.power_w = d.power_usage().ok().map(|mw| f64::from(mw) / 1000.0);
    s.sm_clock_mhz = d.clock_info(Clock::SM).ok().map(f64::from);
    s.temp_c = d.temperature(TemperatureSensor::Gpu).ok().map(f64::from);
    s
}

/// One line of `nvidia-smi --query-gpu=SMI_QUERY --format=csv,noheader,nounits`; fields it
/// cannot read ("[N/A]", "[Not Supported]") are left empty.
pub fn parse_smi_line(line: &str, t_s: f64) -> Option<GpuSample> {
    let f: Vec<Option<f64>> = line.split(',').map(|v| v.trim().parse::<f64>().ok()).collect();
    if f.len() != 7 {
        return None;
    }
    Some(GpuSample {
        t_s,
        gpu: f[0]? as u32,
        memory_used_mib: f[1],
        memory_total_mib: f[2],
        util_pct: f[3],
        power_w: f[4],
        sm_clock_mhz: f[5],
        temp_c: f[6],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nvidia_smi_lines_as_the_h200_printed_them() {
        // Fields of data/anchors/h200-…/nvidia-smi.csv (an H200 under load), in SMI_QUERY order.
        let s = parse_smi_line("0, 131207, 143771, 87, 412.30, 1980, 51", 2.0).unwrap();
        assert_eq!(s, GpuSample {
            t_s: 2.0,
            gpu: 0,
            memory_used_mib: Some(131207.0),
            memory_total_mib: Some(143771.0),
            util_pct: Some(87.0),
            power_w: Some(412.3),
            sm_clock_mhz: Some(1980.0),
            temp_c: Some(51.0),
        });
        let na = parse_smi_line("1, 100, 16380, [N/A], [Not Supported], 210, 40", 0.0).unwrap();
        assert_eq!((na.gpu, na.util_pct, na.power_w), (1, None, None));
        assert!(parse_smi_line("NVIDIA-SMI has failed because it couldn't communicate with the driver", 0.0).is_none());
    }

    #[test]
    fn the_committed_h200_readings_parse() {
        // The anchor's CSV has more columns (timestamp, name, uuid); its numbers read the same way.
        let text = include_str!("../../../data/anchors/h200-transformers-serve-5.17-qwen2.5-1.5b-random/nvidia-smi.csv");
        let busiest = text
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split(", ").collect();
                parse_smi_line(&[f[1], f[4], f[5], f[6], f[7], f[8], f[9]].join(", "), 0.0)
            })
            .max_by(|a, b| a.memory_used_mib.partial_cmp(&b.memory_used_mib).unwrap())
            .unwrap();
        assert_eq!(busiest.memory_total_mib, Some(143771.0));
        assert!(busiest.memory_used_mib.unwrap() > 1000.0, "the engine's memory shows: {busiest:?}");
    }
}
