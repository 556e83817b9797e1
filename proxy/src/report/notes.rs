//! The notes, filled: `data/notes/report_template.md` (the report structure of the user's lab
//! notes, data/notes/day003_tier2_batch_and_gpu_anchor.md) with every value measured in the
//! given runs. The two GPUs are ordered by capacity (A the smaller, the notes' RTX; B
//! the larger, the notes' A100); every ratio reads "B is N× A" with N ≥ 1 (or "A is N× B" where
//! A has more); a sentence whose numbers the runs do not give is left out, and the "Not
//! measured" list says why.

use std::collections::BTreeMap;

use caplab_shared::decide::{cost_per_million_tokens, not_comparable, verdict, Pick, Verdict};
use caplab_shared::{RunView, Workload};

use super::template::{fill, Values};
use super::{md, n0, price_of, profile_of};

const TEMPLATE: &str = include_str!("../../../data/notes/report_template.md");

/// A GPU of the notes and its latest run of each workload (with a finished cell).
struct Gpu<'a> {
    label: String,
    vram: Option<String>,
    price: Option<f64>,
    chat: Option<(&'a RunView, Verdict)>,
    batch: Option<(&'a RunView, Verdict)>,
}

impl<'a> Gpu<'a> {
    fn new(label: &str, runs: &'a [RunView], prices: &BTreeMap<String, f64>) -> Gpu<'a> {
        let latest = |w: Workload| {
            runs.iter()
                .filter(|r| r.info.spec.gpu == label && r.info.spec.workload == w && !r.cells.is_empty())
                .max_by_key(|r| (r.info.started_unix_ms, r.info.id.clone()))
                .map(|r| (r, verdict(&r.cells)))
        };
        Gpu {
            label: label.to_string(),
            vram: profile_of(label).map(|p| format!("{:.0} GiB", p.memory_gib)),
            price: price_of(label, prices).usd_per_hour,
            chat: latest(Workload::Chat),
            batch: latest(Workload::Batch),
        }
    }

    fn run(&self, w: Workload) -> Option<&(&'a RunView, Verdict)> {
        match w {
            Workload::Chat => self.chat.as_ref(),
            Workload::Batch => self.batch.as_ref(),
        }
    }

    fn verdict(&self, w: Workload) -> Option<&Verdict> {
        self.run(w).map(|(_, v)| v)
    }

    fn best(&self, w: Workload) -> Option<&Pick> {
        self.verdict(w)?.best.as_ref()
    }

    fn stable(&self, w: Workload) -> Option<Stable> {
        let v = self.verdict(w)?;
        Some(Stable { n: v.max_stable_concurrency?, open: v.open_ended, words: v.max_stable_words()? })
    }

    /// $ per million output tokens at the workload's best configuration.
    fn cost(&self, w: Workload) -> Option<f64> {
        cost_per_million_tokens(self.price?, self.best(w)?.output_tok_s)
    }

    /// The SLO of its run of `w`, in words.
    fn slo(&self, w: Workload) -> Option<String> {
        self.run(w).map(|(r, _)| r.cells.first().map_or_else(|| r.info.spec.slo.effective(w), |c| c.slo.clone()).words())
    }

    /// Why the workload gives no answer on this GPU (no run, or its verdict's reason).
    fn why_not(&self, w: Workload) -> String {
        match self.verdict(w) {
            None => format!("no {} run on {}", w.as_str(), self.label),
            Some(v) => format!("{} on {}: {}", w.as_str(), self.label, v.why_none.clone().unwrap_or_else(|| "no closed-loop cell met the SLO".into())),
        }
    }
}

/// A max stable concurrency: how many were in flight, and whether that is only a lower bound.
struct Stable {
    n: u32,
    open: bool,
    words: String,
}

/// "B is 4.0× A" (or "A is 1.5× B" where A has more) for a quantity where more is more.
fn ratio(a: f64, b: f64) -> Option<String> {
    if !(a > 0.0 && b > 0.0) {
        return None;
    }
    Some(if b >= a { format!("B is {:.1}× A", b / a) } else { format!("A is {:.1}× B", a / b) })
}

/// The ratio of two max stable concurrencies, where either may be only a lower bound: a bound
/// one way is said as "≥", and when the bounds leave the winner open there is no ratio.
fn stable_ratio(a: &Stable, b: &Stable) -> Result<String, &'static str> {
    let (fa, fb) = (f64::from(a.n), f64::from(b.n));
    match (a.open, b.open) {
        (false, false) => ratio(fa, fb).ok_or("a max stable concurrency of 0"),
        (false, true) if fb >= fa => Ok(format!("B is ≥ {:.1}× A", fb / fa)),
        (true, false) if fa >= fb => Ok(format!("A is ≥ {:.1}× B", fa / fb)),
        (true, true) => Err("every cell of both grids that was loaded met the SLO, so neither maximum is known"),
        _ => Err("one grid stopped below the other's max stable concurrency with every cell meeting the SLO, so which GPU holds more is not known"),
    }
}

/// The notes' values and why some are missing.
#[derive(Default)]
struct Fill {
    values: Values,
    /// Text the template shows as is (already markdown).
    raw: Values,
    missing: Vec<String>,
}

impl Fill {
    /// A value from runs' labels and numbers: made literal in markdown.
    fn set(&mut self, key: &str, value: impl AsRef<str>) {
        self.values.insert(key.to_string(), md(value.as_ref()));
    }

    fn set_or(&mut self, key: &str, value: Option<String>, why: impl FnOnce() -> String) {
        match value {
            Some(v) => self.set(key, v),
            None => self.miss(why()),
        }
    }

    fn flag(&mut self, key: &str) {
        self.values.insert(key.to_string(), String::new());
    }

    fn miss(&mut self, why: String) {
        if !self.missing.contains(&why) {
            self.missing.push(why);
        }
    }
}

/// Orders two GPUs by measured capacity, smaller first: the peak throughput within the SLO of
/// the first workload (batch, then chat) both have; failing that, the profiles' memory; failing
/// that, the labels. Returns them and the reason in words.
fn order<'a>(x: Gpu<'a>, y: Gpu<'a>) -> (Gpu<'a>, Gpu<'a>, String) {
    for w in [Workload::Batch, Workload::Chat] {
        if let (Some(bx), Some(by)) = (x.best(w), y.best(w)) {
            if bx.output_tok_s != by.output_tok_s {
                let why = format!("ordered by {} peak throughput within the SLO (A the lower)", w.as_str());
                return if bx.output_tok_s < by.output_tok_s { (x, y, why) } else { (y, x, why) };
            }
        }
    }
    let mem = |g: &Gpu| profile_of(&g.label).map(|p| p.memory_gib);
    if let (Some(mx), Some(my)) = (mem(&x), mem(&y)) {
        if mx != my {
            let why = "ordered by the GPU profiles' memory (A the smaller): the runs give no peak throughput to compare".to_string();
            return if mx < my { (x, y, why) } else { (y, x, why) };
        }
    }
    let why = "ordered by label: neither the runs nor the GPU profiles say which is larger".to_string();
    if x.label <= y.label { (x, y, why) } else { (y, x, why) }
}

