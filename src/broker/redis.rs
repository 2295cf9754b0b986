//! The `redis` backend (`--broker redis://HOST:PORT`). Being written.
