//! `wssd bench`: a WebSocket load generator for ws:// and wss:// echo
//! endpoints (echo throughput and latency, connection rate, idle memory) and
//! broadcast routes (fan-out delivery latency and losses).
//!
//! Every mode prints human-readable lines to stdout and ends with exactly one
//! line of JSON (`{"mode":...}`) that scripts such as `bench/run.sh` parse;
//! `fanout` prints its JSON object only with `--json` (and then nothing else
//! on stdout).
//! Only loopback targets are allowed unless `WSSD_BENCH_ALLOW_REMOTE=1`.
//!
//! Files: one per mode (`echo`, `connect`, `idle`, `fanout/`), what they
//! share (`connector` opens connections, `target` parses URLs, `report`
//! prints results, `sys` reads process facts) and the leaves every file may
//! use (`error`, `limits`, `checks`); this file only dispatches.

mod checks;
mod connect;
mod connector;
mod echo;
mod error;
mod fanout;
mod idle;
mod limits;
mod report;
mod sys;
mod target;

pub use error::BenchError;
pub use limits::ALLOW_REMOTE_ENV;

use crate::cli::BenchCommand;

/// Runs one bench mode to completion.
pub async fn run(cmd: BenchCommand) -> Result<(), BenchError> {
    match cmd {
        BenchCommand::Echo(args) => echo::run(args).await,
        BenchCommand::Connect(args) => connect::run(args).await,
        BenchCommand::Idle(args) => idle::run(args).await,
        BenchCommand::Fanout(args) => fanout::run(args).await,
    }
}
