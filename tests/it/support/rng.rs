//! A small seeded generator: tests and benches want the same "random" input
//! on every run, and nothing here needs a real RNG crate.

/// Marsaglia's xorshift64; the seed must not be 0.
pub struct Xorshift(pub u64);

impl Xorshift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
