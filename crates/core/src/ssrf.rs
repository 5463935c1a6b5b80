//! The SSRF policy: which addresses a delivery may connect to. `relay-sender` applies it to
//! every address it connects to; the webhook use cases apply it to literal addresses in URLs.
//!
//! One table, [`REFUSED`], lists every range a delivery may not reach, what it is, and whether
//! `WEBHOOK_ALLOWED_CIDRS` can open it; SECURITY.md shows the same table (a test keeps the two
//! alike). IPv6 addresses that carry an IPv4 address for a translator or tunnel to reach
//! (IPv4-mapped, NAT64, 6to4) are judged by that IPv4 address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use ipnet::IpNet;

/// A range deliveries may not reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// The range, in CIDR notation.
    pub cidr: &'static str,
    /// What it is, as the error says it: "blocked: 10.0.0.5 is a private address".
    pub what: &'static str,
    /// Refused whatever `WEBHOOK_ALLOWED_CIDRS` says: credentials services of cloud platforms.
    pub always: bool,
}

const fn range(cidr: &'static str, what: &'static str) -> Refused {
    Refused { cidr, what, always: false }
}

const fn metadata(cidr: &'static str) -> Refused {
    Refused { cidr, what: "cloud metadata", always: true }
}

/// Every refused range. The more specific rows come first: the first row that holds an
/// address names it.
pub const REFUSED: &[Refused] = &[
    // Instance and task credentials: refused even when allow-listed.
    metadata("169.254.169.254/32"), // EC2 instance metadata (also GCP, Azure, OCI)
    metadata("169.254.170.2/32"),   // ECS task metadata and credentials
    metadata("169.254.170.23/32"),  // EKS Pod Identity agent
    metadata("fd00:ec2::254/128"),  // EC2 instance metadata over IPv6
    metadata("fd00:ec2::23/128"),   // EKS Pod Identity agent over IPv6
    metadata("100.100.100.200/32"), // Alibaba Cloud metadata
    metadata("168.63.129.16/32"),   // Azure platform (WireServer)
    // IPv4.
    range("0.0.0.0/8", "unspecified"),
    range("10.0.0.0/8", "private"),
    range("100.64.0.0/10", "carrier-grade NAT"),
    range("127.0.0.0/8", "loopback"),
    range("169.254.0.0/16", "link-local"),
    range("172.16.0.0/12", "private"),
    range("192.0.0.0/24", "reserved"),
    range("192.0.2.0/24", "documentation"),
    range("192.88.99.0/24", "reserved"),
    range("192.168.0.0/16", "private"),
    range("198.18.0.0/15", "reserved"),
    range("198.51.100.0/24", "documentation"),
    range("203.0.113.0/24", "documentation"),
    range("224.0.0.0/4", "multicast"),
    range("240.0.0.0/4", "reserved"),
    // IPv6.
    range("::/128", "unspecified"),
    range("::1/128", "loopback"),
    range("64:ff9b:1::/48", "private"),
    range("::/8", "reserved"),
    range("100::/64", "reserved"),
    range("2001::/32", "Teredo tunnel"),
    range("2001:2::/48", "reserved"),
    range("2001:10::/28", "reserved"),
    range("2001:20::/28", "reserved"),
    range("2001:db8::/32", "documentation"),
    range("3fff::/20", "documentation"),
    range("5f00::/16", "reserved"),
    range("fc00::/7", "private"),
    range("fe80::/10", "link-local"),
    range("fec0::/10", "private"),
    range("ff00::/8", "multicast"),
];

/// [`REFUSED`], parsed once.
static TABLE: LazyLock<Vec<(IpNet, Refused)>> =
    LazyLock::new(|| REFUSED.iter().filter_map(|row| row.cidr.parse::<IpNet>().ok().map(|net| (net, *row))).collect());

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// The address judged: for IPv6 that embeds IPv4, the IPv4 address.
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
        let Some(row) = refused(ip) else { return Ok(()) };
        if !row.always && self.allowed.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        Err(Blocked { ip, reason: row.what })
    }

    /// Checks the host of `url` when it is a literal address: no resolver sees such a host,
    /// so this is where it is judged (when a webhook is saved, and before each request).
    pub fn check_literal(&self, url: &url::Url) -> Result<(), Blocked> {
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) | None => Ok(()),
        }
    }
}

/// The first row of the table that holds `ip`.
fn refused(ip: IpAddr) -> Option<Refused> {
    TABLE.iter().find(|(net, _)| net.contains(&ip)).map(|(_, row)| *row)
}