/// A configuration's load: "16" or "4 rps".
fn load(p: &Pick) -> String {
    p.rate.map_or(p.concurrency.to_string(), |r| format!("{r} rps"))
}

/// The notes filled from `runs` (finished or stopped views, any order; the same notes whatever
/// the order). `prices`: $/hour by GPU label or profile key, overriding the profiles' typical
/// prices.
pub fn notes(runs: &[RunView], prices: &BTreeMap<String, f64>) -> String {
    let mut labels: Vec<&str> = Vec::new();
    for r in runs {
        if !labels.contains(&r.info.spec.gpu.as_str()) {
            labels.push(&r.info.spec.gpu);
        }
    }
    let mut f = Fill::default();
    let mut caveats: Vec<String> = Vec::new();
    let (a, b, order_reason) = match labels.as_slice() {
        [] => (None, None, None),
        [one] => (Some(Gpu::new(one, runs, prices)), None, None),
        [x, y, ..] => {
            let (a, b, why) = order(Gpu::new(x, runs, prices), Gpu::new(y, runs, prices));
            (Some(a), Some(b), Some(why))
        }
    };
    if labels.len() > 2 {
        caveats.push(format!("Runs on {} GPUs were given; the notes compare two: {} and {}.", labels.len(), labels[0], labels[1]));
    }
    let gpus: Vec<(&Gpu, &str)> = [(a.as_ref(), "a"), (b.as_ref(), "b")].into_iter().filter_map(|(g, s)| g.map(|g| (g, s))).collect();
    if b.is_none() && a.is_some() {
        f.miss("GPU scaling: the runs of only one GPU were given".into());
    }
    if let Some(why) = &order_reason {
        f.set("order_reason", why);
    }
    for &(g, side) in &gpus {
        f.set(&format!("gpu_{side}"), &g.label);
        f.set_or(&format!("gpu_{side}_vram"), g.vram.clone(), || format!("VRAM of {}: it matches no GPU profile (data/profiles/gpus.toml)", g.label));
        f.set_or(&format!("gpu_{side}_price"), g.price.map(|p| format!("~${p:.2}/hr")), || {
            format!("cost on {}: no price (it matches no GPU profile): give caplab report --price \"{}=USD_PER_HOUR\" (or prices in the page)", g.label, g.label)
        });
    }
    // Per workload and GPU: the tables' numbers.
    for w in [Workload::Chat, Workload::Batch] {
        let p = w.as_str();
        if gpus.iter().any(|(g, _)| g.run(w).is_some()) {
            f.flag(&format!("has_{p}"));
        }
        for &(g, side) in &gpus {
            let why = || g.why_not(w);
            let best = g.best(w);
            f.set_or(&format!("{p}_{side}_best_concurrency"), best.map(load), why);
            f.set_or(&format!("{p}_{side}_best_max_new_tokens"), best.map(|b| b.max_new_tokens.to_string()), why);
            f.set_or(&format!("{p}_{side}_peak"), best.map(|b| n0(b.output_tok_s)), why);
            f.set_or(&format!("{p}_{side}_best_p95"), best.and_then(|b| b.e2e_p95_ms).map(n0), why);
            let stable = g.stable(w);
            f.set_or(&format!("{p}_{side}_max_stable"), stable.as_ref().map(|s| s.words.clone()), || match g.run(w) {
                Some((r, _)) if r.cells.iter().all(|c| c.rate.is_some()) => format!("max stable concurrency ({p}) on {}: its run is an open loop (rates, not concurrencies)", g.label),
                _ => why(),
            });
            let at = g.verdict(w).and_then(|v| v.at_max_stable.as_ref()).and_then(|p| p.e2e_p95_ms);
            f.set_or(&format!("{p}_{side}_p95"), at.map(n0), why);
            if g.price.is_some() {
                f.set_or(&format!("{p}_{side}_cost"), g.cost(w).map(|c| format!("${c:.3}")), why);
            }
        }
        if let (Some(a), Some(b)) = (&a, &b) {
            match (a.stable(w), b.stable(w)) {
                (Some(sa), Some(sb)) => match stable_ratio(&sa, &sb) {
                    Ok(r) => f.set(&format!("{p}_ratio_concurrency"), r),
                    Err(why) => f.miss(format!("max stable concurrency, B vs A ({p}): {why}")),
                },
                _ => {}
            }
            if let Some(r) = a.best(w).zip(b.best(w)).and_then(|(x, y)| ratio(x.output_tok_s, y.output_tok_s)) {
                f.set(&format!("{p}_ratio_throughput"), r);
            }
            if let (Some(ca), Some(cb)) = (a.cost(w), b.cost(w)) {
                if ca > 0.0 && cb > 0.0 {
                    // Within 5 % either way, neither is cheaper in any sense worth a sentence.
                    f.set(&format!("{p}_ratio_cost"), if (ca - cb).abs() <= 0.05 * ca.min(cb) { "about the same".to_string() } else if ca <= cb { format!("A is {:.1}× cheaper", cb / ca) } else { format!("B is {:.1}× cheaper", ca / cb) });
                }
            }
            if let (Some((ra, _)), Some((rb, _))) = (a.run(w), b.run(w)) {
                let why = not_comparable(&ra.info.spec, &rb.info.spec);
                if !why.is_empty() {
                    caveats.push(format!("The {p} runs {} and {} are not like for like: {}.", ra.info.id, rb.info.id, why.join("; ")));
                }
            }
        }
    }
    chat_vs_batch(&mut f, &gpus);
    if let (Some(a), Some(b)) = (&a, &b) {
        insights(&mut f, a, b);
        recommendations(&mut f, a, b);
    }
    if let Some(a) = &a {
        sufficient(&mut f, a);
    }
    f.raw.insert("sources".into(), sources(&gpus));
    if gpus.iter().flat_map(|(g, _)| [g.chat.as_ref(), g.batch.as_ref()]).flatten().any(|(r, _)| r.info.target.simulated) {
        caveats.push("Runs marked SIMULATED come from caplab's simulator: their numbers are a model's, not a GPU's.".into());
    }
    if !f.missing.is_empty() {
        let list: Vec<String> = f.missing.iter().map(|m| format!("- {}", md(m))).collect();
        f.raw.insert("not_measured".into(), format!("## Not measured\n\n{}", list.join("\n")));
    }
    if !caveats.is_empty() {
        let list: Vec<String> = caveats.iter().map(|c| format!("- {}", md(c))).collect();
        f.raw.insert("caveats".into(), format!("## Caveats\n\n{}", list.join("\n")));
    }
    let mut values = f.values;
    values.extend(f.raw);
    fill(TEMPLATE, &values)
}

