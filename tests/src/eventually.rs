//! Bounded polling: wait until a condition holds, or fail with the last reason it did not.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

/// Default timeout of [`eventually`]: generous, because the whole control plane shares 2 cores
/// with the test binaries.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default polling interval of [`eventually`].
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(250);

/// Polls `check` every 250 ms for up to 60 s until it returns `Ok`, and returns that value.
/// `what` describes the awaited condition for the failure message.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    eventually_with(what, DEFAULT_TIMEOUT, DEFAULT_INTERVAL, check).await
}

/// Polls `check` every `interval` until it returns `Ok` or `timeout` has passed. On timeout
/// the error names the condition, the time waited, the number of attempts and the last error.
pub async fn eventually_with<T, F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let start = Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        // A single slow attempt must not overrun the deadline by much.
        let remaining = timeout.saturating_sub(start.elapsed()).max(interval);
        let last = match tokio::time::timeout(remaining, check()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => e,
            Err(_) => anyhow!("attempt did not finish within {remaining:?}"),
        };
        if start.elapsed() >= timeout {
            return Err(anyhow!(
                "timed out after {:.1}s ({attempts} attempts) waiting for {what}; last error: {last:#}",
                start.elapsed().as_secs_f64()
            ));
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::bail;

    #[tokio::test]
    async fn returns_first_success() {
        let mut n = 0;
        let v = eventually_with(
            "third try",
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                n += 1;
                let n = n;
                async move {
                    if n < 3 {
                        bail!("only {n}")
                    }
                    Ok(n)
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(v, 3);
    }

    #[tokio::test]
    async fn times_out_with_last_error() {
        let err = eventually_with(
            "never",
            Duration::from_millis(50),
            Duration::from_millis(5),
            || async { Err::<(), _>(anyhow!("still broken")) },
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("waiting for never"), "{err}");
        assert!(err.contains("still broken"), "{err}");
    }
}
