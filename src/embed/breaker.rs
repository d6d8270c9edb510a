//! A circuit breaker around a query embedder.
//!
//! When an embeddings service is down, every hybrid query would otherwise
//! park a blocking thread for the request timeout before giving up. After a
//! transient failure the breaker stays open for a cool-down and answers at
//! once, so queries skip the vector arm without waiting; after the cool-down
//! one call tries the service again while the others still skip it, so a
//! service still down costs one timeout, not one per waiting query.

use super::{EmbedError, Embedder};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    /// One call is trying the service.
    Trial,
}

pub struct Breaker {
    inner: Arc<dyn Embedder>,
    cooldown: Duration,
    state: Mutex<State>,
}

impl Breaker {
    pub fn new(inner: Arc<dyn Embedder>, cooldown: Duration) -> Breaker {
        Breaker {
            inner,
            cooldown,
            state: Mutex::new(State::Closed),
        }
    }

    /// Whether this call may use the service, or how long until one may.
    fn admit(&self) -> Result<(), Duration> {
        let now = Instant::now();
        let mut state = self.state.lock();
        match *state {
            State::Closed => Ok(()),
            State::Open { until } if now < until => Err(until - now),
            State::Trial => Err(self.cooldown.min(Duration::from_secs(1))),
            State::Open { .. } => {
                *state = State::Trial;
                Ok(())
            }
        }
    }
}

impl Embedder for Breaker {
    fn id(&self) -> &str {
        self.inner.id()
    }

    fn dimension(&self) -> usize {
        self.inner.dimension()
    }

    fn max_batch(&self) -> usize {
        self.inner.max_batch()
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if let Err(retry_in) = self.admit() {
            return Err(EmbedError::Unavailable {
                id: self.inner.id().to_string(),
                retry_in,
            });
        }
        // A call that panics reopens the breaker rather than leaving a trial
        // no one finishes.
        let reopen = ReopenOnUnwind(self);
        let result = self.inner.embed(texts);
        std::mem::forget(reopen);
        let mut state = self.state.lock();
        match &result {
            Err(e) if e.is_transient() => {
                *state = State::Open {
                    until: Instant::now() + self.cooldown,
                };
                tracing::warn!(embedder = self.inner.id(), error = %e, cooldown = ?self.cooldown, "embedder failed; skipping it for a while");
            }
            // It answered (an error about this input is still an answer).
            _ => *state = State::Closed,
        }
        result
    }
}

struct ReopenOnUnwind<'a>(&'a Breaker);

impl Drop for ReopenOnUnwind<'_> {
    fn drop(&mut self) {
        *self.0.state.lock() = State::Open {
            until: Instant::now() + self.0.cooldown,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Flaky {
        calls: AtomicUsize,
        down: std::sync::atomic::AtomicBool,
    }

    impl Embedder for Flaky {
        fn id(&self) -> &str {
            "flaky"
        }
        fn dimension(&self) -> usize {
            2
        }
        fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(EmbedError::Http {
                    url: "http://x".into(),
                    status: 503,
                    body: "down".into(),
                });
            }
            Ok(texts.iter().map(|_| vec![1.0, 0.0]).collect())
        }
    }

    #[test]
    fn opens_on_failure_and_closes_after_the_cooldown() {
        let flaky = Arc::new(Flaky {
            calls: AtomicUsize::new(0),
            down: std::sync::atomic::AtomicBool::new(true),
        });
        let b = Breaker::new(flaky.clone(), Duration::from_millis(50));
        assert!(matches!(b.embed(&["a"]), Err(EmbedError::Http { status: 503, .. })));
        assert!(matches!(b.embed(&["a"]), Err(EmbedError::Unavailable { .. })));
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 1, "open: the service is not called");
        flaky.down.store(false, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.embed(&["a"]).unwrap().len(), 1, "half-open: tried again and closed");
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 2);
    }

    /// An embedder that takes `delay` to fail, as a hung service does.
    struct Slow {
        calls: AtomicUsize,
        delay: Duration,
    }

    impl Embedder for Slow {
        fn id(&self) -> &str {
            "slow"
        }
        fn dimension(&self) -> usize {
            2
        }
        fn embed(&self, _: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(self.delay);
            Err(EmbedError::Http {
                url: "http://x".into(),
                status: 504,
                body: "timed out".into(),
            })
        }
    }

    /// After the cool-down one call tries a still-hung service; the calls
    /// arriving meanwhile skip it at once instead of each waiting it out.
    #[test]
    fn after_the_cooldown_one_call_tries_while_the_others_skip() {
        let slow = Arc::new(Slow {
            calls: AtomicUsize::new(0),
            delay: Duration::from_millis(500),
        });
        let b = Arc::new(Breaker::new(slow.clone(), Duration::from_millis(50)));
        assert!(b.embed(&["a"]).is_err());
        std::thread::sleep(Duration::from_millis(60));
        let trial = {
            let b = b.clone();
            std::thread::spawn(move || b.embed(&["a"]))
        };
        while slow.calls.load(Ordering::SeqCst) < 2 {
            std::thread::yield_now(); // until the trial is inside the service
        }
        for _ in 0..8 {
            assert!(matches!(b.embed(&["a"]), Err(EmbedError::Unavailable { .. })));
        }
        assert!(matches!(
            trial.join().unwrap(),
            Err(EmbedError::Http { status: 504, .. })
        ));
        assert_eq!(slow.calls.load(Ordering::SeqCst), 2, "the first failure and one trial");
        assert!(
            matches!(b.embed(&["a"]), Err(EmbedError::Unavailable { .. })),
            "open again"
        );
    }
}
