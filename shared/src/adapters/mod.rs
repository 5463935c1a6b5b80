//! Implementations of the ports: `memory` (embedded, the default of relay-local and the
//! reference for every contract test) and `http` (outbound webhook requests).

pub mod http;
pub mod memory;
