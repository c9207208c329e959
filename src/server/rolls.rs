//! The control side's random rolls (outlier enforcement, ejection and
//! health-check jitter): xorshift64* streams seeded from the process id,
//! not cryptography.

/// A seed that differs from one process to the next.
pub fn seed() -> u64 {
    0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id())
}

/// The next value of the stream whose state is `state`.
pub fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}
