//! The experiment form as one table: each field's key, label, hint, when it shows, and how its
//! text is read from and written into an `ExperimentSpec`. The dashboard draws its form from
//! `FIELDS`; its defaults are `ExperimentSpec::default()`'s; `read` turns the texts into a spec
//! and reports every bad field at once (what cannot be read, then what `validate` refuses).

use crate::spec::{ExperimentSpec, FieldError, LoadMode, Workload};

/// The form's load mode: the spec's `mode` and `search` as one choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormMode {
    /// Closed loop over every cell of the grid.
    Closed,
    /// Closed loop, running only the cells an SLO search needs.
    ClosedSearch,
    /// Open loop at the given rates.
    Rate,
    /// Open loop, an SLO search over the rates.
    RateSearch,
}

impl FormMode {
    pub const ALL: [FormMode; 4] = [FormMode::Closed, FormMode::ClosedSearch, FormMode::Rate, FormMode::RateSearch];

    /// The value of its `<option>`.
    pub fn value(self) -> &'static str {
        match self {
            FormMode::Closed => "closed",
            FormMode::ClosedSearch => "closed-search",
            FormMode::Rate => "rate",
            FormMode::RateSearch => "rate-search",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            FormMode::Closed => "closed loop",
            FormMode::ClosedSearch => "closed loop: SLO search",
            FormMode::Rate => "open loop (rate)",
            FormMode::RateSearch => "rate: SLO search",
        }
    }

    pub fn from_value(value: &str) -> Option<FormMode> {
        FormMode::ALL.into_iter().find(|m| m.value() == value)
    }

    pub fn of(spec: &ExperimentSpec) -> FormMode {
        match (spec.mode, spec.search) {
            (LoadMode::Closed, false) => FormMode::Closed,
            (LoadMode::Closed, true) => FormMode::ClosedSearch,
            (LoadMode::Rate, false) => FormMode::Rate,
            (LoadMode::Rate, true) => FormMode::RateSearch,
        }
    }

    pub fn load_mode(self) -> LoadMode {
        match self {
            FormMode::Closed | FormMode::ClosedSearch => LoadMode::Closed,
            FormMode::Rate | FormMode::RateSearch => LoadMode::Rate,
        }
    }

    pub fn is_search(self) -> bool {
        matches!(self, FormMode::ClosedSearch | FormMode::RateSearch)
    }
}

/// How a field is typed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    Text,
    /// One of the workloads.
    Workload,
    /// One of `FormMode::ALL`.
    Mode,
    /// One of the targets the operator allowed (the dashboard fills the options).
    Target,
    /// Free text with the target's models suggested.
    Model,
    /// The user's own documents or prompts: a file uploaded, kept as its id.
    Inputs,
}

/// When a field applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shown {
    Always,
    ClosedLoop,
    OpenLoop,
}

impl Shown {
    pub fn applies(self, mode: FormMode) -> bool {
        match self {
            Shown::Always => true,
            Shown::ClosedLoop => mode.load_mode() == LoadMode::Closed,
            Shown::OpenLoop => mode.load_mode() == LoadMode::Rate,
        }
    }
}

/// One field of the form.
pub struct FormField {
    /// The spec's JSON key (`slo.e2e_ms` for nested ones): server errors name it too.
    pub key: &'static str,
    pub label: &'static str,
    pub hint: &'static str,
    pub input: Input,
    pub shown: Shown,
    /// The field's text for a spec.
    pub get: fn(&ExperimentSpec) -> String,
    /// Writes the field's text into a spec, or says why it cannot be read.
    pub set: fn(&mut ExperimentSpec, &str) -> Result<(), String>,
}

fn list<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(", ")
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

fn parts(text: &str) -> impl Iterator<Item = &str> {
    text.split([',', ' ']).map(str::trim).filter(|p| !p.is_empty())
}

