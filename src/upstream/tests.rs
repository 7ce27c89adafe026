use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

#[test]
fn internal_ranges_are_recognised() {
    for s in [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.1",
        "198.18.0.1",
        "240.0.0.1",
        "::1",
        "::",
        "fc00::1",
        "fd12::1",
        "fe80::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "2002:7f00:1::",
    ] {
        assert!(is_internal(ip(s)), "{s} should be internal");
    }
    for s in ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
        assert!(!is_internal(ip(s)), "{s} should be public");
    }
}

#[test]
fn allow_list_and_dangerous_switch() {
    let p = AddressPolicy { allow_private: false, allow_cidrs: vec!["127.0.0.1/32".parse().unwrap_or_else(|_| unreachable!())] };
    assert!(p.permits(ip("127.0.0.1")));
    assert!(p.permits(ip("::ffff:127.0.0.1")), "mapped addresses are judged as IPv4");
    assert!(!p.permits(ip("127.0.0.2")));
    assert!(!p.permits(ip("::1")));
    assert!(p.permits(ip("8.8.8.8")));
    let open = AddressPolicy { allow_private: true, allow_cidrs: vec![] };
    assert!(open.permits(ip("10.0.0.1")));
}

proptest! {
    #[test]
    fn mapped_v6_is_judged_as_its_v4(a in any::<u32>()) {
        let v4 = Ipv4Addr::from(a);
        prop_assert_eq!(is_internal(IpAddr::V4(v4)), is_internal(IpAddr::V6(v4.to_ipv6_mapped())));
    }

    #[test]
    fn private_v4_is_never_permitted_by_default(b in any::<u8>(), c in any::<u8>(), d in any::<u8>()) {
        let p = AddressPolicy::default();
        prop_assert!(!p.permits(IpAddr::V4(Ipv4Addr::new(10, b, c, d))));
        prop_assert!(!p.permits(IpAddr::V4(Ipv4Addr::new(127, b, c, d))));
        prop_assert!(!p.permits(IpAddr::V4(Ipv4Addr::new(169, 254, c, d))));
        prop_assert!(!p.permits(IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, b.into(), c.into(), d.into(), 1))));
    }
}

#[test]
fn header_values_cannot_break_lines() {
    assert_eq!(header_value("a\r\nX-Evil: 1"), "a%0D%0AX-Evil: 1");
    assert_eq!(header_value("ünï"), "%C3%BCn%C3%AF");
    assert_eq!(header_value("50%"), "50%25");
}
