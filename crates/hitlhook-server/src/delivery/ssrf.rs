//! The SSRF guard on every outbound URL. Hosts are resolved first and *every* address is
//! checked; one forbidden address refuses the request (a host must not mix public and private
//! answers). The guard is also the HTTP client's DNS resolver, so the connection goes to exactly
//! the addresses that were vetted (no second lookup an attacker could rebind). IP literals never
//! reach a resolver and are checked before sending.
//!
//! Refused unless allow-listed: loopback, private (10/8, 172.16/12, 192.168/16), CGNAT
//! (100.64/10), link-local (169.254/16, fe80::/10), unique-local (fc00::/7), multicast,
//! reserved and documentation ranges, "this network", benchmarking, and the IPv6 forms that embed
//! an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible, NAT64 `64:ff9b::/96`, 6to4),
//! which get the embedded address's verdict.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refused outbound address {addr} ({why}); allow it with HITLHOOK_OUTBOUND_ALLOW if intended"
)]
pub struct Refused {
    pub addr: IpAddr,
    pub why: &'static str,
}

/// The guard: forbidden ranges, minus an operator's allow-list.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    allow: Vec<IpNet>,
}

impl Guard {
    /// A guard admitting `allow` (CIDRs or single addresses such as `127.0.0.1`).
    pub fn new(allow: &[String]) -> Result<Self, String> {
        let allow = allow
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("HITLHOOK_OUTBOUND_ALLOW: {s:?} is not an IP address or CIDR")
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Guard { allow })
    }

    /// Checks one address.
    pub fn check(&self, addr: IpAddr) -> Result<(), Refused> {
        if self.allowed(addr) {
            return Ok(());
        }
        match forbidden(addr) {
            None => Ok(()),
            Some(why) => Err(Refused { addr, why }),
        }
    }

    fn allowed(&self, addr: IpAddr) -> bool {
        let embedded = match addr {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.allow
            .iter()
            .any(|net| net.contains(&addr) || embedded.is_some_and(|v4| net.contains(&v4)))
    }

    /// Resolves `host` and checks every address; the vetted addresses, or why not.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| ResolveError::Lookup(format!("cannot resolve {host}: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(ResolveError::Lookup(format!("{host} has no addresses")));
        }
        for a in &addrs {
            self.check(a.ip()).map_err(ResolveError::Refused)?;
        }
        Ok(addrs)
    }
}

/// A failed resolution.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    #[error("{0}")]
    Lookup(String),
    #[error(transparent)]
    Refused(Refused),
}

/// The IPv4 address an IPv6 address stands for, if it is one of the embedding forms.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match s {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated; not :: and ::1).
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(tail),
        // NAT64 well-known prefix 64:ff9b::/96.
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        // 6to4 2002:a.b.c.d::/48.
        [0x2002, a, b, ..] => Some(Ipv4Addr::new(
            (a >> 8) as u8,
            (a & 0xff) as u8,
            (b >> 8) as u8,
            (b & 0xff) as u8,
        )),
        _ => None,
    }
}