/// Whole numbers separated by commas (an empty text is an empty list: `validate` says if one is needed).
fn whole_list(text: &str) -> Result<Vec<u32>, String> {
    parts(text).map(|p| p.parse::<u32>().map_err(|_| format!("{p:?} is not a whole number: give whole numbers separated by commas"))).collect()
}

fn number_list(text: &str) -> Result<Vec<f64>, String> {
    parts(text).map(|p| p.parse::<f64>().ok().filter(|f| f.is_finite()).ok_or_else(|| format!("{p:?} is not a number: give numbers separated by commas"))).collect()
}

/// A whole number; an empty text keeps the default.
fn whole(text: &str, default: u32) -> Result<u32, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(default);
    }
    t.parse::<u32>().map_err(|_| format!("{t:?} is not a whole number"))
}

/// A number; an empty text keeps the default.
fn number(text: &str, default: f64) -> Result<f64, String> {
    optional(text).map(|v| v.unwrap_or(default))
}

/// An optional number: empty = not set.
fn optional(text: &str) -> Result<Option<f64>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    t.parse::<f64>().ok().filter(|f| f.is_finite()).map(Some).ok_or_else(|| format!("{t:?} is not a number"))
}

/// A length distribution as the form writes it: `KIND MEAN STDEV MIN MAX` (e.g.
/// `lognormal 300 150 32 1500`; uniform: `uniform MIN MAX`); empty = none.
fn dist_text(d: &Option<crate::spec::LengthDist>) -> String {
    use crate::spec::DistKind;
    match d {
        None => String::new(),
        Some(d) if d.kind == DistKind::Uniform => format!("uniform {} {}", d.min, d.max),
        Some(d) => format!("{} {} {} {} {}", if d.kind == DistKind::Normal { "normal" } else { "lognormal" }, d.mean, d.stdev, d.min, d.max),
    }
}

fn parse_dist(text: &str) -> Result<Option<crate::spec::LengthDist>, String> {
    use crate::spec::{DistKind, LengthDist};
    let parts: Vec<&str> = text.split_whitespace().collect();
    let num = |p: &str| p.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| format!("{p:?} is not a number"));
    let whole = |p: &str| p.parse::<u32>().map_err(|_| format!("{p:?} is not a whole number"));
    match parts.as_slice() {
        [] => Ok(None),
        ["uniform", min, max] => Ok(Some(LengthDist { kind: DistKind::Uniform, mean: 0.0, stdev: 0.0, min: whole(min)?, max: whole(max)? })),
        [kind @ ("normal" | "lognormal"), mean, stdev, min, max] => Ok(Some(LengthDist {
            kind: if *kind == "normal" { DistKind::Normal } else { DistKind::Lognormal },
            mean: num(mean)?,
            stdev: num(stdev)?,
            min: whole(min)?,
            max: whole(max)?,
        })),
        _ => Err("write KIND MEAN STDEV MIN MAX (normal or lognormal), or uniform MIN MAX".into()),
    }
}

fn d() -> ExperimentSpec {
    ExperimentSpec::default()
}

