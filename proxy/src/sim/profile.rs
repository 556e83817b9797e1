//! GPU and model profiles (`data/profiles/*.toml`, each number with its source) and a
//! deployment of one model on one GPU as vLLM would size it: weights, the activation and CUDA
//! reserve, KV-cache blocks, and the batch limits vLLM picks for that device.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

const GPUS: &str = include_str!("../../../data/profiles/gpus.toml");
const MODELS: &str = include_str!("../../../data/profiles/models.toml");

/// Tokens per KV-cache block (vLLM's CUDA default).
pub const BLOCK_SIZE: u32 = 16;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

#[derive(Deserialize, Clone, Debug)]
pub struct Gpu {
    #[serde(skip)]
    pub key: String,
    pub name: String,
    pub memory_gib: f64,
    pub bandwidth_gbs: f64,
    pub bf16_tflops: f64,
    pub price_usd_h: f64,
    pub large_defaults: bool,
    /// Fixed cost of one engine step (scheduling, sampling, launches), ms; GPUs default to 2.
    pub step_overhead_ms: Option<f64>,
}

#[derive(Deserialize, Clone, Debug)]
pub struct Model {
    #[serde(skip)]
    pub key: String,
    pub served_name: String,
    pub params: u64,
    pub layers: u32,
    pub hidden: u32,
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub vocab: u32,
    pub max_context: u32,
    pub source: String,
}

impl Model {
    /// KV-cache bytes per token, all layers, bf16 (K and V).
    pub fn kv_bytes_per_token(&self) -> f64 {
        2.0 * f64::from(self.layers) * f64::from(self.kv_heads) * f64::from(self.head_dim) * 2.0
    }

    pub fn weight_bytes(&self) -> f64 {
        self.params as f64 * 2.0
    }
}

fn table<T: for<'de> Deserialize<'de>>(text: &str, what: &str) -> BTreeMap<String, T> {
    toml::from_str(text).unwrap_or_else(|e| panic!("data/profiles/{what}.toml is not valid: {e}"))
}

pub fn gpus() -> Vec<Gpu> {
    table::<Gpu>(GPUS, "gpus").into_iter().map(|(k, g)| Gpu { key: k, ..g }).collect()
}

pub fn models() -> Vec<Model> {
    table::<Model>(MODELS, "models").into_iter().map(|(k, m)| Model { key: k, ..m }).collect()
}

pub fn gpu(name: &str) -> Result<Gpu, String> {
    let all = gpus();
    let keys: Vec<String> = all.iter().map(|g| g.key.clone()).collect();
    all.into_iter().find(|g| g.key == name).ok_or_else(|| format!("unknown GPU {name:?}; the profiles are: {}", keys.join(", ")))
}

pub fn model(name: &str) -> Result<Model, String> {
    let all = models();
    let keys: Vec<String> = all.iter().map(|m| m.key.clone()).collect();
    all.into_iter().find(|m| m.key == name).ok_or_else(|| format!("unknown model {name:?}; the profiles are: {}", keys.join(", ")))
}

/// What an engine step costs besides the GPU's roofline, and how close the GPU comes to its
/// peaks. Fitted to measured runs by `caplab sim --calibrate` (`sim::calibrate`; the default,
/// for vLLM 0.26, is `data/calibration/vllm-0.26-h200.json`), or assumed (`assumed`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EngineCosts {
    /// Share of the GPU's dense bf16 peak reached by the model's matrix products.
    pub compute_efficiency: f64,
    /// Share of the GPU's memory bandwidth reached reading weights and KV cache.
    pub bandwidth_efficiency: f64,
    /// The engine core's CPU time per step (scheduling, preparing inputs, launching, handling
    /// outputs), ms.
    pub step_ms: f64,
    /// The engine core's CPU time per sequence in a step, µs.
    pub seq_us: f64,
    /// The CPU work of one step overlaps the GPU work of the previous one (vLLM's async
    /// scheduling): a step takes max(GPU, CPU); without, GPU + CPU.
    pub overlap: bool,
    /// Steps between a token being computed and the engine sending it out (async scheduling
    /// hands a step's outputs over while the next steps run): latency, not throughput.
    #[serde(default)]
    pub output_lag_steps: f64,
    /// vLLM's API server: one Python process on one core.
    pub frontend: FrontendCosts,
}

