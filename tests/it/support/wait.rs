//! Waiting, bounded, on something another process or thread does.

use std::time::Duration;

/// Checks `check` up to `tries` times, `every` apart, and answers whether it
/// came true. Callers assert on the answer, so running out of time fails the
/// test with the test's own message.
pub async fn until(tries: u32, every: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..tries {
        if check().await {
            return true;
        }
        tokio::time::sleep(every).await;
    }
    check().await
}
