//! The SSRF guard: which addresses a delivery may connect to.
//!
//! Private, loopback, link-local, CGNAT, multicast, documentation and other non-public
//! ranges are refused unless allow-listed (`WEBHOOK_ALLOWED_CIDRS`). Cloud metadata addresses
//! are refused always.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Refused whatever the allow-list says: instance metadata services.
const METADATA: [IpAddr; 3] = [
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)),
];

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub ip: IpAddr,
    pub reason: &'static str,
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blocked: {} is a {} address", self.ip, self.reason)
    }
}

impl std::error::Error for Blocked {}

#[derive(Debug, Clone, Default)]
pub struct SsrfGuard {
    allowed: Vec<IpNet>,
}

impl SsrfGuard {
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    pub fn check(&self, ip: IpAddr) -> Result<(), Blocked> {
        let ip = canonical(ip);
        if METADATA.contains(&ip) {
            return Err(Blocked { ip, reason: "cloud metadata" });
        }
        let Some(reason) = non_public(ip) else { return Ok(()) };
        if self.allowed.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        Err(Blocked { ip, reason })
    }
}

/// IPv4-mapped and NAT64 IPv6 addresses are judged by the IPv4 address inside.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return IpAddr::V4(Ipv4Addr::new(a, b, c, d));
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            match (a, b, c) {
                _ if v4.is_loopback() => Some("loopback"),
                _ if v4.is_private() => Some("private"),
                _ if v4.is_link_local() => Some("link-local"),
                (100, 64..=127, _) => Some("carrier-grade NAT"),
                (0, _, _) => Some("unspecified"),
                _ if v4.is_broadcast() || v4.is_multicast() || a >= 240 => Some("reserved"),
                (192, 0, 0) | (198, 18..=19, _) => Some("reserved"),
                _ if v4.is_documentation() => Some("documentation"),
                _ => None,
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            match s[0] {
                _ if v6.is_loopback() => Some("loopback"),
                _ if v6.is_unspecified() => Some("unspecified"),
                // NAT64 local-use (64:ff9b:1::/48): a translator to any IPv4 network.
                0x0064 if s[1..3] == [0xff9b, 0x0001] => Some("private"),
                // IPv4-compatible (::a.b.c.d), IPv4-translated (::ffff:0:a.b.c.d) and the rest
                // of ::/8 that `canonical` did not turn into IPv4: no global addresses there.
                0x0000..=0x00ff => Some("reserved"),
                // Discard-only (100::/64).
                0x0100 if s[1..4] == [0, 0, 0] => Some("reserved"),
                0xfc00..=0xfdff => Some("private"),
                0xfe80..=0xfebf => Some("link-local"),
                // Deprecated site-local (fec0::/10), still routed inside some networks.
                0xfec0..=0xfeff => Some("private"),
                0xff00..=0xffff => Some("reserved"),
                // Benchmarking (2001:2::/48).
                0x2001 if s[1..3] == [0x0002, 0] => Some("reserved"),
                0x2001 if s[1] == 0x0db8 => Some("documentation"),
                // Documentation (3fff::/20).
                0x3fff if s[1] <= 0x0fff => Some("documentation"),
                _ => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_non_public_ranges() {
        let guard = SsrfGuard::default();
        for bad in [
            "127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.1.1", "100.64.0.1",
            "100.127.255.255", "0.0.0.0", "224.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1", "::1", "::",
            "fd12::1", "fe80::1", "ff02::1", "::ffff:10.0.0.1", "::ffff:127.0.0.1", "64:ff9b::a00:1", "2001:db8::1",
        ] {
            assert!(guard.check(ip(bad)).is_err(), "{bad} allowed");
        }
    }

    /// IPv4-compatible and IPv4-translated loopback (the rest of ::/8), NAT64 local-use,
    /// discard-only, site-local, benchmarking and the newer documentation prefix.
    #[test]
    fn refuses_the_less_known_ipv6_ranges() {
        let guard = SsrfGuard::default();
        for bad in [
            "::127.0.0.1", "::7f00:1", "::ffff:0:7f00:1", "::1:2", "64:ff9b:1::a00:1", "100::1", "fec0::1", "feff::1",
            "2001:2::1", "3fff::1", "3fff:fff::1",
        ] {
            assert!(guard.check(ip(bad)).is_err(), "{bad} allowed");
        }
        assert_eq!(guard.check(ip("::7f00:1")).unwrap_err().to_string(), "blocked: ::7f00:1 is a reserved address");
    }

    #[test]
    fn allows_public_addresses() {
        let guard = SsrfGuard::default();
        for good in [
            "93.184.215.14", "8.8.8.8", "100.128.0.1", "172.32.0.1", "2606:4700::1111", "::ffff:1.1.1.1",
            "64:ff9b::101:101", "100:0:0:1::1", "2001:4860:4860::8888", "2001:3::1", "3fff:1000::1", "2a00:1450::1",
        ] {
            assert!(guard.check(ip(good)).is_ok(), "{good} refused");
        }
    }

    #[test]
    fn the_allow_list_opens_ranges_but_never_metadata() {
        let guard = SsrfGuard::new(vec!["127.0.0.0/8".parse().unwrap(), "169.254.0.0/16".parse().unwrap()]);
        assert!(guard.check(ip("127.0.0.1")).is_ok());
        assert!(guard.check(ip("169.254.1.1")).is_ok());
        assert!(guard.check(ip("10.0.0.1")).is_err());
        let err = guard.check(ip("169.254.169.254")).unwrap_err();
        assert_eq!(err.reason, "cloud metadata");
        assert!(guard.check(ip("::ffff:169.254.169.254")).is_err());
        assert!(guard.check(ip("fd00:ec2::254")).is_err());
        assert_eq!(err.to_string(), "blocked: 169.254.169.254 is a cloud metadata address");
    }
}