/// The API server's CPU work, on its one core (`sim::frontend` models its event loop): each
/// request (parsing, chat template, tokenizing, handing it to the engine), each output token
/// (detokenizing, stats) and each chunk written to a stream. A saturated front end delays
/// requests and tokens alike: that is the ceiling that bends vLLM's throughput on a fast GPU.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct FrontendCosts {
    /// Per request, ms.
    pub request_ms: f64,
    /// Per output token, µs.
    pub token_us: f64,
    /// Per chunk written to a stream (one per stream and loop iteration, holding every token
    /// that came since), µs.
    #[serde(default)]
    pub chunk_us: f64,
    /// Added to each output token's cost per 1,000 streams open at once, µs (Python's work
    /// grows with the objects alive: more streams, slower tokens).
    pub token_us_per_1k_streams: f64,
}

impl FrontendCosts {
    /// Output tokens per second the front end can pass with `streams` open, when each chunk
    /// carries `per_chunk` tokens (its ceiling).
    pub fn ceiling_tok_s(&self, streams: f64, per_chunk: f64) -> f64 {
        1e6 / (self.token_us + self.token_us_per_1k_streams * streams / 1000.0 + self.chunk_us / per_chunk.max(1.0)).max(1e-9)
    }
}

impl EngineCosts {
    /// Costs assumed, not measured: efficiencies 0.55 and 0.8, a fixed step cost added to the
    /// roofline, no front end. What the simulator used before any calibration, and still the
    /// model of the CPU profile (its step cost fitted to one number of the CPU anchor).
    pub fn assumed(step_ms: f64) -> EngineCosts {
        EngineCosts { compute_efficiency: 0.55, bandwidth_efficiency: 0.8, step_ms, seq_us: 0.0, overlap: false, output_lag_steps: 0.0, frontend: FrontendCosts::default() }
    }

    /// Seconds of engine-core CPU for a step of `seqs` sequences.
    pub fn cpu_seconds(&self, seqs: usize) -> f64 {
        (self.step_ms * 1e3 + self.seq_us * seqs as f64) / 1e6
    }
}

/// vLLM's engine arguments the simulator honours (None: vLLM's default for the device).
#[derive(Clone, Debug)]
pub struct EngineArgs {
    pub gpu_memory_utilization: f64,
    pub max_num_seqs: Option<u32>,
    pub max_num_batched_tokens: Option<u32>,
    pub max_model_len: Option<u32>,
    pub tensor_parallel_size: u32,
    pub num_gpu_blocks_override: Option<u32>,
}

impl Default for EngineArgs {
    fn default() -> Self {
        // vLLM 0.32's default utilization (vllm/config/cache.py); 0.9 in earlier versions.
        EngineArgs { gpu_memory_utilization: 0.92, max_num_seqs: None, max_num_batched_tokens: None, max_model_len: None, tensor_parallel_size: 1, num_gpu_blocks_override: None }
    }
}

/// One model served on one GPU (or `tensor_parallel_size` of them), sized as vLLM sizes it.
#[derive(Clone, Debug)]
pub struct Deployment {
    pub gpu: Gpu,
    pub model: Model,
    pub tp: u32,
    pub max_num_seqs: u32,
    pub max_num_batched_tokens: u32,
    pub max_model_len: u32,
    pub utilization: f64,
    /// Per GPU.
    pub weight_bytes: f64,
    /// Per GPU: peak activations of a profiling pass at max_num_batched_tokens, plus the CUDA
    /// context and graphs.
    pub reserve_bytes: f64,
    pub kv_blocks: u32,
    /// What a step costs: the default calibration unless another is given (`with_costs`).
    pub costs: EngineCosts,
}