/// Chat against batch on one GPU (A when it has both, else B): the table and three sentences.
fn chat_vs_batch(f: &mut Fill, gpus: &[(&Gpu, &str)]) {
    let Some(g) = gpus.iter().map(|(g, _)| *g).find(|g| g.best(Workload::Chat).is_some() && g.best(Workload::Batch).is_some()) else {
        if gpus.iter().any(|(g, _)| g.run(Workload::Chat).is_some()) && gpus.iter().any(|(g, _)| g.run(Workload::Batch).is_some()) {
            f.miss("chat vs batch: no GPU has both a chat and a batch cell that met its SLO".into());
        }
        return;
    };
    let (c, bt) = (g.best(Workload::Chat).expect("checked"), g.best(Workload::Batch).expect("checked"));
    f.set("cvb_gpu", &g.label);
    for (p, pick, w) in [("chat", c, Workload::Chat), ("batch", bt, Workload::Batch)] {
        f.set(&format!("cvb_{p}_concurrency"), load(pick));
        f.set(&format!("cvb_{p}_throughput"), n0(pick.output_tok_s));
        if let Some(p95) = pick.e2e_p95_ms {
            f.set(&format!("cvb_{p}_p95"), n0(p95));
        }
        if let Some(slo) = g.slo(w) {
            f.set(&format!("cvb_{p}_slo"), slo);
        }
    }
    let bound = |w: Workload| g.run(w).and_then(|(r, _)| r.cells.first().and_then(|c| c.slo.e2e_ms));
    if let (Some(sc), Some(sb), Some(bc), Some(bb)) = (g.slo(Workload::Chat), g.slo(Workload::Batch), bound(Workload::Chat), bound(Workload::Batch)) {
        let how = if bb > bc {
            "a looser latency objective than chat (no interactive user waiting)"
        } else if bb < bc {
            "a tighter latency objective than chat"
        } else {
            "the same end-to-end objective as chat"
        };
        f.set("cvb_latency_sentence", format!("Batch was held to {how}: {sb} against chat's {sc}"));
    }
    let words = match ratio(c.output_tok_s, bt.output_tok_s).as_deref() {
        Some(r) if r.starts_with("B is") => format!("batch reached {:.1}× chat's throughput", bt.output_tok_s / c.output_tok_s),
        Some(_) => format!("chat reached {:.1}× batch's throughput", c.output_tok_s / bt.output_tok_s),
        None => String::new(),
    };
    if !words.is_empty() {
        f.set(
            "cvb_throughput_sentence",
            format!("On {}, batch peaked at {} tok/s ({}) against chat's {} tok/s ({}): {words}", g.label, n0(bt.output_tok_s), bt.label(), n0(c.output_tok_s), c.label()),
        );
    }
    let length = match bt.max_new_tokens.cmp(&c.max_new_tokens) {
        std::cmp::Ordering::Greater => "longer outputs than",
        std::cmp::Ordering::Less => "shorter outputs than",
        std::cmp::Ordering::Equal => "the same output length as",
    };
    f.set("cvb_length_sentence", format!("Batch's best configuration used {length} chat's: max_new_tokens {} against {}", bt.max_new_tokens, c.max_new_tokens));
}

