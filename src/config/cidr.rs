//! IP networks in CIDR notation (`10.0.0.0/8`, `::1/128`, or a bare address)
//! for `--trusted-proxy`.

use std::fmt;
use std::net::IpAddr;

/// Why a text is not a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a CIDR network ({why}); example: 10.0.0.0/8 or ::1")]
pub struct CidrError {
    pub text: String,
    pub why: &'static str,
}

/// An IP network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDR/PREFIX` or a bare address (a single host).
    pub fn parse(text: &str) -> Result<Cidr, CidrError> {
        let bad = |why: &'static str| CidrError {
            text: text.to_string(),
            why,
        };
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad("bad address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| bad("bad prefix length"))?,
            None => max,
        };
        if prefix > max {
            return Err(bad("prefix too long"));
        }
        // An IPv4-mapped network (`::ffff:10.0.0.1`, `::ffff:10.0.0.0/104`)
        // is the IPv4 one: peers are compared as IPv4 once unmapped.
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (addr, prefix),
            },
            _ => (addr, prefix),
        };
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` is inside this network (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains() {
        let n = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.0.0.1".parse().unwrap()));
        let h = Cidr::parse("::1").unwrap();
        assert!(h.contains("::1".parse().unwrap()));
        assert!(!h.contains("::2".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
    }

    /// Found by `cidr_props`: a trusted proxy written as an IPv4-mapped
    /// address (as a dual-stack socket shows it) never matched, itself
    /// included, because peers are unmapped before the comparison.
    #[test]
    fn mapped_networks_match_their_ipv4_peers() {
        let host = Cidr::parse("::ffff:10.0.0.1").unwrap();
        assert!(host.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(host.contains("10.0.0.1".parse().unwrap()));
        assert!(!host.contains("10.0.0.2".parse().unwrap()));
        let net = Cidr::parse("::ffff:10.0.0.0/104").unwrap();
        assert!(net.contains("10.200.0.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert_eq!(net.to_string(), "10.0.0.0/8");
    }
}
