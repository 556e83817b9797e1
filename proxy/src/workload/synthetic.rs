//! Synthetic prompts of an exact length in tokens, as the target counts them. Each prompt is
//! random words from a vocabulary of words the target's tokenizer reads as one token each (a
//! leading space and three letters: one token in every BPE tokenizer we know, and in the
//! simulator's count of four characters), so a prompt of `n` words is `n` tokens plus a fixed
//! overhead (a BOS token, a chat template) measured once. Every request's words are its own,
//! so vLLM's prefix cache cannot flatter them.

use caplab_shared::Workload;
use rand::{Rng, SeedableRng};

use super::tokens::CountTokens;

/// Candidate one-token words (with their leading space).
const WORDS: [&str; 64] = [
    " the", " and", " for", " are", " but", " not", " you", " all", " any", " can", " had", " her", " was", " one", " our", " out", " day", " get",
    " has", " him", " his", " how", " man", " new", " now", " old", " see", " two", " way", " who", " did", " its", " let", " put", " say", " she",
    " too", " use", " may", " run", " set", " end", " few", " big", " low", " top", " per", " own", " far", " off", " yet", " ask", " try", " add",
    " key", " job", " law", " lot", " map", " net", " act", " age", " air", " art",
];

/// The part of synthetic prompts shared by a group of requests (as a system prompt is).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prefix {
    /// Words (= tokens) every prompt of a group begins with; 0: none.
    pub words: u32,
    /// Groups, taken in turn by requests (request i is in group i mod groups).
    pub groups: u32,
}

/// How prompts of a chosen length are made for one target and workload.
#[derive(Clone, Debug)]
pub struct Synthetic {
    workload: Workload,
    /// Words the target reads as one token each.
    vocab: Vec<&'static str>,
    /// Tokens a prompt has beyond its words (BOS, the chat template).
    overhead: u32,
    /// None when the lengths were checked with the target's own tokenizer; else why they are
    /// an estimate (the run says so).
    pub approximate: Option<String>,
}

