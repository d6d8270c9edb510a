//! Fusion of the arms' rankings: weighted reciprocal rank fusion, and a
//! convex combination of normalised scores (the default, see docs/EVAL.md).
//!
//! RRF needs no score calibration between arms (BM25 scores and cosine
//! similarities live on different scales), but equal weights are wrong for
//! natural-language queries over code: on CoSQA equal-weight RRF scores below
//! dense retrieval alone (docs/EVAL.md). The default weights come from `trusty-search eval`
//! (see docs/EVAL.md); they are parameters, not constants baked into ranking.

use std::collections::HashMap;

/// How arm rankings are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FusionMethod {
    /// Weighted reciprocal rank fusion: rank-based, scale-free.
    Rrf,
    /// Weighted sum of per-query min-max normalised scores: keeps how much
    /// better the top hit of an arm is than the rest, which RRF throws away.
    Convex,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FusionWeights {
    pub method: FusionMethod,
    pub bm25: f32,
    pub vector: f32,
    /// The RRF constant: larger flattens the contribution of top ranks.
    pub k: f32,
    /// Multiplier on graph-expansion boosts (which are already proportional to
    /// their seed's fused score); 0 turns expansion off. RRF scores are flat
    /// (1/(k+rank)), so at 0.1 a graph neighbour moves a few ranks rather than
    /// jumping over the hit it was reached from. CoSQA cannot tune this (its
    /// documents are isolated functions); see docs/EVAL.md.
    pub graph: f32,
    /// Weight of the file arm: files ranked on a pasted issue's evidence, each
    /// standing for its best chunk. Only issue-shaped queries in hybrid mode
    /// rank files; 0 leaves chunk search to the chunk arms.
    pub files: f32,
}

impl Default for FusionWeights {
    fn default() -> Self {
        FusionWeights {
            method: FusionMethod::Convex,
            bm25: 0.15,
            vector: 1.0,
            k: 60.0,
            graph: 0.1,
            files: 0.0,
        }
    }
}

impl FusionWeights {
    /// The weights of pasted issues and stack traces. Their BM25 scores come
    /// from hundreds of weighted terms and say little about how far apart two
    /// hits are, so ranks fuse better than scores here; the file ranking
    /// weighs most, as it reads what the issue points at (docs/EVAL.md).
    /// The nearest chunks to a whole issue are evidence about files, not
    /// answers: they reach the ranking through the file arm only, since as
    /// chunks of their own they push the right file out of the top ranks.
    pub fn long_text() -> Self {
        FusionWeights {
            method: FusionMethod::Rrf,
            bm25: 0.3,
            vector: 0.0,
            files: 3.0,
            ..FusionWeights::default()
        }
    }

    /// Sets one weight by its field name (`bm25=0.3`, `method=rrf`), for
    /// evaluation sweeps from the command line.
    pub fn set(&mut self, assignment: &str) -> Result<(), String> {
        let (key, value) = super::param::split(assignment)?;
        if key == "method" {
            self.method = match value {
                "rrf" => FusionMethod::Rrf,
                "convex" => FusionMethod::Convex,
                other => return Err(format!("method: {other:?} is not rrf or convex")),
            };
            return Ok(());
        }
        let number = super::param::weight(key, value)?;
        match key {
            "bm25" => self.bm25 = number,
            "vector" => self.vector = number,
            "k" => self.k = number,
            "graph" => self.graph = number,
            "files" => self.files = number,
            other => return Err(format!("unknown fusion weight {other:?}")),
        }
        Ok(())
    }
}

/// Fuses ranked lists (best first) into one: `score(d) = Σ w_arm / (k + rank_arm(d))`
/// with 1-based ranks. Ties break by chunk id so results are deterministic.
pub(crate) fn weighted_rrf(lists: &[(&[(u32, f32)], f32)], k: f32) -> Vec<(u32, f32)> {
    let mut scores: HashMap<u32, f32> = HashMap::new();
    for (list, weight) in lists {
        if *weight <= 0.0 {
            continue;
        }
        for (rank, (id, _)) in list.iter().enumerate() {
            *scores.entry(*id).or_default() += weight / (k + rank as f32 + 1.0);
        }
    }
    let mut fused: Vec<(u32, f32)> = scores.into_iter().collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    fused
}

/// Fuses by `score(d) = Σ w_arm · (s_arm(d) − min_arm) / (max_arm − min_arm)`
/// over each arm's candidate list; a document an arm did not return gets 0
/// from it. An arm whose scores are all equal contributes `w_arm` to each.
pub(crate) fn weighted_convex(lists: &[(&[(u32, f32)], f32)]) -> Vec<(u32, f32)> {
    let mut scores: HashMap<u32, f32> = HashMap::new();
    for (list, weight) in lists {
        if *weight <= 0.0 || list.is_empty() {
            continue;
        }
        let max = list.iter().map(|x| x.1).fold(f32::NEG_INFINITY, f32::max);
        let min = list.iter().map(|x| x.1).fold(f32::INFINITY, f32::min);
        let span = max - min;
        for (id, s) in list.iter() {
            let norm = if span > f32::EPSILON { (s - min) / span } else { 1.0 };
            *scores.entry(*id).or_default() += weight * norm;
        }
    }
    let mut fused: Vec<(u32, f32)> = scores.into_iter().collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    fused
}

