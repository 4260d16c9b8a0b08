//! [`SampleRng`]: the per-sample random stream of the training transforms.
//!
//! MindSpore draws its augmentation randomness from one `std::mt19937` per operation instance,
//! shared by the samples a worker happens to process, so its results depend on scheduling. We
//! instead give every sample its own stream, keyed by `(seed, epoch, sample index)`: a sample's
//! augmentation is then a pure function of those three numbers, whatever the number of workers
//! or the order they run in. The random numbers themselves therefore differ from MindSpore's (no
//! run of MindSpore can be reproduced draw for draw anyway); only their distributions match.

/// The golden-ratio increment of SplitMix64 (`2^64 / phi`, odd).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function (Stafford's "mix13" variant): a bijection of `u64` with good
/// avalanche, so distinct inputs give distinct, unrelated-looking outputs.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small counter-based pseudo-random generator for one training sample: the SplitMix64
/// stream (state advanced by a fixed odd constant, each output the `mix64` hash of the state).
///
/// Build one per sample with [`SampleRng::for_sample`]`(seed, epoch, index)`; every random draw
/// that sample's transform makes comes from it, in a fixed order (see
/// [`super::TrainTransform::augment`]). Not cryptographic; period 2^64 per stream, far more than
/// the few dozen draws a sample needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleRng {
    state: u64,
}

impl SampleRng {
    /// The stream of sample `index` (its position in the dataset, stable across epochs) in epoch
    /// `epoch` of a run seeded with `seed` (MindCV's `seed`, plus the device rank when
    /// distributed, as `set_seed(seed + rank)` does). The three keys are absorbed one after the
    /// other through the `mix64` bijection, so for a fixed `(seed, epoch)` distinct indices
    /// always start from distinct states, and changing any key gives an unrelated stream.
    pub fn for_sample(seed: u64, epoch: u64, index: u64) -> SampleRng {
        let s = mix64(seed.wrapping_add(GAMMA));
        let s = mix64(s.wrapping_add(GAMMA) ^ epoch);
        let s = mix64(s.wrapping_add(GAMMA) ^ index);
        SampleRng { state: s }
    }

    /// The next 64 uniformly distributed bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix64(self.state)
    }

    /// A uniform `f64` in `[0, 1)`: the top 53 bits of [`Self::next_u64`] times `2^-53`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform `f64` in `[lo, hi)` (`lo + (hi - lo) * u`, as `std::uniform_real_distribution`);
    /// exactly `lo` when `lo == hi`. One draw.
    pub fn uniform_range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// A uniform integer in `[0, n)` without modulo bias (Lemire's multiply-and-reject); `0` for
    /// `n` of 0 or 1 (still one draw, so the stream advances the same way). Usually one draw,
    /// rarely more.
    pub fn below(&mut self, n: u64) -> u64 {
        if n <= 1 {
            self.next_u64();
            return 0;
        }
        let threshold = n.wrapping_neg() % n; // 2^64 mod n
        loop {
            let m = self.next_u64() as u128 * n as u128;
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// `true` with probability `p` (`uniform() < p`: never for `p <= 0`, always for `p >= 1`).
    /// One draw whatever `p`, so later draws do not depend on it.
    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// Shuffles `items` uniformly (Fisher-Yates, `len - 1` draws of [`Self::below`]).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_keyed_by_all_three_numbers() {
        let first = |s, e, i| SampleRng::for_sample(s, e, i).next_u64();
        let base = first(42, 0, 0);
        assert_eq!(base, first(42, 0, 0));
        assert_ne!(base, first(43, 0, 0));
        assert_ne!(base, first(42, 1, 0));
        assert_ne!(base, first(42, 0, 1));
        assert_ne!(first(42, 1, 0), first(42, 0, 1));
    }

    #[test]
    fn uniform_is_in_range_and_roughly_uniform() {
        let mut r = SampleRng::for_sample(1, 2, 3);
        let n = 100_000;
        let mut buckets = [0usize; 10];
        for _ in 0..n {
            let u = r.uniform();
            assert!((0.0..1.0).contains(&u));
            buckets[(u * 10.0) as usize] += 1;
        }
        for b in buckets {
            assert!((9_500..10_500).contains(&b), "{buckets:?}");
        }
    }

    #[test]
    fn below_covers_its_range_only() {
        let mut r = SampleRng::for_sample(7, 0, 0);
        let mut seen = [0usize; 7];
        for _ in 0..7_000 {
            seen[r.below(7) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| (850..1150).contains(&c)), "{seen:?}");
        assert_eq!(r.below(1), 0);
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn shuffle_is_a_permutation_and_varies() {
        let mut orders = std::collections::HashSet::new();
        for i in 0..200 {
            let mut v = [0, 1, 2];
            SampleRng::for_sample(0, 0, i).shuffle(&mut v);
            let mut s = v;
            s.sort();
            assert_eq!(s, [0, 1, 2]);
            orders.insert(v);
        }
        assert_eq!(orders.len(), 6);
    }
}
