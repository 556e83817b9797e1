//! A model profile from a Hugging Face `config.json` (`caplab sim --model-config PATH`): on a
//! pod the model's folder is local, so any dense decoder vLLM serves can be simulated without a
//! profile entry. Qwen2 (2.5), Qwen3, Llama and Mistral configs are read; a mixture of experts
//! or a quantized model is refused naming the field that says so, as is any other
//! `model_type` or a missing shape field.
//!
//! Parameters are counted from the shapes, as the checkpoints hold them: embeddings (and an
//! LM head unless tied), per layer the attention projections (with Qwen2's q/k/v biases and
//! Qwen3's q/k norms), the gated MLP (gate, up, down) and two RMSNorms, and the final norm.

use std::path::Path;

use serde_json::Value;

use super::profile::Model;

/// The `model_type`s read, and whether their q/k/v projections carry a bias by default.
const TYPES: &[(&str, bool)] = &[("qwen2", true), ("qwen3", false), ("llama", false), ("mistral", false)];

/// Fields that mark a mixture of experts.
const MOE_FIELDS: &[&str] = &["num_experts", "num_local_experts", "n_routed_experts", "moe_intermediate_size", "num_experts_per_tok", "moe_layer_freq"];

/// Why a config cannot be simulated.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("{path}: {why}")]
    Read { path: String, why: String },
    #[error("{path}: `{field}` is {value}: a mixture-of-experts model; the simulator models dense models only")]
    MixtureOfExperts { path: String, field: String, value: String },
    #[error("{path}: `quantization_config` ({method}): a quantized model; the simulator models bf16/fp16 weights only")]
    Quantized { path: String, method: String },
    #[error("{path}: `model_type` is {value}; the simulator reads {supported} configs")]
    UnsupportedType { path: String, value: String, supported: String },
    #[error("{path}: `{field}` is missing or not a positive whole number")]
    Missing { path: String, field: String },
    #[error("{path}: `{field}` is {value}: {why}")]
    Invalid { path: String, field: String, value: String, why: String },
}

/// Reads `path` (a config.json, or the model folder holding one) into a model profile. The
/// served name is the folder, as `vllm serve FOLDER` names the model.
pub fn read(path: &Path) -> Result<Model, ConfigError> {
    let file = if path.is_dir() { path.join("config.json") } else { path.to_path_buf() };
    let shown = file.display().to_string();
    let text = std::fs::read_to_string(&file).map_err(|e| ConfigError::Read { path: shown.clone(), why: e.to_string() })?;
    let v: Value = serde_json::from_str(&text).map_err(|e| ConfigError::Read { path: shown.clone(), why: format!("not JSON: {e}") })?;
    let folder = file.parent().filter(|p| !p.as_os_str().is_empty()).map_or_else(|| ".".to_string(), |p| p.display().to_string());
    parse(&v, &shown, &folder)
}