impl Deployment {
    /// The same deployment with other engine costs (a calibration's).
    pub fn with_costs(self, costs: EngineCosts) -> Deployment {
        Deployment { costs, ..self }
    }

    /// Sizes the deployment, or says why vLLM would refuse to start it.
    pub fn new(gpu: Gpu, model: Model, args: &EngineArgs) -> Result<Deployment, String> {
        let u = args.gpu_memory_utilization;
        if !(u > 0.0 && u <= 1.0) {
            return Err(format!("gpu_memory_utilization must be above 0 and at most 1, not {u}"));
        }
        let tp = args.tensor_parallel_size;
        if !(1..=8).contains(&tp) || model.heads % tp != 0 {
            return Err(format!("tensor_parallel_size {tp}: give 1 to 8, dividing the model's {} attention heads", model.heads));
        }
        let (seqs_default, tokens_default) = if gpu.large_defaults { (1024, 8192) } else { (256, 2048) };
        let max_num_seqs = args.max_num_seqs.unwrap_or(seqs_default);
        let max_num_batched_tokens = args.max_num_batched_tokens.unwrap_or(tokens_default);
        if max_num_seqs == 0 || max_num_batched_tokens == 0 {
            return Err("max_num_seqs and max_num_batched_tokens must be at least 1".into());
        }
        let max_model_len = args.max_model_len.unwrap_or(model.max_context);
        if max_model_len == 0 || max_model_len > model.max_context {
            return Err(format!(
                "max_model_len {max_model_len}: {} supports 1 to {} tokens (its max_position_embeddings)",
                model.key, model.max_context
            ));
        }
        let tpf = f64::from(tp);
        let usable = gpu.memory_gib * GIB * u;
        let weight_bytes = model.weight_bytes() / tpf;
        let cuda_overhead = if gpu.step_overhead_ms.is_some() { 0.0 } else { 1.0 * GIB };
        let activation = f64::from(max_num_batched_tokens) * f64::from(model.hidden) * 2.0 * 16.0 / tpf
            + f64::from(max_num_seqs.min(max_num_batched_tokens)) * f64::from(model.vocab) * 4.0 / tpf;
        let reserve_bytes = activation + cuda_overhead;
        let kv_bytes = usable - weight_bytes - reserve_bytes;
        let gib = |b: f64| format!("{:.2} GiB", b / GIB);
        if kv_bytes <= 0.0 {
            return Err(format!(
                "{} does not fit on {}: its weights need {} per GPU and activations plus the CUDA context {}, but utilization {u} of {:.1} GiB gives {}. Raise --gpu-memory-utilization, add GPUs (--tensor-parallel-size) or pick a smaller model",
                model.key, gpu.name, gib(weight_bytes), gib(reserve_bytes), gpu.memory_gib, gib(usable)
            ));
        }
        let block_bytes = model.kv_bytes_per_token() / tpf * f64::from(BLOCK_SIZE);
        let kv_blocks = match args.num_gpu_blocks_override {
            Some(b) => b,
            None => (kv_bytes / block_bytes).floor() as u32,
        };
        if kv_blocks == 0 {
            return Err(format!("no KV-cache blocks fit: {} left for the cache, {} per block", gib(kv_bytes), gib(block_bytes)));
        }
        let kv_tokens = u64::from(kv_blocks) * u64::from(BLOCK_SIZE);
        if u64::from(max_model_len) > kv_tokens {
            // vLLM's own words (vllm/v1/core/kv_cache_utils.py).
            return Err(format!(
                "The model's max seq len ({max_model_len}) is larger than the maximum number of tokens that can be stored in KV cache ({kv_tokens}). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine."
            ));
        }
        // A profile with its own step cost (the CPU) keeps the assumed model; GPUs take the
        // default calibration.
        let costs = match gpu.step_overhead_ms {
            Some(ms) => EngineCosts::assumed(ms),
            None => super::calibrate::default_calibration().costs.clone(),
        };
        Ok(Deployment { gpu, model, tp, max_num_seqs, max_num_batched_tokens, max_model_len, utilization: u, weight_bytes, reserve_bytes, kv_blocks, costs })
    }

