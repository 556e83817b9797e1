//! Types and pure maths shared by the caplab proxy (native) and dashboard (wasm).
//!
//! Everything that crosses the wire or lands in a file is defined here, so both
//! sides agree by construction. Nothing in this crate does I/O.

pub mod api;
pub mod decide;
pub mod form;
pub mod frontier;
pub mod live;
pub mod plot;
pub mod prediction;
pub mod result;
pub mod search;
pub mod sample;
pub mod server;
pub mod spec;
pub mod stats;
pub mod surface;
pub mod telemetry;
pub mod token_hist;

pub use live::{LiveTick, RunInfo, RunStatus, RunView, ServerMsg, TargetInfo};
pub use result::{CellResult, Dist};
pub use sample::{ErrorClass, RequestSample};
pub use server::{LengthControl, ServerKind};
pub use spec::{CellSpec, ExperimentSpec, FieldError, InputsRef, Load, LoadMode, Slo, Workload};
pub use telemetry::{GpuCellStats, GpuSample, ServerCellStats, ServerSample, TelemetrySources};
