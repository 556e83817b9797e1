//! The simulator's prefix cache, block-hashed as vLLM's: a prompt's text is cut into blocks of
//! 16 tokens (the simulator counts 4 bytes a token: 64 bytes a block), each block's hash chained
//! on the hash of the blocks before it, so a block matches only when everything before it
//! matches too. A prompt is served from the cache up to its first block not held, and always
//! computes its last token (to sample from), as vLLM does; its full blocks are then held, the
//! least recently used dropped past the KV cache's size. Hits and queries count tokens, as
//! `vllm:prefix_cache_hits_total` and `vllm:prefix_cache_queries_total` do.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

// Tokens a block holds: the simulated KV cache's own block size.
use super::profile::BLOCK_SIZE as BLOCK_TOKENS;

/// The simulator's tokenizer: one token per 4 bytes (`model::count_tokens`).
const BLOCK_BYTES: usize = 4 * BLOCK_TOKENS as usize;

pub struct PrefixCache {
    /// Held blocks by chained hash, with when each was last used.
    held: HashMap<u64, u64>,
    /// Most blocks held (the KV cache's blocks).
    capacity: usize,
    clock: u64,
    pub hits: u64,
    pub queries: u64,
}

impl PrefixCache {
    pub fn new(capacity_blocks: usize) -> PrefixCache {
        PrefixCache { held: HashMap::new(), capacity: capacity_blocks.max(1), clock: 0, hits: 0, queries: 0 }
    }

    /// The chained hashes of `text`'s full blocks.
    fn block_hashes(text: &[u8]) -> Vec<u64> {
        let mut prev = 0u64;
        text.chunks_exact(BLOCK_BYTES)
            .map(|block| {
                let mut h = DefaultHasher::new();
                prev.hash(&mut h);
                block.hash(&mut h);
                prev = h.finish();
                prev
            })
            .collect()
    }

    /// Looks `text` (a prompt of `prompt_tokens` tokens) up: the tokens found cached, at most all
    /// but the last. Its blocks are held from now on.
    pub fn serve(&mut self, text: &[u8], prompt_tokens: u32) -> u32 {
        self.clock += 1;
        let hashes = Self::block_hashes(text);
        let found = hashes.iter().take_while(|h| self.held.contains_key(h)).count() as u32;
        let cached = (found * BLOCK_TOKENS).min(prompt_tokens.saturating_sub(1));
        for h in hashes {
            self.held.insert(h, self.clock);
        }
        self.queries += u64::from(prompt_tokens);
        self.hits += u64::from(cached);
        self.evict();
        cached
    }

    /// Drops the least recently used blocks past the capacity (down to 90 % of it, so the sort
    /// is paid once every many requests, not each time).
    fn evict(&mut self) {
        if self.held.len() <= self.capacity {
            return;
        }
        let keep = (self.capacity * 9 / 10).max(1);
        let mut by_age: Vec<(u64, u64)> = self.held.iter().map(|(h, used)| (*used, *h)).collect();
        by_age.sort_unstable();
        for (_, h) in &by_age[..by_age.len() - keep] {
            self.held.remove(h);
        }
    }
}

/// A chat prompt as the simulator's template renders it: each message's role and content, in order.
pub fn chat_text(messages: &[serde_json::Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        out.extend_from_slice(b"<|");
        out.extend_from_slice(m.get("role").and_then(|r| r.as_str()).unwrap_or("user").as_bytes());
        out.extend_from_slice(b"|>\n");
        match m.get("content") {
            Some(serde_json::Value::String(s)) => out.extend_from_slice(s.as_bytes()),
            Some(serde_json::Value::Array(parts)) => {
                for p in parts.iter().filter_map(|p| p.get("text").and_then(|t| t.as_str())) {
                    out.extend_from_slice(p.as_bytes());
                }
            }
            _ => {}
        }
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_head_is_served_by_whole_blocks_and_only_while_everything_before_matches() {
        let mut cache = PrefixCache::new(1000);
        let head = "s".repeat(64 * 10); // ten blocks
        let a = format!("{head}{}", "a".repeat(300));
        let b = format!("{head}{}", "b".repeat(300));
        let tokens = |t: &str| (t.len() as u32).div_ceil(4);
        assert_eq!(cache.serve(a.as_bytes(), tokens(&a)), 0, "nothing is cached at first");
        assert_eq!(cache.serve(b.as_bytes(), tokens(&b)), 160, "the ten shared blocks");
        assert_eq!(cache.serve(a.as_bytes(), tokens(&a)), 160 + 64, "a again: its own four more full blocks too");
        // The same blocks after a different first block never match: hashes are chained.
        let shifted = format!("x{}", &a[1..]);
        assert_eq!(cache.serve(shifted.as_bytes(), tokens(&shifted)), 0);
        // A prompt held whole still computes its last token.
        let exact = "q".repeat(128);
        cache.serve(exact.as_bytes(), 32);
        assert_eq!(cache.serve(exact.as_bytes(), 32), 31);
        assert_eq!(cache.queries, u64::from(tokens(&a) * 2 + tokens(&b) + tokens(&shifted) + 64));
        assert_eq!(cache.hits, 160 + 224 + 31);
    }

    #[test]
    fn the_least_recently_used_blocks_go_past_the_capacity() {
        let mut cache = PrefixCache::new(10);
        let old = "o".repeat(64 * 8);
        cache.serve(old.as_bytes(), 128);
        for i in 0..5 {
            let other = format!("{i}").repeat(64 * 4);
            cache.serve(other.as_bytes(), 64);
        }
        assert!(cache.held.len() <= 10);
        assert_eq!(cache.serve(old.as_bytes(), 128), 0, "evicted");
    }
}
