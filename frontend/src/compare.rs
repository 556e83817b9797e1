//! Runs side by side: the notes' tables filled from the ticked runs (best configuration, chat
//! vs batch, GPU scaling with speedups, cost per million output tokens from editable $/hour),
//! their frontiers overlaid, and both as files. The server fills the notes (`/api/compare`,
//! the same code as `caplab report`), so the page and the markdown always agree.

use std::collections::BTreeMap;

use caplab_shared::decide::Comparison;
use leptos::prelude::*;

use crate::{api, download, Ctx};

fn query(ids: &[String], prices: &BTreeMap<String, f64>) -> String {
    let prices = serde_json::to_string(prices).unwrap_or_default();
    let enc = |s: &str| js_sys::encode_uri_component(s).as_string().unwrap_or_default();
    format!("runs={}&prices={}", enc(&ids.join(",")), enc(&prices))
}

#[component]
pub fn ComparePanel() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    // $/hour the user typed, by GPU label; others come from the GPU profiles.
    let prices = RwSignal::new(BTreeMap::<String, f64>::new());
    let result = RwSignal::new(None::<Result<Comparison, String>>);
    // Only the answer to the latest request is shown (two quick price edits may answer out of order).
    let asked = StoredValue::new(0u64);
    Effect::new(move |_| {
        let ids = ctx.compare.get();
        let given = prices.get();
        if ids.is_empty() {
            return;
        }
        let this = asked.get_value() + 1;
        asked.set_value(this);
        leptos::task::spawn_local(async move {
            let answer = api::get_json::<Comparison>(&format!("api/compare?{}", query(&ids, &given))).await;
            if asked.get_value() == this {
                result.set(Some(answer));
            }
        });
    });
    let close = move |_| {
        result.set(None);
        ctx.compare.set(Vec::new());
    };
    let notes_link = move || format!("api/report?{}", query(&ctx.compare.get(), &prices.get()));
    let save_svg = move |_| {
        if let Some(Ok(c)) = result.get_untracked() {
            download::save("caplab_compare_frontier.svg", "image/svg+xml", &c.frontier_svg);
        }
    };
    view! {
        <Show when=move || ctx.compare.with(|c| !c.is_empty())>
            <div class="card compare" id="compare">
                <div class="row">
                    <h2>"Compare " {move || ctx.compare.with(Vec::len)} " runs"</h2>
                    <a id="compare-notes" class="button" href=notes_link download="">"Notes (markdown)"</a>
                    <button type="button" id="compare-svg" on:click=save_svg>"Frontier SVG"</button>
                    <button type="button" id="compare-close" on:click=close>"Close"</button>
                </div>
                {move || match result.get() {
                    None => view! { <p class="muted">"filling the notes…"</p> }.into_any(),
                    Some(Err(e)) => view! { <p class="form-error" id="compare-error">{e}</p> }.into_any(),
                    Some(Ok(c)) => view! {
                        <table class="prices">
                            <tr><th>"GPU"</th><th>"$/hour"</th><th>"from"</th></tr>
                            {c.prices.iter().map(|p| {
                                let gpu = p.gpu.clone();
                                view! {
                                    <tr>
                                        <td>{p.gpu.clone()}</td>
                                        <td><input type="number" class="price" min="0" step="0.01" data-gpu=p.gpu.clone()
                                            prop:value=p.usd_per_hour.map(|v| v.to_string()).unwrap_or_default()
                                            on:change=move |ev| {
                                                let text = event_target_value(&ev);
                                                let gpu = gpu.clone();
                                                prices.update(|m| match text.trim().parse::<f64>() {
                                                    Ok(v) if v.is_finite() && v >= 0.0 => { m.insert(gpu, v); }
                                                    _ => { m.remove(&gpu); }
                                                });
                                            }/></td>
                                        <td class="muted small">{p.from.clone()}</td>
                                    </tr>
                                }
                            }).collect_view()}
                        </table>
                        <div class="surface-wrap" id="compare-frontier" inner_html=c.frontier_svg.clone()></div>
                        <div class="notes" id="compare-notes-html" inner_html=c.html.clone()></div>
                    }.into_any(),
                }}
            </div>
        </Show>
    }
}
