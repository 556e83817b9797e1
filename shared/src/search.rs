//! The SLO search: the highest concurrency among a spec's candidates that meets the SLO, found
//! by running only the cells needed — bracket (the 1st, 2nd, 4th, 8th … candidate while they
//! meet it), then bisect between the highest that met it and the lowest that did not. The
//! answer is exact to one step of the candidate list.

use crate::spec::CellSpec;

#[derive(Clone, Debug)]
pub struct Search {
    /// (concurrency, cell index), by concurrency.
    candidates: Vec<(u32, u32)>,
    /// Index into `candidates` of the highest that met the SLO / the lowest that did not.
    met: Option<usize>,
    missed: Option<usize>,
    ran: Vec<u32>,
}

impl Search {
    pub fn new(cells: &[CellSpec]) -> Search {
        let mut candidates: Vec<(u32, u32)> = cells.iter().map(|c| (c.concurrency, c.index)).collect();
        candidates.sort_unstable();
        candidates.dedup_by_key(|c| c.0);
        Search { candidates, met: None, missed: None, ran: Vec::new() }
    }

    /// The cell to run next; None once the answer is known.
    pub fn next(&self) -> Option<u32> {
        let n = self.candidates.len();
        let i = match (self.met, self.missed) {
            (_, Some(0)) => return None,
            (Some(m), _) if m + 1 == n => return None,
            (Some(m), Some(x)) if m + 1 >= x => return None,
            (None, None) => 0,
            // Bracketing: the 2nd, 4th, 8th … candidate.
            (Some(m), None) => (2 * m + 1).min(n - 1),
            (m, Some(x)) => {
                let lo = m.map_or(0, |m| m + 1);
                lo + (x - lo) / 2
            }
        };
        Some(self.candidates[i].1)
    }

    /// Records whether cell `index` met the SLO.
    pub fn record(&mut self, index: u32, met: bool) {
        let Some(i) = self.candidates.iter().position(|c| c.1 == index) else { return };
        self.ran.push(index);
        if met {
            self.met = Some(self.met.map_or(i, |m| m.max(i)));
        } else {
            self.missed = Some(self.missed.map_or(i, |x| x.min(i)));
        }
    }

    /// The highest concurrency that met the SLO, if any.
    pub fn highest_met(&self) -> Option<u32> {
        self.met.map(|i| self.candidates[i].0)
    }

    /// The lowest concurrency that missed it, if any.
    pub fn lowest_missed(&self) -> Option<u32> {
        self.missed.map(|i| self.candidates[i].0)
    }

    /// Where the search stands (or ended), in words.
    pub fn describe(&self) -> String {
        let ran = format!("{} of {} candidate cells run", self.ran.len(), self.candidates.len());
        let done = self.next().is_none();
        match (self.highest_met(), self.lowest_missed(), done) {
            (Some(m), Some(x), true) => format!("SLO search: c{m} is the highest concurrency that meets the SLO; c{x}, the next candidate, does not: the knee lies between them ({ran})"),
            (Some(m), None, true) => format!("SLO search: every candidate up to c{m} meets the SLO: the knee lies above the highest candidate ({ran})"),
            (None, Some(x), true) => format!("SLO search: even c{x}, the lowest candidate, misses the SLO ({ran})"),
            (m, x, _) => {
                let met = m.map_or("none yet".into(), |m| format!("c{m}"));
                let missed = x.map_or("none yet".into(), |x| format!("c{x}"));
                let next = self.next().and_then(|i| self.candidates.iter().find(|c| c.1 == i)).map_or(String::new(), |c| format!("; next c{}", c.0));
                format!("SLO search: meets at {met}, misses at {missed}{next} ({ran})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(cs: &[u32]) -> Vec<CellSpec> {
        cs.iter().enumerate().map(|(i, &c)| CellSpec { index: i as u32, concurrency: c, max_new_tokens: 64, rate: None }).collect()
    }

    /// Runs the search against a knee: concurrencies up to `knee` meet the SLO.
    fn run(cs: &[u32], knee: u32) -> (Search, Vec<u32>) {
        let cells = cells(cs);
        let mut s = Search::new(&cells);
        let mut order = Vec::new();
        while let Some(i) = s.next() {
            let c = cells[i as usize].concurrency;
            order.push(c);
            s.record(i, c <= knee);
            assert!(order.len() <= cells.len(), "the search ends");
        }
        (s, order)
    }

    #[test]
    fn finds_the_knee_to_one_step_with_few_cells() {
        let grid: Vec<u32> = (1..=64).collect();
        for knee in [1, 2, 7, 8, 9, 33, 63] {
            let (s, order) = run(&grid, knee);
            assert_eq!(s.highest_met(), Some(knee), "knee {knee}: {order:?}");
            assert_eq!(s.lowest_missed(), Some(knee + 1));
            assert!(order.len() <= 13, "knee {knee}: {} cells of 64: {order:?}", order.len());
            assert!(s.describe().contains(&format!("c{knee} is the highest")), "{}", s.describe());
        }
        // The bracket doubles through the candidate list, then bisects.
        let (_, order) = run(&[1, 2, 4, 8, 16, 32, 64, 128, 256], 24);
        assert_eq!(order, [1, 2, 8, 128, 32, 16], "{order:?}");
    }

    #[test]
    fn all_met_or_none_met_is_said_plainly() {
        let (s, order) = run(&[4, 8, 16], 1000);
        assert_eq!((s.highest_met(), s.lowest_missed(), order.len()), (Some(16), None, 3));
        assert!(s.describe().contains("above the highest candidate"));
        let (s, order) = run(&[4, 8, 16], 1);
        assert_eq!((s.highest_met(), order), (None, vec![4]));
        assert!(s.describe().contains("even c4, the lowest candidate, misses"));
    }
}