/// The IPv4 address an IPv6 address stands for, where it stands for one: IPv4-mapped
/// (`::ffff:a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) and 6to4 (`2002:AABB:CCDD::/48`, whose
/// relay forwards to `AA.BB.CC.DD`). Anything else is itself.
fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    let v4 = |high: u16, low: u16| {
        let [a, b] = high.to_be_bytes();
        let [c, d] = low.to_be_bytes();
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    };
    match s {
        [0x64, 0xff9b, 0, 0, 0, 0, high, low] => v4(high, low),
        [0x2002, high, low, ..] => v4(high, low),
        _ => IpAddr::V6(Ipv6Addr::from(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// An address inside the row's range: its first address, or the next one for ranges whose
    /// first address belongs to a more specific row (`::/8` starts with `::`).
    fn inside(row: &Refused) -> IpAddr {
        let net: IpNet = row.cidr.parse().unwrap();
        match net {
            IpNet::V4(n) if n.prefix_len() < 32 => IpAddr::V4(Ipv4Addr::from(u32::from(n.network()) + 1)),
            IpNet::V6(n) if n.prefix_len() < 128 => IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) + 2)),
            _ => net.addr(),
        }
    }

    /// Every row of the table, one case each: an address in the range is refused with the
    /// row's reason, and the allow-list opens it unless the row says always.
    #[test]
    fn every_row_of_the_table_is_refused() {
        let closed = SsrfGuard::default();
        for row in REFUSED {
            let address = inside(row);
            let blocked = closed.check(address).expect_err(row.cidr);
            assert_eq!(blocked.reason, row.what, "{}: {address}", row.cidr);
            let opened = SsrfGuard::new(vec![row.cidr.parse().unwrap()]);
            assert_eq!(opened.check(address).is_err(), row.always, "{} allow-listed", row.cidr);
        }
        assert_eq!(TABLE.len(), REFUSED.len(), "every row parses");
    }

    #[test]
    fn refuses_non_public_ranges() {
        let guard = SsrfGuard::default();
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.18.0.1",
            "::1",
            "::",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "2001:db8::1",
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
            "::127.0.0.1",
            "::7f00:1",
            "::ffff:0:7f00:1",
            "::1:2",
            "64:ff9b:1::a00:1",
            "100::1",
            "fec0::1",
            "feff::1",
            "2001:2::1",
            "3fff::1",
            "3fff:fff::1",
        ] {
            assert!(guard.check(ip(bad)).is_err(), "{bad} allowed");
        }
        assert_eq!(guard.check(ip("::7f00:1")).unwrap_err().to_string(), "blocked: ::7f00:1 is a reserved address");
    }

    /// 6to4 addresses are judged by the IPv4 address their relay forwards to; Teredo is refused.
    #[test]
    fn tunnels_are_judged_by_the_ipv4_inside_or_refused() {
        let guard = SsrfGuard::default();
        let loopback = guard.check(ip("2002:7f00:1::")).unwrap_err();
        assert_eq!(loopback.to_string(), "blocked: 127.0.0.1 is a loopback address");
        assert_eq!(guard.check(ip("2002:a9fe:a9fe::1")).unwrap_err().reason, "cloud metadata");
        assert_eq!(guard.check(ip("2002:c0a8:101:1::1")).unwrap_err().reason, "private");
        assert!(guard.check(ip("2002:808:808::1")).is_ok(), "6to4 of 8.8.8.8");
        for teredo in ["2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:0:ffff:ffff:ffff:ffff:ffff:ffff"] {
            assert_eq!(guard.check(ip(teredo)).unwrap_err().reason, "Teredo tunnel", "{teredo}");
        }
        // Allow-listing loopback allows its 6to4 spelling (it is loopback), never metadata's.
        let local = SsrfGuard::new(vec!["127.0.0.0/8".parse().unwrap(), "169.254.0.0/16".parse().unwrap()]);
        assert!(local.check(ip("2002:7f00:1::")).is_ok());
        assert!(local.check(ip("2002:a9fe:a9fe::")).is_err());
    }

    #[test]
    fn allows_public_addresses() {
        let guard = SsrfGuard::default();
        for good in [
            "93.184.215.14",
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
            "64:ff9b::101:101",
            "100:0:0:1::1",
            "2001:4860:4860::8888",
            "2001:3::1",
            "3fff:1000::1",
            "2a00:1450::1",
            "2001:1::1",
            "2001:30::1",
            "168.63.129.17",
        ] {
            assert!(guard.check(ip(good)).is_ok(), "{good} refused");
        }
    }

    #[test]
    fn the_allow_list_opens_ranges_but_never_metadata() {
        let guard = SsrfGuard::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "169.254.0.0/16".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
        ]);
        assert!(guard.check(ip("127.0.0.1")).is_ok());
        assert!(guard.check(ip("169.254.1.1")).is_ok());
        assert!(guard.check(ip("10.0.0.1")).is_err());
        let err = guard.check(ip("169.254.169.254")).unwrap_err();
        assert_eq!(err.reason, "cloud metadata");
        assert_eq!(err.to_string(), "blocked: 169.254.169.254 is a cloud metadata address");
        for always in ["::ffff:169.254.169.254", "169.254.170.2", "169.254.170.23", "fd00:ec2::254", "fd00:ec2::23"] {
            assert_eq!(guard.check(ip(always)).unwrap_err().reason, "cloud metadata", "{always}");
        }
        assert!(guard.check(ip("fd00:ec2::1")).is_ok(), "the rest of the allow-listed range");
    }

    /// SECURITY.md's table of refused ranges is this table: same ranges, same order, same
    /// reasons and the same "always" column.
    #[test]
    fn security_md_shows_this_table() {
        let document = include_str!("../../../SECURITY.md");
        let rows: Vec<(String, String, bool)> = document
            .lines()
            .skip_while(|line| !line.starts_with("| Range |"))
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                (cells[1].trim_matches('`').to_owned(), cells[2].to_owned(), cells[4] == "always")
            })
            .collect();
        let code: Vec<(String, String, bool)> =
            REFUSED.iter().map(|row| (row.cidr.to_owned(), row.what.to_owned(), row.always)).collect();
        assert_eq!(rows, code);
    }
}