/// Why an address is not globally routable, or `None` when it is.
#[must_use]
pub fn forbidden(addr: IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "\"this network\" 0.0.0.0/8",
        (10, _, _) => "private 10.0.0.0/8",
        (100, 64..=127, _) => "shared address space (CGNAT) 100.64.0.0/10",
        (127, _, _) => "loopback 127.0.0.0/8",
        (169, 254, _) => "link-local 169.254.0.0/16 (cloud metadata lives here)",
        (172, 16..=31, _) => "private 172.16.0.0/12",
        (192, 0, 0) => "IETF protocol assignments 192.0.0.0/24",
        (192, 0, 2) => "documentation 192.0.2.0/24",
        (192, 88, 99) => "6to4 relay anycast 192.88.99.0/24",
        (192, 168, _) => "private 192.168.0.0/16",
        (198, 18..=19, _) => "benchmarking 198.18.0.0/15",
        (198, 51, 100) => "documentation 198.51.100.0/24",
        (203, 0, 113) => "documentation 203.0.113.0/24",
        (224..=239, _, _) => "multicast 224.0.0.0/4",
        (240..=255, _, _) => "reserved 240.0.0.0/4 (and broadcast)",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = embedded_v4(ip) {
        // Mapped, compatible, NAT64 and 6to4 forms are judged by the address they carry.
        return forbidden_v4(v4);
    }
    let s = ip.segments();
    Some(match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => "unspecified ::",
        [0, 0, 0, 0, 0, 0, 0, 1] => "loopback ::1",
        [0x64, 0xff9b, 1, ..] => "local-use NAT64 64:ff9b:1::/48",
        [0x100, 0, 0, 0, ..] => "discard-only 100::/64",
        [0x2001, 0x0db8, ..] => "documentation 2001:db8::/32",
        [0x2001, 0..=0x01ff, ..] => "IETF protocol assignments 2001::/23 (incl. Teredo)",
        [0x3fff, 0..=0x0fff, ..] => "documentation 3fff::/20",
        [0x5f00, ..] => "segment routing 5f00::/16",
        [x, ..] if x & 0xfe00 == 0xfc00 => "unique-local fc00::/7",
        [x, ..] if x & 0xffc0 == 0xfe80 => "link-local fe80::/10",
        [x, ..] if x & 0xffc0 == 0xfec0 => "site-local fec0::/10",
        [x, ..] if x & 0xff00 == 0xff00 => "multicast ff00::/8",
        // Only 2000::/3 is allocated as global unicast.
        [x, ..] if x & 0xe000 != 0x2000 => "reserved (outside 2000::/3)",
        _ => return None,
    })
}

/// The guard as reqwest's resolver: every lookup is vetted, and reqwest connects only to the
/// addresses returned here.
#[derive(Debug, Clone)]
pub struct GuardedResolver(pub Arc<Guard>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = Arc::clone(&self.0);
        Box::pin(async move {
            let addrs = guard.resolve(name.as_str(), 0).await?;
            let iter: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(iter)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn forbidden_ranges() {
        let refused = [
            "127.0.0.1",
            "127.255.255.254",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "224.0.0.1",
            "239.255.255.255",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.2.10",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "192.0.0.8",
            "::1",
            "::",
            "fe80::1",
            "febf::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "2001:db8::1",
            "3fff::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "2001::1",
            "100::1",
            "fec0::1",
            "4000::1",
        ];
        for a in refused {
            assert!(forbidden(ip(a)).is_some(), "{a} must be refused");
        }
        let global = [
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "192.169.0.1",
            "169.253.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ];
        for a in global {
            assert_eq!(forbidden(ip(a)), None, "{a} is global");
        }
    }

    #[test]
    fn the_allow_list_admits_exactly_what_it_names() {
        let guard = Guard::new(&["127.0.0.1".into(), "10.0.0.0/8".into()]).expect("guard");
        assert_eq!(guard.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(
            guard.check(ip("::ffff:127.0.0.1")),
            Ok(()),
            "the mapped form of an allowed address"
        );
        assert_eq!(guard.check(ip("10.9.8.7")), Ok(()));
        assert!(guard.check(ip("127.0.0.2")).is_err());
        assert!(guard.check(ip("::1")).is_err());
        assert!(guard.check(ip("192.168.0.1")).is_err());
        assert!(Guard::new(&["localhost".into()]).is_err());
        assert!(Guard::new(&["10.0.0.0/33".into()]).is_err());
        let err = Guard::default()
            .check(ip("169.254.169.254"))
            .expect_err("refused");
        assert!(err.to_string().contains("link-local"), "{err}");
    }

    #[tokio::test]
    async fn resolution_checks_every_address() {
        let guard = Guard::default();
        let err = guard.resolve("localhost", 80).await.expect_err("refused");
        assert!(matches!(err, ResolveError::Refused(_)), "{err}");
        let open = Guard::new(&["127.0.0.0/8".into(), "::1".into()]).expect("guard");
        let addrs = open.resolve("localhost", 80).await.expect("allowed");
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
        assert!(matches!(
            guard.resolve("no-such-host.invalid", 80).await,
            Err(ResolveError::Lookup(_))
        ));
    }
}