/// The Key Insights, each left out when its numbers are missing.
fn insights(f: &mut Fill, a: &Gpu, b: &Gpu) {
    match (b.stable(Workload::Chat), b.chat.as_ref()) {
        (Some(s), Some((r, _))) => {
            let slo = b.slo(Workload::Chat).unwrap_or_default();
            let sentence = if s.open {
                let why = r.cells.iter().rev().find(|c| c.under_reached()).map(|c| format!("; c{} reached only {} in flight", c.concurrency, c.reached_concurrency())).unwrap_or_default();
                format!("{} held at least {} concurrent chat users within the SLO ({slo}): no cell of its grid broke it{why}, so its limit lies higher", b.label, s.n)
            } else {
                format!("{} can push concurrency to {} concurrent chat users before p95 breaks the SLO ({slo})", b.label, s.n)
            };
            f.set("insight_concurrency", sentence);
        }
        _ => f.miss(format!("how far B pushes chat concurrency: {}", b.why_not(Workload::Chat))),
    }
    for w in [Workload::Chat, Workload::Batch] {
        if let (Some(pa), Some(pb)) = (a.best(w), b.best(w)) {
            if let Some(r) = ratio(pa.output_tok_s, pb.output_tok_s) {
                f.set(
                    &format!("insight_scaling_{}", w.as_str()),
                    format!("Peak {} throughput within the SLO: {r} ({} tok/s on A against {} on B)", w.as_str(), n0(pa.output_tok_s), n0(pb.output_tok_s)),
                );
            }
        }
    }
    if a.best(Workload::Chat).is_none() && a.best(Workload::Batch).is_none() || b.best(Workload::Chat).is_none() && b.best(Workload::Batch).is_none() {
        f.miss("throughput scaling: needs a run of the same workload meeting its SLO on both GPUs".into());
    }
    let cost = [Workload::Batch, Workload::Chat].into_iter().find_map(|w| Some((w, a.cost(w)?, b.cost(w)?)));
    match cost {
        Some((w, ca, cb)) => {
            let verdict = if (ca - cb).abs() <= 0.05 * ca.min(cb) {
                "they cost about the same per token (within 5 %)".to_string()
            } else if ca <= cb {
                format!("A is {:.1}× cheaper per token than B", cb / ca)
            } else {
                format!("B is {:.1}× cheaper per token than A", ca / cb)
            };
            f.set("insight_cost", format!("At their {} peaks, {} costs ${ca:.3} and {} ${cb:.3} per million output tokens: {verdict}", w.as_str(), a.label, b.label));
        }
        None if a.price.is_some() && b.price.is_some() => f.miss("cost per token: needs a run of the same workload meeting its SLO on both GPUs".into()),
        None => {}
    }
}

