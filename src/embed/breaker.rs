//! A circuit breaker around a query embedder.
//!
//! When an embeddings service is down, every hybrid query would otherwise
//! park a blocking thread for the request timeout before giving up. After a
//! transient failure the breaker stays open for a cool-down and answers at
//! once, so queries skip the vector arm without waiting; the first call after
//! the cool-down tries the service again.

use super::{EmbedError, Embedder};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Breaker {
    inner: Arc<dyn Embedder>,
    cooldown: Duration,
    open_until: Mutex<Option<Instant>>,
}

impl Breaker {
    pub fn new(inner: Arc<dyn Embedder>, cooldown: Duration) -> Breaker {
        Breaker {
            inner,
            cooldown,
            open_until: Mutex::new(None),
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
        if let Some(until) = *self.open_until.lock() {
            let now = Instant::now();
            if now < until {
                return Err(EmbedError::Unavailable {
                    id: self.inner.id().to_string(),
                    retry_in: until - now,
                });
            }
        }
        match self.inner.embed(texts) {
            Ok(v) => {
                *self.open_until.lock() = None;
                Ok(v)
            }
            Err(e) => {
                if e.is_transient() {
                    *self.open_until.lock() = Some(Instant::now() + self.cooldown);
                    tracing::warn!(embedder = self.inner.id(), error = %e, cooldown = ?self.cooldown, "embedder failed; skipping it for a while");
                }
                Err(e)
            }
        }
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
}
