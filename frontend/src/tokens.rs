//! Tokens per request, as the server counted them: the shown run's prompt and output
//! histograms, its cells added up (`caplab_shared::token_hist`).

use caplab_shared::token_hist::TokenHist;
use leptos::prelude::*;

use crate::Ctx;

#[component]
pub fn TokensPanel() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let hists = move || {
        ctx.current.with(|c| {
            let mut prompt = TokenHist::default();
            let mut output = TokenHist::default();
            for cell in c.iter().flat_map(|v| v.cells.iter()) {
                prompt.add(&cell.prompt_tokens_hist);
                output.add(&cell.completion_tokens_hist);
            }
            (prompt, output)
        })
    };
    view! {
        <Show when=move || { let (p, o) = hists(); !p.is_empty() || !o.is_empty() }>
            <div class="card" id="tokens">
                <h2>"Tokens per request"</h2>
                <p class="muted small">"Every successful measured request of the run's finished cells, by the prompt and output tokens the server counted (usage). Hover a bar for its range."</p>
                <div class="token-hists">
                    <div id="prompt-tokens-hist" inner_html=move || hists().0.svg("prompt tokens")></div>
                    <div id="output-tokens-hist" inner_html=move || hists().1.svg("output tokens")></div>
                </div>
            </div>
        </Show>
    }
}
