//! Outbound webhook requests: reqwest on rustls, no redirects, a whole-request timeout, and
//! the SSRF guard applied to the address actually connected to.

mod sender;
mod ssrf;

pub use sender::{HttpSender, Lookup, SystemLookup};
pub use ssrf::{Blocked, SsrfGuard};
