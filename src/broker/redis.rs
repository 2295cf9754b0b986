//! The `redis` backend (`--broker redis://HOST:PORT`). Being written: this
//! placeholder refuses to start.

use std::sync::Arc;

use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use super::{Backend, BoxFuture, BrokerError, Envelope, Health, Hub, InstanceId, JoinOutcome};

/// Placeholder until the backend lands.
pub struct RedisBackend;

impl RedisBackend {
    pub fn new(_url: &str, _instance: InstanceId) -> Result<RedisBackend, BrokerError> {
        Err(BrokerError::Unavailable(
            "the redis broker is not in this build yet".into(),
        ))
    }
}

fn unavailable<'a, T: Send + 'a>() -> BoxFuture<'a, Result<T, BrokerError>> {
    Box::pin(std::future::ready(Err(BrokerError::Unavailable(
        "not built".into(),
    ))))
}

impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }
    fn start(self: Arc<Self>, _hub: Arc<Hub>, _shutdown: CancellationToken) {}
    fn forward(&self, _envelope: &Envelope) {}
    fn join<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<JoinOutcome, BrokerError>> {
        unavailable()
    }
    fn members<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<String>, BrokerError>> {
        unavailable()
    }
    fn leave<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }
    fn record<'a>(&'a self, _: &'a str, _: Utf8Bytes, _: usize) -> BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }
    fn ban<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }
    fn sweep<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Vec<String>> {
        Box::pin(std::future::ready(Vec::new()))
    }
    fn health(&self) -> Health {
        Health::Degraded("not built".into())
    }
}
