//! Your own prompts against the target's context, before anything is sent: a document or
//! prompt that cannot fit is refused with its number, its tokens as the target counts them and
//! the context's size, instead of failing as `context_length` on every request that carries it.

use caplab_shared::{ExperimentSpec, FieldError, TargetInfo, Workload};

use super::tokens::CountTokens;
use super::{summarize_prompt, Inputs};

/// How many of the longest items (by characters) are counted: the target's tokenizer is asked
/// once each, so a large file costs a handful of requests, not one per item.
const LONGEST: usize = 8;

/// The first of the user's inputs (the longest ones) that does not fit `target`'s context with
/// room for one output token, as a refusal of the `inputs` field; None when all fit, when the
/// inputs are the built-in ones or a trace, or when the target has no context or no tokenizer
/// (those prompts are sent, and a server that refuses them says so per request).
pub async fn too_long(spec: &ExperimentSpec, inputs: &Inputs, target: &TargetInfo, tokenizer: &impl CountTokens) -> Option<FieldError> {
    let given = spec.inputs.as_ref().filter(|i| !i.is_trace())?;
    let ctx = target.max_model_len?;
    // (item number from 1, the text the tokenizer is asked about)
    let mut items: Vec<(usize, String)> = match spec.workload {
        Workload::Batch => inputs.documents.iter().enumerate().map(|(i, d)| (i + 1, summarize_prompt(d))).collect(),
        Workload::Chat => inputs.chats.iter().enumerate().map(|(i, m)| (i + 1, m.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n"))).collect(),
    };
    items.sort_by_key(|(_, text)| std::cmp::Reverse(text.len()));
    let what = match spec.workload {
        Workload::Batch => "document",
        Workload::Chat => "prompt",
    };
    for (n, text) in items.into_iter().take(LONGEST) {
        let Ok(tokens) = tokenizer.count(spec.workload, &text).await else { return None };
        if tokens >= ctx {
            let sent_as = if spec.workload == Workload::Batch { " (in the notes' summarization prompt)" } else { "" };
            return Some(FieldError::new(
                "inputs",
                format!("{what} {n} of {} is {tokens} tokens{sent_as} as the target counts them; its context is {ctx} tokens, prompt and output together: shorten it or leave it out", given.name),
            ));
        }
    }
    None
}