/// When to recommend B: each point only where B measured more than A.
fn recommendations(f: &mut Fill, a: &Gpu, b: &Gpu) {
    match (a.stable(Workload::Chat), b.stable(Workload::Chat)) {
        (Some(sa), Some(sb)) if !sa.open && sb.n > sa.n => f.set(
            "recommend_users",
            format!("Client needs more than {} concurrent chat users: the most {} held within the chat SLO ({} held {})", sa.n, a.label, b.label, sb.words),
        ),
        (Some(sa), Some(_)) if sa.open => f.miss(format!("a user count above which to recommend B: every chat cell of {} that was loaded met the SLO, so its limit is not known", a.label)),
        (Some(_), Some(_)) => f.miss(format!("a user count above which to recommend B: {} held no more concurrent chat users than {}", b.label, a.label)),
        (None, _) => f.miss(format!("a user count above which to recommend B: {}", a.why_not(Workload::Chat))),
        (_, None) => f.miss(format!("a user count above which to recommend B: {}", b.why_not(Workload::Chat))),
    }
    let tput = [Workload::Batch, Workload::Chat].into_iter().find_map(|w| Some((w, a.best(w)?, b.best(w)?)));
    match tput {
        Some((w, pa, pb)) if pb.output_tok_s > pa.output_tok_s => f.set(
            "recommend_throughput",
            format!("Throughput requirements above {} tok/s: the {} peak of {} within the SLO ({} reached {} tok/s)", n0(pa.output_tok_s), w.as_str(), a.label, b.label, n0(pb.output_tok_s)),
        ),
        Some((w, _, _)) => f.miss(format!("a throughput above which to recommend B: B's {} peak is not above A's", w.as_str())),
        None => f.miss("a throughput above which to recommend B: needs a run of the same workload meeting its SLO on both GPUs".into()),
    }
    // A latency SLA that only B meets at a load above A's limit.
    if let (Some(sa), Some((rb, _))) = (a.stable(Workload::Chat).filter(|s| !s.open), b.chat.as_ref()) {
        let beyond = rb.cells.iter().filter(|c| c.slo_state() == caplab_shared::result::SloState::Pass && c.rate.is_none() && c.reached_concurrency() > sa.n).map(|c| c.reached_concurrency()).max();
        match (beyond, b.slo(Workload::Chat)) {
            (Some(n), Some(slo)) => f.set("recommend_latency", format!("A latency SLA of {slo} at more than {} concurrent chat users: {} met it with up to {n} in flight, {} only up to {}", sa.n, b.label, a.label, sa.n)),
            _ => f.miss(format!("a latency SLA to recommend B for: no chat cell of {} above {} in flight met the SLO", b.label, sa.n)),
        }
    }
}

/// When A is sufficient: what it measured within the SLO.
fn sufficient(f: &mut Fill, a: &Gpu) {
    match a.stable(Workload::Chat) {
        Some(s) => {
            let slo = a.slo(Workload::Chat).unwrap_or_default();
            f.set("sufficient_chat", format!("Chat with up to {} concurrent users within the SLO ({slo})", s.n));
        }
        None => f.miss(format!("when {} is sufficient for chat: {}", a.label, a.why_not(Workload::Chat))),
    }
    match (a.best(Workload::Batch), a.cost(Workload::Batch)) {
        (Some(p), Some(c)) => f.set("sufficient_batch", format!("Batch jobs that need at most {} tok/s, at ${c:.3} per million output tokens", n0(p.output_tok_s))),
        (Some(p), None) => f.set("sufficient_batch", format!("Batch jobs that need at most {} tok/s", n0(p.output_tok_s))),
        (None, _) => f.miss(format!("when {} is sufficient for batch: {}", a.label, a.why_not(Workload::Batch))),
    }
}