impl Synthetic {
    /// Measures the target's tokenizer: which words are one token, and the overhead. Without a
    /// tokenizer, one token per word and no overhead, flagged approximate.
    pub async fn measure(tokenizer: &impl CountTokens, workload: Workload) -> Synthetic {
        let approximate = |why: String| Synthetic { workload, vocab: WORDS.to_vec(), overhead: 0, approximate: Some(why) };
        let count = |words: &[&str]| {
            let text: String = words.concat();
            async move { tokenizer.count(workload, &text).await }
        };
        let (eight, sixteen) = match (count(&[WORDS[0]; 8]).await, count(&[WORDS[0]; 16]).await) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return approximate(format!("the target's tokens could not be counted ({e}): prompt lengths assume one token per word")),
        };
        if sixteen != eight + 8 || eight < 8 {
            return approximate(format!("the target's tokenizer does not read \"{}\" as one token: prompt lengths assume one token per word", WORDS[0].trim()));
        }
        let overhead = eight - 8;
        // The whole vocabulary at once; word by word only if some word is not one token.
        let vocab = if count(&WORDS).await.ok() == Some(WORDS.len() as u32 + overhead) {
            WORDS.to_vec()
        } else {
            let mut kept = Vec::new();
            for w in WORDS {
                if count(&[w, w]).await.ok() == Some(2 + overhead) {
                    kept.push(w);
                }
            }
            kept
        };
        if vocab.len() < 8 {
            return approximate("fewer than 8 of caplab's words are one token for this tokenizer: prompt lengths are estimates".into());
        }
        Synthetic { workload, vocab, overhead, approximate: None }
    }

    /// Words a prompt of `tokens` tokens holds, or why no prompt can be that short.
    pub fn words_for(&self, tokens: u32) -> Result<u32, String> {
        tokens.checked_sub(self.overhead).filter(|w| *w > 0).ok_or_else(|| {
            format!("{tokens} tokens is too short: a {} prompt has {} tokens of template before any word", self.workload.as_str(), self.overhead)
        })
    }

    /// The text of the `i`-th prompt of `words` words: random, its own (seeded by `seed` and
    /// `i`), after a prefix of `prefix.words` words shared by every request of its group.
    pub fn text(&self, words: u32, seed: u64, i: u32, prefix: Prefix) -> String {
        let mut out = String::with_capacity(words as usize * 4);
        let shared = prefix.words.min(words);
        let mut group = rand::rngs::StdRng::seed_from_u64(seed ^ 0x9f1e ^ (u64::from(i % prefix.groups.max(1)) << 40));
        self.push_words(&mut out, shared, &mut group);
        let mut own = rand::rngs::StdRng::seed_from_u64(seed ^ (u64::from(i) << 20) ^ 0x5eed);
        self.push_words(&mut out, words - shared, &mut own);
        out
    }

    /// A replayed prompt of `words` words in blocks of `trace::MOONCAKE_BLOCK`: a block with a
    /// hash id is the same words wherever that id appears (so the prefix cache sees what the
    /// trace's server saw); the rest are the request's own.
    pub fn blocks_text(&self, words: u32, hash_ids: &[u64], seed: u64, i: u32) -> String {
        let mut out = String::with_capacity(words as usize * 4);
        let mut left = words;
        let mut k = 0u64;
        while left > 0 {
            let n = left.min(super::trace::MOONCAKE_BLOCK);
            let block_seed = match hash_ids.get(k as usize) {
                Some(id) => seed ^ 0xb10c ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                None => seed ^ (u64::from(i) << 20) ^ (k << 44) ^ 0x5eed,
            };
            self.push_words(&mut out, n, &mut rand::rngs::StdRng::seed_from_u64(block_seed));
            left -= n;
            k += 1;
        }
        out
    }

    fn push_words(&self, out: &mut String, n: u32, rng: &mut rand::rngs::StdRng) {
        for _ in 0..n {
            out.push_str(self.vocab[rng.gen_range(0..self.vocab.len())]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_four_characters_so_the_simulator_counts_one_token_each() {
        assert!(WORDS.iter().all(|w| w.len() == 4 && w.starts_with(' ')));
        let mut unique = WORDS.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), WORDS.len());
        let s = Synthetic { workload: Workload::Chat, vocab: WORDS.to_vec(), overhead: 7, approximate: None };
        assert_eq!(s.words_for(100), Ok(93));
        assert!(s.words_for(7).unwrap_err().contains("too short"));
        let none = Prefix::default();
        let (a, b) = (s.text(50, 1, 0, none), s.text(50, 1, 1, none));
        assert_eq!((a.len(), b.len()), (200, 200));
        assert_ne!(a[..40], b[..40], "every request its own words from the start");
        assert_eq!(a, s.text(50, 1, 0, none), "reproducible from the seed");
        let two = Prefix { words: 30, groups: 2 };
        let (g0, g1, g0b) = (s.text(50, 1, 0, two), s.text(50, 1, 1, two), s.text(50, 1, 2, two));
        assert_eq!(g0[..120], g0b[..120], "requests 0 and 2 share group 0's prefix");
        assert_ne!(g0[..120], g1[..120], "group 1 has its own");
        assert_ne!(g0[120..], g0b[120..], "after the prefix each is its own");
        let (x, y) = (s.blocks_text(600, &[7, 8], 1, 0), s.blocks_text(600, &[7, 9], 1, 1));
        assert_eq!(x.len(), 2400);
        assert_eq!(x[..2048], y[..2048], "block 7 is the same 512 words in both");
        assert_ne!(x[2048..], y[2048..], "blocks 8 and 9 differ");
        assert_eq!((a.len() as u32).div_ceil(4), 50, "the simulator counts four characters a token");
    }
}