/// Puts `definitions` (chunk ids, any order) ahead of every other hit, for a
/// query that names one symbol: whoever types an identifier wants where it is
/// defined before its callers and tests. Definitions keep their fused order;
/// those no arm returned follow them. Scores stay descending, so a fan-out
/// that merges indexes by score keeps the order too.
pub(crate) fn definitions_first(fused: &mut Vec<(u32, f32)>, definitions: &[u32]) {
    if definitions.is_empty() {
        return;
    }
    let top = fused.first().map_or(0.0, |h| h.1);
    let (mut first, rest): (Vec<_>, Vec<_>) = fused.drain(..).partition(|(id, _)| definitions.contains(id));
    let mut seen: std::collections::HashSet<u32> = first.iter().map(|h| h.0).collect();
    for h in &mut first {
        h.1 += top;
    }
    for &id in definitions {
        if seen.insert(id) {
            first.push((id, top));
        }
    }
    *fused = first;
    fused.extend(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_go_first_in_fused_order_and_scores_stay_descending() {
        let mut fused = vec![(1, 0.9), (2, 0.5), (3, 0.4), (4, 0.1)];
        definitions_first(&mut fused, &[4, 9, 2]);
        let ids: Vec<u32> = fused.iter().map(|h| h.0).collect();
        assert_eq!(
            ids,
            [2, 4, 9, 1, 3],
            "fused definitions, then missed ones, then the rest"
        );
        assert!(fused.windows(2).all(|w| w[0].1 >= w[1].1), "{fused:?}");
        let mut untouched = vec![(1, 0.9), (2, 0.5)];
        definitions_first(&mut untouched, &[]);
        assert_eq!(untouched, [(1, 0.9), (2, 0.5)]);
        let mut empty = Vec::new();
        definitions_first(&mut empty, &[7]);
        assert_eq!(empty, [(7, 0.0)]);
    }

    #[test]
    fn weights_are_set_by_name_and_bad_values_are_refused() {
        let mut w = FusionWeights::default();
        w.set("method=rrf").unwrap();
        w.set(" bm25 = 0.3").unwrap();
        w.set("k=30").unwrap();
        assert_eq!((w.method, w.bm25, w.k), (FusionMethod::Rrf, 0.3, 30.0));
        for bad in ["bm25", "bm25=-1", "bm25=NaN", "bm25=x", "method=sum", "alpha=1"] {
            assert!(w.set(bad).is_err(), "{bad} was accepted");
        }
        assert_eq!(w.bm25, 0.3, "a refused assignment changes nothing");
    }

    #[test]
    fn agreement_beats_a_single_arm() {
        let bm25 = [(1, 9.0), (2, 8.0), (3, 7.0)];
        let vec = [(2, 0.9), (4, 0.8), (1, 0.7)];
        let fused = weighted_rrf(&[(&bm25, 1.0), (&vec, 1.0)], 60.0);
        assert_eq!(fused[0].0, 2, "ranked 2nd and 1st beats 1st and 3rd");
        assert_eq!(fused[1].0, 1);
        assert_eq!(fused.len(), 4);
    }

    #[test]
    fn weights_shift_the_ranking() {
        let bm25 = [(1, 9.0), (2, 8.0)];
        let vec = [(2, 0.9), (1, 0.8)];
        assert_eq!(weighted_rrf(&[(&bm25, 1.0), (&vec, 0.2)], 60.0)[0].0, 1);
        assert_eq!(weighted_rrf(&[(&bm25, 0.2), (&vec, 1.0)], 60.0)[0].0, 2);
    }

    #[test]
    fn exact_scores_and_zero_weights() {
        let a = [(7, 1.0)];
        let b = [(8, 1.0)];
        let fused = weighted_rrf(&[(&a, 2.0), (&b, 0.0)], 10.0);
        assert_eq!(fused, vec![(7, 2.0 / 11.0)]);
    }

    #[test]
    fn convex_keeps_score_gaps() {
        // Arm a is confident about 1; arm b barely prefers 2 over 1.
        let a = [(1, 10.0), (2, 1.0), (3, 0.0)];
        let b = [(2, 0.80), (1, 0.79), (3, 0.0)];
        let fused = weighted_convex(&[(&a, 1.0), (&b, 1.0)]);
        assert_eq!(fused[0].0, 1);
        assert!((fused[0].1 - (1.0 + 0.79 / 0.80)).abs() < 1e-5);
        // RRF sees only ranks and calls it a tie, broken by id.
        assert_eq!(weighted_rrf(&[(&a, 1.0), (&b, 1.0)], 60.0)[0].0, 1);
        let single = weighted_convex(&[(&[(4, 2.0)], 0.5)]);
        assert_eq!(single, vec![(4, 0.5)]);
    }

    #[test]
    fn ties_break_by_id() {
        let a = [(5, 1.0)];
        let b = [(3, 1.0)];
        let fused = weighted_rrf(&[(&a, 1.0), (&b, 1.0)], 60.0);
        assert_eq!(fused.iter().map(|x| x.0).collect::<Vec<_>>(), vec![3, 5]);
    }
}