/// Where the numbers come from: the runs used, A's first, each with how it was measured.
fn sources(gpus: &[(&Gpu, &str)]) -> String {
    let mut out = String::from("Runs used (caplab run ids):\n");
    let mut any = false;
    for (g, side) in gpus {
        for (r, _) in [g.chat.as_ref(), g.batch.as_ref()].into_iter().flatten() {
            any = true;
            let kind = match (r.info.target.simulated, &r.info.imported_from) {
                (true, None) => "SIMULATED".to_string(),
                (true, Some(from)) => format!("IMPORTED and SIMULATED: {from}"),
                (false, Some(from)) => format!("IMPORTED: measured by another tool ({from})"),
                (false, None) => "measured".to_string(),
            };
            let engine = caplab_shared::decide::capacity(r, None).engine;
            let model = if r.info.spec.model.trim().is_empty() { "not recorded".to_string() } else { md(&r.info.spec.model) };
            out.push_str(&format!(
                "- `{}` ({}): {} on {} ({}), model {}, engine {}, SLO {}\n",
                md(&r.info.id),
                side.to_uppercase(),
                r.info.spec.workload.as_str(),
                md(&g.label),
                md(&kind),
                model,
                md(&engine),
                g.slo(r.info.spec.workload).unwrap_or_default()
            ));
        }
    }
    if !any {
        out.push_str("- none: no run with a finished cell was given\n");
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::run;

    const RTX: &str = "NVIDIA RTX 2000 Ada 16GB · m (simulated)";
    const A100: &str = "NVIDIA A100 80GB SXM · m (simulated)";

    /// The notes' four runs: a chat and a batch grid on the RTX 2000 (A) and the A100 (B).
    fn four() -> Vec<RunView> {
        vec![
            run("c-rtx", RTX, Workload::Chat, &[(1, 128, 40.0, 900.0, true), (8, 128, 280.0, 2500.0, true), (16, 128, 400.0, 4200.0, false)]),
            run("b-rtx", RTX, Workload::Batch, &[(8, 256, 500.0, 9000.0, true), (16, 256, 700.0, 14000.0, true), (32, 256, 800.0, 31000.0, false)]),
            run("c-a100", A100, Workload::Chat, &[(8, 128, 900.0, 800.0, true), (32, 128, 2800.0, 1900.0, true), (64, 128, 4000.0, 3300.0, false)]),
            run("b-a100", A100, Workload::Batch, &[(16, 256, 2000.0, 5000.0, true), (32, 256, 3500.0, 8000.0, true)]),
        ]
    }

    fn notes_of(runs: &[RunView]) -> String {
        notes(runs, &BTreeMap::new())
    }

    /// Every sentence of the notes, each as it reads with the four runs.
    const SENTENCES: &[&str] = &[
        "1. Batch was held to a looser latency objective than chat (no interactive user waiting): p95 end-to-end ≤ 30000 ms against chat's p95 end-to-end ≤ 3000 ms",
        "2. On NVIDIA RTX 2000 Ada 16GB · m (simulated), batch peaked at 700 tok/s (c16 × 256) against chat's 280 tok/s (c8 × 128): batch reached 2.5× chat's throughput",
        "3. Batch's best configuration used longer outputs than chat's: max_new_tokens 256 against 128",
        "A is NVIDIA RTX 2000 Ada 16GB · m (simulated), B is NVIDIA A100 80GB SXM · m (simulated): ordered by batch peak throughput within the SLO (A the lower).",
        "1. NVIDIA A100 80GB SXM · m (simulated) can push concurrency to 32 concurrent chat users before p95 breaks the SLO (p95 end-to-end ≤ 3000 ms)",
        "2. Peak chat throughput within the SLO: B is 10.0× A (280 tok/s on A against 2,800 on B)",
        "3. Peak batch throughput within the SLO: B is 5.0× A (700 tok/s on A against 3,500 on B)",
        "4. At their batch peaks, NVIDIA RTX 2000 Ada 16GB · m (simulated) costs $0.095 and NVIDIA A100 80GB SXM · m (simulated) $0.118 per million output tokens: A is 1.2× cheaper per token than B",
        "- Client needs more than 8 concurrent chat users: the most NVIDIA RTX 2000 Ada 16GB · m (simulated) held within the chat SLO (NVIDIA A100 80GB SXM · m (simulated) held 32)",
        "- Throughput requirements above 700 tok/s: the batch peak of NVIDIA RTX 2000 Ada 16GB · m (simulated) within the SLO (NVIDIA A100 80GB SXM · m (simulated) reached 3,500 tok/s)",
        "- A latency SLA of p95 end-to-end ≤ 3000 ms at more than 8 concurrent chat users: NVIDIA A100 80GB SXM · m (simulated) met it with up to 32 in flight, NVIDIA RTX 2000 Ada 16GB · m (simulated) only up to 8",
        "- Chat with up to 8 concurrent users within the SLO (p95 end-to-end ≤ 3000 ms)",
        "- Batch jobs that need at most 700 tok/s, at $0.095 per million output tokens",
    ];

    #[test]
    fn every_sentence_and_table_from_the_four_runs() {
        let md = notes_of(&four());
        for s in SENTENCES {
            assert!(md.lines().any(|l| l == *s), "missing {s:?} in\n{md}");
        }
        assert!(!md.contains("{{") && !md.contains("n/a") && !md.contains("Not measured"), "{md}");
        assert!(md.contains("# Day 003 – GPU Scaling Notes (NVIDIA RTX 2000 Ada 16GB · m (simulated) vs NVIDIA A100 80GB SXM · m (simulated))"));
        assert!(md.contains("## When to Recommend NVIDIA A100 80GB SXM · m (simulated)") && md.contains("## When NVIDIA RTX 2000 Ada 16GB · m (simulated) is Sufficient"));
        // The tables: best configurations per GPU, chat vs batch on A, and B against A.
        for row in [
            "| NVIDIA RTX 2000 Ada 16GB · m (simulated) | 16 | 256 | 700 | 14,000 |",
            "| NVIDIA A100 80GB SXM · m (simulated) | 32 | 256 | 3,500 | 8,000 |",
            "| Chat | 8 | 280 | 2,500 | p95 end-to-end ≤ 3000 ms |",
            "| Batch | 16 | 700 | 14,000 | p95 end-to-end ≤ 30000 ms |",
            "| A: NVIDIA RTX 2000 Ada 16GB · m (simulated) | 16 GiB | ~$0.24/hr |",
            // Chat: max stable 8 → 32, peak 280 → 2,800, cost $0.238 → $0.148 per million.
            "| Max stable concurrency | 8 | 32 | B is 4.0× A |",
            "| Peak throughput (tok/s) | 280 | 2,800 | B is 10.0× A |",
            "| p95 @ max stable concurrency (ms) | 2,500 | 1,900 | — |",
            "| Cost per 1M output tokens (USD) | $0.238 | $0.148 | B is 1.6× cheaper |",
            // Batch: the A100's grid stopped at c32 with every cell passing: its limit may be higher.
            "| Max stable concurrency | 16 | ≥ 32 (the grid's highest) | B is ≥ 2.0× A |",
            "| Peak throughput (tok/s) | 700 | 3,500 | B is 5.0× A |",
            "| Cost per 1M output tokens (USD) | $0.095 | $0.118 | A is 1.2× cheaper |",
        ] {
            assert!(md.lines().any(|l| l == row), "missing {row:?} in\n{md}");
        }
        assert!(md.contains("- `c-rtx` (A): chat on NVIDIA RTX 2000 Ada 16GB · m (simulated) (SIMULATED), model m"), "{md}");
        assert!(md.contains("SIMULATED"), "simulated runs are labelled");
    }

    #[test]
    fn the_same_notes_whatever_order_the_gpus_come_in() {
        let runs = four();
        let reversed: Vec<RunView> = runs.iter().rev().cloned().collect();
        let a100_first: Vec<RunView> = vec![runs[2].clone(), runs[3].clone(), runs[0].clone(), runs[1].clone()];
        let md = notes_of(&runs);
        assert_eq!(notes_of(&reversed), md);
        assert_eq!(notes_of(&a100_first), md, "the A100 given first is still B, the larger");
        // The notes: recommending the RTX for throughput above the A100's peak.
        assert!(!md.contains("## When to Recommend NVIDIA RTX"), "{md}");
        assert!(!md.contains("above 3,500 tok/s"), "{md}");
    }

    #[test]
    fn where_a_wins_a_metric_the_ratio_says_a_is_n_times_b() {
        // A (lower batch peak) holds more chat users and a higher chat peak than B.
        let runs = vec![
            run("c-x", "pod-x", Workload::Chat, &[(8, 128, 600.0, 900.0, true), (32, 128, 1900.0, 2500.0, true), (64, 128, 2000.0, 3900.0, false)]),
            run("b-x", "pod-x", Workload::Batch, &[(16, 256, 700.0, 9000.0, true), (32, 256, 900.0, 31000.0, false)]),
            run("c-y", "pod-y", Workload::Chat, &[(8, 128, 400.0, 2000.0, true), (16, 128, 800.0, 3500.0, false)]),
            run("b-y", "pod-y", Workload::Batch, &[(16, 256, 1400.0, 8000.0, true), (32, 256, 1500.0, 32000.0, false)]),
        ];
        let md = notes_of(&runs);
        assert!(md.contains("A is pod-x, B is pod-y: ordered by batch peak throughput"), "{md}");
        assert!(md.lines().any(|l| l == "| Max stable concurrency | 32 | 8 | A is 4.0× B |"), "{md}");
        assert!(md.lines().any(|l| l == "| Peak throughput (tok/s) | 1,900 | 400 | A is 4.8× B |"), "{md}");
        assert!(md.lines().any(|l| l == "| Peak throughput (tok/s) | 700 | 1,400 | B is 2.0× A |"), "{md}");
        assert!(md.contains("2. Peak chat throughput within the SLO: A is 4.8× B (1,900 tok/s on A against 400 on B)"), "{md}");
        // B holds fewer users: no user count recommends it, and the notes say why.
        assert!(!md.contains("Client needs more than"), "{md}");
        assert!(md.contains("- a user count above which to recommend B: pod-y held no more concurrent chat users than pod-x"), "{md}");
        assert!(md.contains("- Throughput requirements above 700 tok/s: the batch peak of pod-x"), "{md}");
        // No price for these labels: no cost sentence, no cost cells, and the reason.
        assert!(!md.contains("cheaper per token") && md.lines().any(|l| l == "| Cost per 1M output tokens (USD) | — | — | — |"), "{md}");
        assert!(md.contains("- cost on pod-x: no price (it matches no GPU profile): give caplab report --price \"pod-x=USD\\_PER\\_HOUR\"") || md.contains("- cost on pod-x: no price"), "{md}");
        // Given prices, the cost sentence appears.
        let priced = notes(&runs, &BTreeMap::from([("pod-x".to_string(), 1.0), ("pod-y".to_string(), 1.0)]));
        assert!(priced.contains("4. At their batch peaks, pod-x costs $0.397 and pod-y $0.198 per million output tokens: B is 2.0× cheaper per token than A"), "{priced}");
    }

    /// A run list without some of the four runs' inputs: the sentences that needed them are
    /// gone (never filled with "n/a"), the rest stay, and the reason is listed.
    fn without(drop: &[&str]) -> String {
        let runs: Vec<RunView> = four().into_iter().filter(|r| !drop.contains(&r.info.id.as_str())).collect();
        notes_of(&runs)
    }

    fn assert_clean(md: &str) {
        assert!(!md.contains("n/a") && !md.contains("{{") && !md.contains("— ms") && !md.contains("— tok/s") && !md.contains("x |"), "{md}");
        assert!(md.contains("## Not measured"), "{md}");
    }

    #[test]
    fn without_a_batch_run_the_batch_sentences_go_and_say_why() {
        let md = without(&["b-rtx", "b-a100"]);
        assert_clean(&md);
        for gone in [1, 2, 3, 6, 7, 9, 12] {
            assert!(!md.contains(SENTENCES[gone].split_once(' ').unwrap().1), "sentence {gone} should be gone:\n{md}");
        }
        assert!(!md.contains("## Batch") && !md.contains("Chat vs Batch"), "{md}");
        assert!(md.contains("- no batch run on NVIDIA RTX 2000 Ada 16GB · m (simulated)"), "{md}");
        // Chat decides the order now; the chat sentences stay.
        assert!(md.contains("ordered by chat peak throughput"), "{md}");
        for kept in [4, 5, 8, 11] {
            let text = SENTENCES[kept].split_once(' ').unwrap().1;
            assert!(md.contains(text), "sentence {kept} should stay: {text}\n{md}");
        }
        assert!(md.contains("3. At their chat peaks"), "cost falls back to chat: {md}");
        assert!(md.contains("- Throughput requirements above 280 tok/s: the chat peak of"), "{md}");
    }

    #[test]
    fn without_b_chat_the_concurrency_insight_and_user_advice_go() {
        let md = without(&["c-a100"]);
        assert_clean(&md);
        assert!(!md.contains("can push concurrency to") && !md.contains("Client needs more than") && !md.contains("A latency SLA"), "{md}");
        assert!(md.contains("- how far B pushes chat concurrency: no chat run on NVIDIA A100 80GB SXM · m (simulated)"), "{md}");
        assert!(md.lines().any(|l| l == "| Max stable concurrency | 8 | — | — |"), "{md}");
        assert!(md.contains(SENTENCES[6].split_once(' ').unwrap().1), "batch scaling stays: {md}");
    }

    #[test]
    fn without_a_chat_or_a_batch_run_the_sufficiency_sentences_go() {
        let md = without(&["c-rtx"]);
        assert_clean(&md);
        assert!(!md.contains("Chat with up to") && !md.contains("Client needs more than"), "{md}");
        assert!(md.contains("- when NVIDIA RTX 2000 Ada 16GB · m (simulated) is sufficient for chat: no chat run on"), "{md}");
        assert!(md.contains("- Batch jobs that need at most 700 tok/s"), "{md}");
        let md = without(&["b-rtx"]);
        assert!(!md.contains("Batch jobs that need at most"), "{md}");
        assert!(md.contains("- when NVIDIA RTX 2000 Ada 16GB · m (simulated) is sufficient for batch: no batch run on"), "{md}");
    }

    #[test]
    fn an_open_ended_chat_limit_on_a_gives_no_user_count_or_latency_advice() {
        // The RTX chat grid stopped at c8 with every cell passing: how many it holds is unknown.
        let mut runs = four();
        runs[0] = run("c-rtx", RTX, Workload::Chat, &[(1, 128, 40.0, 900.0, true), (8, 128, 280.0, 2500.0, true)]);
        let md = notes_of(&runs);
        assert!(!md.contains("Client needs more than") && !md.contains("A latency SLA"), "{md}");
        assert!(md.contains("every chat cell of NVIDIA RTX 2000 Ada 16GB · m (simulated) that was loaded met the SLO, so its limit is not known"), "{md}");
        assert!(md.lines().any(|l| l == "| Max stable concurrency | ≥ 8 (the grid's highest) | 32 | — |"), "{md}");
        assert!(md.contains("max stable concurrency, B vs A (chat): one grid stopped below"), "{md}");
        assert!(md.contains("- Chat with up to 8 concurrent users within the SLO"), "what A held is still true: {md}");
    }

    #[test]
    fn an_unreached_concurrency_is_never_claimed() {
        // The search: c256 with 64 requests on B, every cell within the SLO.
        let mut runs = four();
        let mut c = run("c-a100", A100, Workload::Chat, &[(16, 128, 900.0, 800.0, true), (64, 128, 2800.0, 1900.0, true), (256, 128, 3000.0, 2500.0, true)]);
        c.cells[2].requests_ok = 64;
        c.cells[2].peak_concurrency = 64;
        runs[2] = c;
        let md = notes_of(&runs);
        assert!(!md.contains("256 concurrent") && !md.contains("| 256 | B is"), "{md}");
        assert!(md.contains("1. NVIDIA A100 80GB SXM · m (simulated) held at least 64 concurrent chat users within the SLO (p95 end-to-end ≤ 3000 ms): no cell of its grid broke it; c256 reached only 64 in flight, so its limit lies higher"), "{md}");
        assert!(md.lines().any(|l| l == "| Max stable concurrency | 8 | ≥ 64 (c256 reached only 64 in flight) | B is ≥ 8.0× A |"), "{md}");
    }

    #[test]
    fn one_gpu_one_failing_run_and_no_runs_at_all() {
        let md = notes_of(&[run("c-pod", "rtx-pod", Workload::Chat, &[(8, 128, 300.0, 4000.0, false)])]);
        assert_clean(&md);
        assert!(!md.contains("GPU Scaling Notes") && !md.contains("When to Recommend") && !md.contains("Key Insights"), "{md}");
        assert!(md.contains("- GPU scaling: the runs of only one GPU were given"), "{md}");
        assert!(md.contains("- chat on rtx-pod: no cell met the SLO (p95 end-to-end ≤ 3000 ms): the lowest p95 was 4000 ms at c8 × 128"), "{md}");
        assert!(md.contains("- VRAM of rtx-pod: it matches no GPU profile"), "{md}");
        assert!(md.contains("## When rtx-pod is Sufficient\n\n- Development/testing\n"), "{md}");
        let none = notes_of(&[]);
        assert!(none.contains("- none: no run with a finished cell was given") && !none.contains("Sufficient"), "{none}");
    }

    #[test]
    fn a_stopped_run_whose_only_cell_was_cut_short_is_not_called_a_miss() {
        let mut stopped = run("c-pod", "rtx-pod", Workload::Chat, &[(8, 128, 300.0, 1986.0, true)]);
        stopped.cells[0].partial = true;
        let md = notes_of(&[stopped]);
        assert!(!md.contains("no cell met the SLO"), "{md}");
        assert!(md.contains("c8 × 128 was cut short by the stop after 16 requests ended (p95 so far 1986 ms), so it is not judged against the SLO"), "{md}");
    }
}
