//! Route kinds: what a matched route does with a request. WebSocket kinds
//! provide a session handler; HTTP kinds answer requests. Matching the path
//! is `crate::http::router`'s job; limits and auth are applied before this.

pub mod body_timeout;
pub mod broadcast;
pub mod bundled;
pub mod chat;
pub mod echo;
pub mod exec;
pub mod proxy;
pub mod relay;
pub mod static_files;