/// Every field, in the order the form shows them.
pub const FIELDS: &[FormField] = &[
    FormField {
        key: "workload",
        label: "Workload",
        hint: "chat: streaming /v1/chat/completions over the chat prompts; batch: /v1/completions summarizing the [DOC] file",
        input: Input::Workload,
        shown: Shown::Always,
        get: |s| s.workload.as_str().into(),
        set: |s, t| {
            s.workload = match t {
                "chat" => Workload::Chat,
                "batch" => Workload::Batch,
                other => return Err(format!("{other:?} is not a workload: chat or batch")),
            };
            Ok(())
        },
    },
    FormField {
        key: "target",
        label: "Target",
        hint: "the servers the operator allowed when starting caplab (--target NAME=URL); sim… are the built-in simulators",
        input: Input::Target,
        shown: Shown::Always,
        get: |s| s.target.clone(),
        set: |s, t| {
            s.target = t.trim().into();
            Ok(())
        },
    },
    FormField {
        key: "model",
        label: "Model",
        hint: "the model name sent in requests; empty = the first model the target lists",
        input: Input::Model,
        shown: Shown::Always,
        get: |s| s.model.clone(),
        set: |s, t| {
            s.model = t.trim().into();
            Ok(())
        },
    },
    FormField {
        key: "inputs",
        label: "Documents / prompts",
        hint: "your own inputs instead of the built-in ones. Batch: a [DOC]-delimited file (the notes' --docs-file) or JSONL with a \"text\" field; chat: one prompt per line, JSONL of OpenAI \"messages\", or ShareGPT JSON (first human turn)",
        input: Input::Inputs,
        shown: Shown::Always,
        get: |s| s.inputs.as_ref().map(|r| r.id.clone()).unwrap_or_default(),
        set: |s, t| {
            let id = t.trim();
            s.inputs = (!id.is_empty()).then(|| crate::spec::InputsRef { id: id.into(), ..Default::default() });
            Ok(())
        },
    },
    FormField {
        key: "mode",
        label: "Load mode",
        hint: "closed: N workers back to back; rate: timed arrivals (Poisson when burstiness is 1); SLO search: the highest of the candidates that meets the SLO, running only the cells needed (bracket, then bisect), with how sure the answer is",
        input: Input::Mode,
        shown: Shown::Always,
        get: |s| FormMode::of(s).value().into(),
        set: |s, t| {
            let m = FormMode::from_value(t).ok_or_else(|| format!("{t:?} is not a load mode"))?;
            s.mode = m.load_mode();
            s.search = m.is_search();
            Ok(())
        },
    },
    FormField {
        key: "concurrency",
        label: "Concurrency",
        hint: "one value, or a list for a grid: 8, 16, 32",
        input: Input::Text,
        shown: Shown::ClosedLoop,
        get: |s| list(&s.concurrency),
        set: |s, t| whole_list(t).map(|v| s.concurrency = v),
    },
    FormField {
        key: "rate",
        label: "Rate (req/s)",
        hint: "one value or a list: 1, 2, 4",
        input: Input::Text,
        shown: Shown::OpenLoop,
        get: |s| list(&s.rate),
        set: |s, t| number_list(t).map(|v| s.rate = v),
    },
    FormField {
        key: "speedup",
        label: "Speedup (trace replay)",
        hint: "with a trace as the inputs: its arrival times divided by this (1 = as recorded, 10 = ten times faster); one cell per value",
        input: Input::Text,
        shown: Shown::OpenLoop,
        get: |s| list(&s.speedup),
        set: |s, t| number_list(t).map(|v| s.speedup = v),
    },
    FormField {
        key: "burstiness",
        label: "Burstiness",
        hint: "gamma shape of arrival gaps; 1 = Poisson, lower = burstier",
        input: Input::Text,
        shown: Shown::OpenLoop,
        get: |s| s.burstiness.to_string(),
        set: |s, t| number(t, d().burstiness).map(|v| s.burstiness = v),
    },
    FormField {
        key: "max_in_flight",
        label: "Max in flight",
        hint: "0 = unbounded; extra arrivals wait client-side (counted in latency)",
        input: Input::Text,
        shown: Shown::OpenLoop,
        get: |s| s.max_in_flight.to_string(),
        set: |s, t| whole(t, d().max_in_flight).map(|v| s.max_in_flight = v),
    },
    FormField {
        key: "max_new_tokens",
        label: "max_new_tokens",
        hint: "one value or a list: 128, 256",
        input: Input::Text,
        shown: Shown::Always,
        get: |s| list(&s.max_new_tokens),
        set: |s, t| whole_list(t).map(|v| s.max_new_tokens = v),
    },
    FormField {
        key: "input_tokens",
        label: "Prompt tokens (synthetic)",
        hint: "synthetic prompts of exactly this many tokens, as the target counts them (its tokenize endpoint), each request's own; a list makes a third grid axis: 512, 2048, 8192. Empty: the documents or prompts above",
        input: Input::Text,
        shown: Shown::Always,
        get: |s| list(&s.input_tokens),
        set: |s, t| whole_list(t).map(|v| s.input_tokens = v),
    },
    FormField {
        key: "input_dist",
        label: "Prompt lengths drawn",
        hint: "synthetic prompts whose lengths each request draws: lognormal 300 150 32 1500 (mean, stdev, min, max), normal …, or uniform 32 1500; instead of a Prompt tokens list",
        input: Input::Text,
        shown: Shown::Always,
        get: |s| dist_text(&s.input_dist),
        set: |s, t| parse_dist(t).map(|v| s.input_dist = v),
    },
    FormField {
        key: "output_dist",
        label: "Output lengths drawn",
        hint: "each request's max_tokens drawn (exact where the server allows, as ignore_eos): e.g. uniform 16 256, or lognormal 200 100 8 1024",
        input: Input::Text,
        shown: Shown::Always,
        get: |s| dist_text(&s.output_dist),
        set: |s, t| parse_dist(t).map(|v| s.output_dist = v),
    },
    FormField {
        key: "prefix_tokens",
        label: "Shared prefix (tokens)",
        hint: "synthetic prompts: their first this many tokens are shared (as a system prompt), so the server's prefix cache can serve them; 0 = none",
        input: Input::Text,
        shown: Shown::Always,
        get: |s| s.prefix_tokens.to_string(),
        set: |s, t| whole(t, d().prefix_tokens).map(|v| s.prefix_tokens = v),
    },
    FormField {
        key: "prefix_groups",
        label: "Prefix groups",
        hint: "how many different shared prefixes requests take in turn; 1 = all share one",
        input: Input::Text,
        shown: Shown::Always,
        get: |s| s.prefix_groups.to_string(),
        set: |s, t| whole(t, d().prefix_groups).map(|v| s.prefix_groups = v),
    },
    FormField {
        key: "turns",
        label: "Turns per conversation",
        hint: "chat: each worker is a user holding a conversation of this many turns, each resending the history with the server's replies; TTFT is reported per turn. 1 = single requests",
        input: Input::Text,
        shown: Shown::ClosedLoop,
        get: |s| s.turns.to_string(),
        set: |s, t| whole(t, d().turns).map(|v| s.turns = v),
    },
    FormField {
        key: "think_time_s",
        label: "Think time (s)",
        hint: "a user's pause between a reply and its next turn (not counted in latency)",
        input: Input::Text,
        shown: Shown::ClosedLoop,
        get: |s| s.think_time_s.to_string(),
        set: |s, t| number(t, d().think_time_s).map(|v| s.think_time_s = v),
    },
    FormField {
        key: "requests",
        label: "Requests per cell",
        hint: "0 = default: chat 64, batch documents × repeat",
        input: Input::Text,
        shown: Shown::Always,
        get: |s| s.requests.to_string(),
        set: |s, t| whole(t, d().requests).map(|v| s.requests = v),
    },
    FormField {
        key: "repeat",
        label: "Repeat (batch)",
        hint: "batch: the document set is sent this many times",
        input: Input::Text,
        shown: Shown::Always,
        get: |s| s.repeat.to_string(),
        set: |s, t| whole(t, d().repeat).map(|v| s.repeat = v),
    },
    FormField {
        key: "requests_per_worker",
        label: "Requests per worker",
        hint: "closed loop: each cell sends at least this × concurrency requests, so big cells run several waves; 0 = off",
        input: Input::Text,
        shown: Shown::ClosedLoop,
        get: |s| s.requests_per_worker.to_string(),
        set: |s, t| whole(t, d().requests_per_worker).map(|v| s.requests_per_worker = v),
    },
    FormField {
        key: "warmup",
        label: "Warm-up requests",
        hint: "sent first in each cell and left out of all statistics",
        input: Input::Text,
        shown: Shown::Always,
        get: |s| s.warmup.to_string(),
        set: |s, t| whole(t, d().warmup).map(|v| s.warmup = v),
    },
    FormField {
        key: "gpu",
        label: "GPU label",
        hint: "written into every result row; empty = the simulated GPU's name, or 'unlabelled'; a simulated target's results are marked (simulated)",
        input: Input::Text,
        shown: Shown::Always,
        get: |s| {
            let g = s.gpu.trim_end_matches(" (simulated)");
            if g == "simulated" || g == "unlabelled" { String::new() } else { g.to_string() }
        },
        set: |s, t| {
            s.gpu = t.trim().into();
            Ok(())
        },
    },
    FormField {
        key: "slo.e2e_ms",
        label: "SLO p95 end-to-end (ms)",
        hint: "empty = the workload's default (chat 3000, batch 30000)",
        input: Input::Text,
        shown: Shown::Always,
        get: |s| opt(s.slo.e2e_ms),
        set: |s, t| optional(t).map(|v| s.slo.e2e_ms = v),
    },
    FormField {
        key: "slo.ttft_ms",
        label: "SLO p95 TTFT (ms)",
        hint: "optional",
        input: Input::Text,
        shown: Shown::Always,
        get: |s| opt(s.slo.ttft_ms),
        set: |s, t| optional(t).map(|v| s.slo.ttft_ms = v),
    },
    FormField {
        key: "slo.tpot_ms",
        label: "SLO p95 TPOT (ms)",
        hint: "optional",
        input: Input::Text,
        shown: Shown::Always,
        get: |s| opt(s.slo.tpot_ms),
        set: |s, t| optional(t).map(|v| s.slo.tpot_ms = v),
    },
    FormField {
        key: "timeout_s",
        label: "Timeout per request (s)",
        hint: "a request still running then is ended as a timeout error",
        input: Input::Text,
        shown: Shown::Always,
        get: |s| s.timeout_s.to_string(),
        set: |s, t| number(t, d().timeout_s).map(|v| s.timeout_s = v),
    },
    FormField {
        key: "name",
        label: "Name",
        hint: "optional label",
        input: Input::Text,
        shown: Shown::Always,
        get: |s| s.name.clone(),
        set: |s, t| {
            s.name = t.trim().into();
            Ok(())
        },
    },
];

