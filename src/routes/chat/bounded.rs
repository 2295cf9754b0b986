//! Broker calls bounded in time: a chat session never waits on a slow
//! shared store for longer than `BROKER_TIMEOUT`.

use crate::broker::BrokerError;
use crate::config::limits::BROKER_TIMEOUT;

/// Awaits a backend call for at most `BROKER_TIMEOUT`.
pub(super) async fn bounded<T, F>(fut: F) -> T
where
    F: std::future::Future<Output = T>,
    T: TimedOut,
{
    match tokio::time::timeout(BROKER_TIMEOUT, fut).await {
        Ok(v) => v,
        Err(_) => T::timed_out(),
    }
}

/// What a backend call yields when it takes too long.
pub(super) trait TimedOut {
    fn timed_out() -> Self;
}

impl<T> TimedOut for Result<T, BrokerError> {
    fn timed_out() -> Self {
        Err(BrokerError::Unavailable(
            "the shared room state did not answer in time".into(),
        ))
    }
}

impl TimedOut for () {
    fn timed_out() -> Self {}
}
