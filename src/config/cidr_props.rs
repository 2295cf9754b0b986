//! Property tests of the CIDR parser (`cidr::Cidr`, `--trusted-proxy`):
//! any text gets a typed answer, networks round-trip through their text,
//! and `contains` agrees with a reference that compares leading bits, an
//! IPv4 address and its IPv4-mapped IPv6 form being one host.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::cidr::Cidr;

/// An address as one host: IPv4-mapped IPv6 is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Reference membership: the same family once both are canonical (a
/// mapped network `::ffff:a.b.c.d/n`, n >= 96, is `a.b.c.d/(n-96)`), and
/// at least `prefix` equal leading bits.
fn reference_contains(net: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    let (net, prefix) = match net {
        IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => {
            (canonical(net), prefix - 96)
        }
        other => (other, prefix),
    };
    match (net, canonical(ip)) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            (u32::from(n) ^ u32::from(i)).leading_zeros() >= u32::from(prefix)
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            (u128::from(n) ^ u128::from(i)).leading_zeros() >= u32::from(prefix)
        }
        _ => false,
    }
}

fn network() -> impl Strategy<Value = (IpAddr, u8)> {
    prop_oneof![
        (any::<Ipv4Addr>(), 0u8..=32).prop_map(|(a, p)| (IpAddr::V4(a), p)),
        (any::<Ipv6Addr>(), 0u8..=128).prop_map(|(a, p)| (IpAddr::V6(a), p)),
        (any::<Ipv4Addr>(), 96u8..=128).prop_map(|(a, p)| (IpAddr::V6(a.to_ipv6_mapped()), p)),
    ]
}

/// An address near `net` (sharing a random number of leading bits), or
/// any address, in either spelling.
fn address_near(net: IpAddr) -> impl Strategy<Value = IpAddr> {
    (0u32..=128, any::<u128>(), any::<IpAddr>(), 0u8..4).prop_map(
        move |(keep, noise, any_ip, how)| {
            let near = match net {
                IpAddr::V4(n) => {
                    let keep = keep.min(32);
                    let mask = u32::MAX.checked_shl(32 - keep).unwrap_or(0);
                    IpAddr::V4(Ipv4Addr::from(
                        (u32::from(n) & mask) | (noise as u32 & !mask),
                    ))
                }
                IpAddr::V6(n) => {
                    let mask = u128::MAX.checked_shl(128 - keep).unwrap_or(0);
                    IpAddr::V6(Ipv6Addr::from((u128::from(n) & mask) | (noise & !mask)))
                }
            };
            match how {
                0 => any_ip,
                1 => match near {
                    IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
                    v6 => canonical(v6),
                },
                _ => near,
            }
        },
    )
}

proptest! {
    #![proptest_config(crate::props::config(1024))]

    /// Catches: a panic on odd text, or an error that does not quote it.
    #[test]
    fn any_text_gets_a_typed_answer(text in any::<String>()) {
        if let Err(e) = Cidr::parse(&text) {
            prop_assert_eq!(&e.text, &text);
            prop_assert!(e.to_string().contains("CIDR"));
        }
    }

    /// Catches: a network that prints as text that parses differently,
    /// or a prefix past the address length accepted.
    #[test]
    fn networks_round_trip_and_prefixes_are_bounded((addr, prefix) in network(), extra in 1u8..=100) {
        let net = Cidr::parse(&format!("{addr}/{prefix}")).unwrap();
        prop_assert_eq!(Cidr::parse(&net.to_string()), Ok(net));
        prop_assert_eq!(Cidr::parse(&format!(" {addr} ")).map(|n| n.contains(addr)), Ok(true));
        let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let too_long = format!("{addr}/{}", u16::from(max) + u16::from(extra));
        prop_assert!(Cidr::parse(&too_long).is_err(), "{}", too_long);
    }

    /// Catches: a mask off by one bit, a shift overflow at /0 or /32, a
    /// mapped address (or a mapped network) treated as another host: a
    /// trusted proxy not recognised, or an untrusted peer believed.
    #[test]
    fn contains_agrees_with_the_reference(
        ((addr, prefix), ip) in network().prop_flat_map(|n| (Just(n), address_near(n.0)))
    ) {
        let net = Cidr::parse(&format!("{addr}/{prefix}")).unwrap();
        prop_assert_eq!(net.contains(ip), reference_contains(addr, prefix, ip), "{} contains {}?", net, ip);
    }
}
