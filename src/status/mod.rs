//! The admin listener's status: live figures kept on the data path
//! (`live`: relaxed atomics per message, bounded tables) and the JSON of
//! `GET /status` drawn from them and from the certificates and the broker
//! (`snapshot`, schema in `docs/status.md`). The page that shows it is
//! `page` (`GET /` and its assets, compiled in).

pub mod live;
pub mod page;
pub mod snapshot;