/// The profile of a parsed config (`shown` names it in errors, `served_name` is what the
/// simulated server lists).
pub fn parse(v: &Value, shown: &str, served_name: &str) -> Result<Model, ConfigError> {
    let path = shown.to_string();
    let Some(obj) = v.as_object() else {
        return Err(ConfigError::Read { path, why: "not a JSON object".into() });
    };
    // Multimodal and newer configs nest the language model's under text_config.
    let c = match obj.get("text_config").and_then(Value::as_object) {
        Some(t) if !obj.contains_key("hidden_size") => t,
        _ => obj,
    };
    for field in MOE_FIELDS {
        if let Some(x) = c.get(*field).or_else(|| obj.get(*field)) {
            if !x.is_null() && x.as_u64() != Some(0) {
                return Err(ConfigError::MixtureOfExperts { path, field: (*field).into(), value: x.to_string() });
            }
        }
    }
    if let Some(q) = c.get("quantization_config").or_else(|| obj.get("quantization_config")).filter(|q| !q.is_null()) {
        let method = q.get("quant_method").and_then(Value::as_str).unwrap_or("unnamed method").to_string();
        return Err(ConfigError::Quantized { path, method });
    }
    let model_type = c.get("model_type").or_else(|| obj.get("model_type")).and_then(Value::as_str).unwrap_or("");
    let supported = TYPES.iter().map(|t| t.0).collect::<Vec<_>>().join(", ");
    let Some(&(_, qkv_bias_default)) = TYPES.iter().find(|t| t.0 == model_type) else {
        let value = if model_type.is_empty() { "missing".to_string() } else { format!("{model_type:?}") };
        return Err(ConfigError::UnsupportedType { path, value, supported });
    };
    let num = |field: &str| c.get(field).and_then(Value::as_u64).filter(|n| *n > 0).ok_or_else(|| ConfigError::Missing { path: path.clone(), field: field.into() });
    let hidden = num("hidden_size")?;
    let layers = num("num_hidden_layers")?;
    let heads = num("num_attention_heads")?;
    let kv_heads = match c.get("num_key_value_heads") {
        None | Some(Value::Null) => heads,
        Some(_) => num("num_key_value_heads")?,
    };
    let intermediate = num("intermediate_size")?;
    let vocab = num("vocab_size")?;
    let max_context = num("max_position_embeddings")?;
    let head_dim = match c.get("head_dim") {
        None | Some(Value::Null) => hidden / heads,
        Some(_) => num("head_dim")?,
    };
    if kv_heads > heads || heads % kv_heads != 0 {
        return Err(ConfigError::Invalid { path, field: "num_key_value_heads".into(), value: kv_heads.to_string(), why: format!("it must divide num_attention_heads ({heads})") });
    }
    let dtype = c.get("torch_dtype").or_else(|| c.get("dtype")).or_else(|| obj.get("torch_dtype")).and_then(Value::as_str).unwrap_or("bfloat16");
    if !["bfloat16", "float16", "float32"].contains(&dtype) {
        return Err(ConfigError::Invalid { path, field: "torch_dtype".into(), value: format!("{dtype:?}"), why: "the simulator models 16-bit weights (vLLM serves float32 checkpoints in 16 bits too)".into() });
    }
    let tied = c.get("tie_word_embeddings").or_else(|| obj.get("tie_word_embeddings")).and_then(Value::as_bool).unwrap_or(false);
    let qkv_bias = c.get("attention_bias").and_then(Value::as_bool).unwrap_or(qkv_bias_default);
    let mlp_bias = c.get("mlp_bias").and_then(Value::as_bool).unwrap_or(false);
    let (q, kv) = (heads * head_dim, kv_heads * head_dim);
    let attention = hidden * q + 2 * hidden * kv + q * hidden + if qkv_bias { q + 2 * kv } else { 0 } + if model_type == "qwen3" { 2 * head_dim } else { 0 };
    let mlp = 3 * hidden * intermediate + if mlp_bias { 2 * intermediate + hidden } else { 0 };
    let per_layer = attention + mlp + 2 * hidden;
    let params = vocab * hidden * if tied { 1 } else { 2 } + layers * per_layer + hidden;
    let small = |n: u64, field: &str| u32::try_from(n).map_err(|_| ConfigError::Invalid { path: path.clone(), field: field.into(), value: n.to_string(), why: "too large".into() });
    Ok(Model {
        key: served_name.to_string(),
        served_name: served_name.to_string(),
        params,
        layers: small(layers, "num_hidden_layers")?,
        hidden: small(hidden, "hidden_size")?,
        heads: small(heads, "num_attention_heads")?,
        kv_heads: small(kv_heads, "num_key_value_heads")?,
        head_dim: small(head_dim, "head_dim")?,
        vocab: small(vocab, "vocab_size")?,
        max_context: small(max_context, "max_position_embeddings")?,
        source: format!("{shown} ({model_type}, {dtype}{})", if tied { ", tied embeddings" } else { "" }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::profile;

    fn fixture(name: &str) -> Result<Model, ConfigError> {
        read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/model-configs").join(name))
    }

    #[test]
    fn the_shapes_and_parameter_counts_match_the_profiles() {
        // The profiles' counts come from the checkpoints (and the anchors' random models).
        for (file, key) in [("qwen2.5-0.5b.json", "qwen2.5-0.5b"), ("qwen2.5-1.5b.json", "qwen2.5-1.5b"), ("qwen2.5-7b.json", "qwen2.5-7b"), ("llama-3.1-8b.json", "llama-3.1-8b")] {
            let m = fixture(file).unwrap();
            let p = profile::model(key).unwrap();
            assert_eq!(m.params, p.params, "{file}");
            assert_eq!((m.layers, m.hidden, m.heads, m.kv_heads, m.head_dim, m.vocab, m.max_context), (p.layers, p.hidden, p.heads, p.kv_heads, p.head_dim, p.vocab, p.max_context), "{file}");
            assert_eq!(m.kv_bytes_per_token(), p.kv_bytes_per_token());
        }
    }

    #[test]
    fn qwen3_and_mistral_read_their_own_fields() {
        // Qwen3-0.6B: head_dim 128 although hidden / heads is 64; q/k norms, no q/k/v bias;
        // 596,049,920 parameters (its safetensors' count), tied embeddings.
        let q3 = fixture("qwen3-0.6b.json").unwrap();
        assert_eq!((q3.head_dim, q3.kv_heads, q3.params), (128, 8, 596_049_920));
        // Mistral-7B-v0.3: 7,248,023,552 parameters, untied head, 32k vocabulary.
        let mi = fixture("mistral-7b-v0.3.json").unwrap();
        assert_eq!((mi.layers, mi.kv_heads, mi.head_dim, mi.vocab, mi.params), (32, 8, 128, 32_768, 7_248_023_552));
        assert!(mi.served_name.ends_with("model-configs"), "served as its folder: {}", mi.served_name);
    }

    #[test]
    fn moe_quantized_and_unknown_configs_are_refused_naming_the_field() {
        let e = fixture("refused-moe.json").unwrap_err();
        assert!(matches!(&e, ConfigError::MixtureOfExperts { field, .. } if field == "num_local_experts"), "{e}");
        assert!(e.to_string().contains("`num_local_experts` is 8"), "{e}");
        let e = fixture("refused-quantized.json").unwrap_err();
        assert!(e.to_string().contains("`quantization_config` (awq)"), "{e}");
        let e = parse(&serde_json::json!({"model_type": "gpt2", "n_embd": 768}), "x.json", "x").unwrap_err();
        assert!(e.to_string().contains("`model_type` is \"gpt2\"") && e.to_string().contains("qwen2, qwen3, llama, mistral"), "{e}");
        let e = parse(&serde_json::json!({"model_type": "llama", "hidden_size": 4096}), "x.json", "x").unwrap_err();
        assert_eq!(e, ConfigError::Missing { path: "x.json".into(), field: "num_hidden_layers".into() });
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/model-configs/llama-3.1-8b.json")).unwrap()).unwrap();
        v["num_key_value_heads"] = 5.into();
        assert!(parse(&v, "x.json", "x").unwrap_err().to_string().contains("must divide num_attention_heads (32)"));
    }
}