    /// Memory in use per GPU as `nvidia-smi` would show it: vLLM takes its share at start.
    pub fn memory_used_bytes(&self) -> f64 {
        self.gpu.memory_gib * GIB * self.utilization
    }

    /// Seconds one engine step takes: the GPU's time (a roofline of compute against memory
    /// traffic for the step's tokens, at the costs' efficiencies) and the engine core's CPU
    /// time (per step and per sequence), overlapped or one after the other as the costs say.
    /// `decode`: context lengths of the sequences decoding one token; `prefill`: (tokens
    /// computed now, tokens already in the cache) per sequence prefilling a chunk.
    pub fn step_seconds(&self, decode: &[u32], prefill: &[(u32, u32)]) -> f64 {
        let gpu = self.gpu_seconds(decode, prefill);
        let cpu = self.costs.cpu_seconds(decode.len() + prefill.len());
        if self.costs.overlap {
            gpu.max(cpu)
        } else {
            gpu + cpu
        }
    }

    /// The GPU's part of a step (see `step_seconds`).
    pub fn gpu_seconds(&self, decode: &[u32], prefill: &[(u32, u32)]) -> f64 {
        let (mfu, bandwidth_efficiency) = (self.costs.compute_efficiency, self.costs.bandwidth_efficiency);
        let m = &self.model;
        let tokens = decode.len() as f64 + prefill.iter().map(|p| f64::from(p.0)).sum::<f64>();
        if tokens == 0.0 {
            return 0.0;
        }
        let attn_per_pair = 4.0 * f64::from(m.layers) * f64::from(m.heads) * f64::from(m.head_dim);
        let attention: f64 = decode.iter().map(|&ctx| attn_per_pair * f64::from(ctx)).sum::<f64>()
            + prefill.iter().map(|&(n, before)| attn_per_pair * f64::from(n) * (f64::from(before) + f64::from(n) / 2.0)).sum::<f64>();
        let flops = 2.0 * m.params as f64 * tokens + attention;
        let kv_read: f64 = decode.iter().map(|&c| f64::from(c)).sum::<f64>() + prefill.iter().map(|&(n, b)| f64::from(n + b)).sum::<f64>();
        let bytes = m.weight_bytes() + m.kv_bytes_per_token() * (kv_read + tokens);
        let tp = f64::from(self.tp);
        let compute_s = flops / tp / (self.gpu.bf16_tflops * 1e12 * mfu);
        let memory_s = bytes / tp / (self.gpu.bandwidth_gbs * 1e9 * bandwidth_efficiency);
        // Tensor parallelism adds two all-reduces per layer.
        let tp_s = if self.tp > 1 { 2.0 * f64::from(m.layers) * 15e-6 } else { 0.0 };
        compute_s.max(memory_s) + tp_s
    }

