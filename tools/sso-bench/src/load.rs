//! The closed-loop load runner: N workers, each with its own keep-alive connections, repeat
//! one operation until the time bound or the shared operation budget is used up. Every
//! operation's latency is kept (microseconds), so percentiles are exact.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What one operation came to.
pub enum Step {
    Done,
    Failed(String),
    /// This worker has no more work (e.g. its pre-minted codes are used up).
    Exhausted,
}

pub trait Worker: Send + 'static {
    fn step(&mut self) -> impl Future<Output = Step> + Send;
}

/// The outcome of one timed run.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Sorted latencies of successful operations, microseconds.
    pub latencies_us: Vec<u32>,
    pub first_error: Option<String>,
    /// Every worker ran out of work before the time bound.
    pub exhausted: bool,
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 { self.ok as f64 / secs } else { 0.0 }
    }

    /// Latency at quantile `q` (0..=1), in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        percentile(&self.latencies_us, q) as f64 / 1000.0
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs `workers` concurrently for at most `duration` and at most `max_ops` operations in
/// total; returns the workers (for reuse) and the outcome.
///
/// With `rate` (operations per second, all workers together) each worker starts its
/// operations on a fixed schedule and latency counts from the scheduled start, so a stall
/// is not hidden by the load generator waiting for it (no coordinated omission).
pub async fn run<W: Worker>(
    workers: Vec<W>,
    duration: Duration,
    max_ops: u64,
    rate: Option<f64>,
) -> (Vec<W>, Outcome) {
    let budget = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let n = workers.len().max(1) as f64;
    let interval = rate.filter(|r| *r > 0.0).map(|r| Duration::from_secs_f64(n / r));
    let mut tasks = Vec::with_capacity(workers.len());
    for (i, mut w) in workers.into_iter().enumerate() {
        let budget = budget.clone();
        let offset = interval.map(|iv| iv.mul_f64(i as f64 / n)).unwrap_or_default();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            let (mut errors, mut first_error, mut exhausted) = (0u64, None, false);
            let mut k = 0u32;
            // Bounded in time (deadline) and in count (shared budget).
            while Instant::now() < deadline && budget.fetch_add(1, Ordering::Relaxed) < max_ops {
                let t = match interval {
                    Some(iv) => {
                        let at = started + offset + iv * k;
                        k += 1;
                        tokio::time::sleep_until(at.into()).await;
                        at
                    }
                    None => Instant::now(),
                };
                match w.step().await {
                    Step::Done => lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32),
                    Step::Failed(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                        if errors > 1000 && lat.is_empty() {
                            break;
                        }
                    }
                    Step::Exhausted => {
                        exhausted = true;
                        break;
                    }
                }
            }
            (w, lat, errors, first_error, exhausted)
        }));
    }
    let mut outcome = Outcome { exhausted: true, ..Outcome::default() };
    let mut back = Vec::with_capacity(tasks.len());
    for t in tasks {
        match t.await {
            Ok((w, lat, errors, first_error, exhausted)) => {
                back.push(w);
                outcome.ok += lat.len() as u64;
                outcome.latencies_us.extend(lat);
                outcome.errors += errors;
                if outcome.first_error.is_none() {
                    outcome.first_error = first_error;
                }
                outcome.exhausted &= exhausted;
            }
            Err(e) => {
                outcome.errors += 1;
                outcome.first_error.get_or_insert(format!("worker task failed: {e}"));
            }
        }
    }
    outcome.elapsed = started.elapsed();
    outcome.latencies_us.sort_unstable();
    (back, outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=1000).collect();
        assert_eq!(percentile(&v, 0.5), 500);
        assert_eq!(percentile(&v, 0.99), 990);
        assert_eq!(percentile(&v, 0.999), 999);
        assert_eq!(percentile(&v, 1.0), 1000);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    struct Counter(u32);
    impl Worker for Counter {
        async fn step(&mut self) -> Step {
            self.0 += 1;
            if self.0 > 50 { Step::Exhausted } else { Step::Done }
        }
    }

    #[tokio::test]
    async fn runs_are_bounded_by_count_and_by_exhaustion() {
        let (_, o) = run(vec![Counter(0), Counter(0)], Duration::from_secs(5), 30, None).await;
        assert_eq!(o.ok, 30);
        let (_, o) = run(vec![Counter(0), Counter(0)], Duration::from_secs(5), 1000, None).await;
        assert_eq!(o.ok, 100);
        assert!(o.exhausted);
    }

    #[tokio::test]
    async fn paced_runs_keep_to_the_rate() {
        let started = Instant::now();
        let (_, o) = run(vec![Counter(0), Counter(0)], Duration::from_millis(300), 20, Some(100.0)).await;
        assert_eq!(o.ok, 20);
        assert!(started.elapsed() >= Duration::from_millis(150));
    }
}