/// The field with this key.
pub fn field(key: &str) -> Option<&'static FormField> {
    FIELDS.iter().find(|f| f.key == key)
}

/// Every field's text for `spec`, in table order.
pub fn texts(spec: &ExperimentSpec) -> Vec<(&'static str, String)> {
    FIELDS.iter().map(|f| (f.key, (f.get)(spec))).collect()
}

/// The spec the form's texts describe (`text(key)`), or every problem at once: each field that
/// cannot be read, then what `ExperimentSpec::validate` refuses in the others. Fields that do
/// not apply to the chosen mode keep their defaults.
pub fn read(text: impl Fn(&str) -> String) -> Result<ExperimentSpec, Vec<FieldError>> {
    read_with_inputs(text, None)
}

/// As `read`, knowing the uploaded inputs the form's `inputs` field names (what caplab said of
/// them: a trace, say), so the spec is checked as the server will check it.
pub fn read_with_inputs(text: impl Fn(&str) -> String, known: Option<&crate::spec::InputsRef>) -> Result<ExperimentSpec, Vec<FieldError>> {
    let mut spec = ExperimentSpec::default();
    let mut errors = Vec::new();
    let mode = FormMode::from_value(&text("mode")).unwrap_or(FormMode::Closed);
    for f in FIELDS.iter().filter(|f| f.shown.applies(mode)) {
        if let Err(message) = (f.set)(&mut spec, &text(f.key)) {
            errors.push(FieldError::new(f.key, message));
        }
    }
    if let (Some(named), Some(known)) = (spec.inputs.as_ref(), known) {
        if named.id == known.id {
            spec.inputs = Some(known.clone());
        }
    }
    let unreadable: Vec<String> = errors.iter().map(|e| e.field.clone()).collect();
    errors.extend(spec.validate().into_iter().filter(|e| !unreadable.contains(&e.field)));
    if errors.is_empty() {
        Ok(spec)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn form(spec: &ExperimentSpec) -> BTreeMap<&'static str, String> {
        texts(spec).into_iter().collect()
    }

    #[test]
    fn every_field_round_trips_and_defaults_come_from_the_spec() {
        let spec = ExperimentSpec {
            name: "grid".into(),
            workload: Workload::Chat,
            target: "sim-a100".into(),
            model: "m".into(),
            gpu: "A100 (simulated)".into(),
            concurrency: vec![1, 8, 32],
            max_new_tokens: vec![128, 256],
            requests: 64,
            warmup: 4,
            timeout_s: 120.0,
            slo: crate::Slo { e2e_ms: Some(2500.0), ttft_ms: Some(400.0), tpot_ms: None },
            ..Default::default()
        };
        let texts = form(&spec);
        assert_eq!(texts["concurrency"], "1, 8, 32");
        assert_eq!(texts["gpu"], "A100", "the simulated mark is caplab's to add");
        let back = read(|k| texts[k].clone()).unwrap();
        assert_eq!(back, ExperimentSpec { gpu: "A100".into(), ..spec });
        let defaults = form(&ExperimentSpec::default());
        assert_eq!(read(|k| defaults[k].clone()).unwrap(), ExperimentSpec { gpu: String::new(), ..Default::default() });
        let keys: Vec<&str> = FIELDS.iter().map(|f| f.key).collect();
        let mut unique = keys.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), keys.len(), "each key once");
    }

    #[test]
    fn length_distributions_are_written_and_read_as_one_line() {
        let spec = ExperimentSpec { input_dist: parse_dist("lognormal 300 150 32 1500").unwrap(), output_dist: parse_dist("uniform 16 256").unwrap(), ..Default::default() };
        let texts = form(&spec);
        assert_eq!((texts["input_dist"].as_str(), texts["output_dist"].as_str()), ("lognormal 300 150 32 1500", "uniform 16 256"));
        let back = read(|k| texts[k].clone()).unwrap();
        assert_eq!((back.input_dist, back.output_dist), (spec.input_dist, spec.output_dist));
        assert!(parse_dist("gamma 1 2 3 4").unwrap_err().contains("KIND MEAN STDEV MIN MAX"));
        assert!(parse_dist("normal x 1 2 3").unwrap_err().contains("\"x\" is not a number"));
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let mut texts = form(&ExperimentSpec::default());
        texts.insert("warmup", "abc".into());
        texts.insert("concurrency", "-5".into());
        texts.insert("max_new_tokens", String::new());
        texts.insert("timeout_s", "-1".into());
        let errors = read(|k| texts[k].clone()).unwrap_err();
        let mut fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["concurrency", "max_new_tokens", "timeout_s", "warmup"], "{errors:?}");
        let concurrency = errors.iter().find(|e| e.field == "concurrency").unwrap();
        assert!(concurrency.message.contains("\"-5\" is not a whole number"), "{concurrency:?}");
    }

    #[test]
    fn modes_are_one_choice_and_hidden_fields_keep_their_defaults() {
        for m in FormMode::ALL {
            let spec = ExperimentSpec { mode: m.load_mode(), search: m.is_search(), ..Default::default() };
            assert_eq!(FormMode::of(&spec), m);
            assert_eq!(FormMode::from_value(m.value()), Some(m));
        }
        let mut texts = form(&ExperimentSpec::default());
        texts.insert("mode", "rate".into());
        texts.insert("rate", "1, 2.5".into());
        texts.insert("concurrency", "not read in rate mode".into());
        let spec = read(|k| texts[k].clone()).unwrap();
        assert_eq!((spec.mode, spec.rate.clone(), spec.search), (LoadMode::Rate, vec![1.0, 2.5], false));
        assert!(!Shown::OpenLoop.applies(FormMode::ClosedSearch) && Shown::OpenLoop.applies(FormMode::RateSearch));
    }
}
