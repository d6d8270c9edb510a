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

    fn provenance(&self) -> String {
        self.inner.provenance()
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

    /// A cool-down far longer than any pause of a test thread: it never
    /// passes by itself between two calls, only when [`end_cooldown`] says so.
    const COOLDOWN: Duration = Duration::from_secs(3600);

    /// Ends an open breaker's cool-down now, rather than after a sleep.
    fn end_cooldown(b: &Breaker) {
        let mut state = b.state.lock();
        assert!(matches!(*state, State::Open { .. }), "{:?}", *state);
        *state = State::Open { until: Instant::now() };
    }

    #[test]
    fn opens_on_failure_and_closes_after_the_cooldown() {
        let flaky = Arc::new(Flaky {
            calls: AtomicUsize::new(0),
            down: std::sync::atomic::AtomicBool::new(true),
        });
        let b = Breaker::new(flaky.clone(), COOLDOWN);
        assert!(matches!(b.embed(&["a"]), Err(EmbedError::Http { status: 503, .. })));
        assert!(matches!(b.embed(&["a"]), Err(EmbedError::Unavailable { .. })));
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 1, "open: the service is not called");
        flaky.down.store(false, Ordering::SeqCst);
        end_cooldown(&b);
        assert_eq!(b.embed(&["a"]).unwrap().len(), 1, "half-open: tried again and closed");
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 2);
    }

    /// An embedder that fails as a hung service does, once the test lets
    /// it: each call waits for one `()` on `answer`.
    struct Slow {
        calls: AtomicUsize,
        answer: Mutex<std::sync::mpsc::Receiver<()>>,
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
            self.answer.lock().recv().expect("the test lets each call answer");
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
        let (answer, answers) = std::sync::mpsc::channel();
        let slow = Arc::new(Slow {
            calls: AtomicUsize::new(0),
            answer: Mutex::new(answers),
        });
        let b = Arc::new(Breaker::new(slow.clone(), COOLDOWN));
        answer.send(()).unwrap();
        assert!(b.embed(&["a"]).is_err());
        end_cooldown(&b);
        let trial = {
            let b = b.clone();
            std::thread::spawn(move || b.embed(&["a"]))
        };
        while slow.calls.load(Ordering::SeqCst) < 2 {
            std::thread::yield_now(); // until the trial is inside the service
        }
        // The trial stays inside the service until these are done.
        for _ in 0..8 {
            assert!(matches!(b.embed(&["a"]), Err(EmbedError::Unavailable { .. })));
        }
        answer.send(()).unwrap();
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