    /// A label for results: "NVIDIA A100 80GB SXM · Qwen/Qwen2.5-7B-Instruct".
    pub fn label(&self) -> String {
        let tp = if self.tp > 1 { format!(" ×{}", self.tp) } else { String::new() };
        format!("{}{tp} · {}", self.gpu.name, self.model.served_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(g: &str, m: &str, args: EngineArgs) -> Result<Deployment, String> {
        Deployment::new(gpu(g)?, model(m)?, &args)
    }

    #[test]
    fn profiles_load_and_unknown_names_list_the_valid_ones() {
        assert!(gpus().len() >= 6 && models().len() >= 4);
        let e = gpu("a100").unwrap_err();
        assert!(e.contains("a100-40gb") && e.contains("h200-141gb"), "{e}");
        let e = model("qwen").unwrap_err();
        assert!(e.contains("qwen2.5-7b") && e.contains("llama-3.1-8b"), "{e}");
        // The KV bytes per token that vLLM allocates for each model (bf16).
        assert_eq!(model("qwen2.5-1.5b").unwrap().kv_bytes_per_token(), 28_672.0);
        assert_eq!(model("llama-3.1-8b").unwrap().kv_bytes_per_token(), 131_072.0);
    }

    #[test]
    fn kv_capacity_follows_memory_and_impossible_settings_are_refused() {
        let small = deploy("rtx2000-ada-16gb", "qwen2.5-1.5b", EngineArgs::default()).unwrap();
        let big = deploy("h100-80gb", "qwen2.5-1.5b", EngineArgs::default()).unwrap();
        assert!(big.kv_blocks > 5 * small.kv_blocks, "{} vs {}", big.kv_blocks, small.kv_blocks);
        assert_eq!((small.max_num_seqs, small.max_num_batched_tokens), (256, 2048));
        assert_eq!((big.max_num_seqs, big.max_num_batched_tokens), (1024, 8192));
        // A 7B model's 14.2 GiB of weights do not fit a 16 GB card.
        let e = deploy("rtx2000-ada-16gb", "qwen2.5-7b", EngineArgs::default()).unwrap_err();
        assert!(e.contains("does not fit") && e.contains("14.19 GiB"), "{e}");
        // …but fit two of them.
        assert!(deploy("rtx2000-ada-16gb", "qwen2.5-7b", EngineArgs { tensor_parallel_size: 2, max_model_len: Some(4096), ..Default::default() }).is_ok());
        let e = deploy("a100-40gb", "qwen2.5-1.5b", EngineArgs { gpu_memory_utilization: 1.2, ..Default::default() }).unwrap_err();
        assert!(e.contains("at most 1, not 1.2"), "{e}");
        let e = deploy("a100-40gb", "qwen2.5-1.5b", EngineArgs { num_gpu_blocks_override: Some(0), ..Default::default() }).unwrap_err();
        assert!(e.contains("no KV-cache blocks"), "{e}");
        let e = deploy("l4-24gb", "llama-3.1-8b", EngineArgs::default()).unwrap_err();
        assert!(e.contains("max seq len (131072) is larger than"), "{e}");
    }

    #[test]
    fn step_time_is_memory_bound_in_decode_and_compute_bound_in_prefill() {
        // The assumed costs (efficiencies 0.55 and 0.8, a 2 ms step cost added), to check the
        // roofline itself; the calibrated costs are checked against the anchors (fidelity.rs).
        let d = deploy("h100-80gb", "qwen2.5-7b", EngineArgs::default()).unwrap().with_costs(EngineCosts::assumed(2.0));
        let one = d.step_seconds(&[512], &[]);
        let batch = d.step_seconds(&[512; 64], &[]);
        // Decode reads the weights once per step: 64 sequences cost far less than 64 steps.
        assert!(batch < 3.0 * one, "{one} vs {batch}");
        // 15.2 GB of weights at 80% of 3.35 TB/s ≈ 5.7 ms, plus the 2 ms step cost.
        assert!((0.0070..0.0085).contains(&one), "{one}");
        // An 8k-token prefill is compute bound: 2 × 7.6e9 × 8192 / (989e12 × 0.55) ≈ 0.23 s.
        let prefill = d.step_seconds(&[], &[(8192, 0)]);
        assert!((0.2..0.35).contains(&prefill), "{prefill}");
        let rtx = deploy("rtx2000-ada-16gb", "qwen2.5-1.5b", EngineArgs::default()).unwrap().with_costs(EngineCosts::assumed(2.0));
        assert!(rtx.step_seconds(&[512], &[]) > 2.0 * one / 2.5);
        // With async scheduling (the calibrated costs) CPU and GPU overlap: a step is the larger.
        let overlapped = EngineCosts { overlap: true, step_ms: 3.0, seq_us: 10.0, ..EngineCosts::assumed(0.0) };
        let o = deploy("h100-80gb", "qwen2.5-0.5b", EngineArgs::default()).unwrap().with_costs(overlapped);
        let (gpu, cpu) = (o.gpu_seconds(&[100; 64], &[]), o.costs.cpu_seconds(64));
        assert!(cpu > gpu, "a 0.5B model is CPU bound on an H100: {cpu} vs {gpu}");
        assert_eq!(o.step_seconds(&[100; 64], &[]), cpu);
    }
}
