//! Waiting, bounded, on something another process or thread does.

use std::time::Duration;

/// How long a test waits for work other processes do (a restore, a probe
/// round, a poll): far longer than it takes on a workstation, because CI runs
/// two test binaries at once on two cores. A wait ends as soon as its
/// condition holds, so only a failing test pays for the whole of it.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// How often a condition is checked.
const EVERY: Duration = Duration::from_millis(100);

/// Checks `check` every 100 ms until it comes true or `patience` has passed,
/// and answers whether it came true. Callers assert on the answer, so running out of time fails the test with
/// the test's own message.
pub async fn until(patience: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(EVERY).await;
    }
}
