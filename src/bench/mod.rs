//! placeholder (the bench helper replaces this file)

/// Placeholder error.
#[derive(Debug, thiserror::Error)]
#[error("bench is not built yet")]
pub struct BenchError;

/// Placeholder.
pub async fn run(_cmd: crate::cli::BenchCommand) -> Result<(), BenchError> {
    Err(BenchError)
}
