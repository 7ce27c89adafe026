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

/// Every IPv6 form that carries an IPv4 address is judged by that address (issue 9: `[::127.0.0.1]`
/// passed the guard).
#[test]
fn ipv6_forms_carrying_ipv4_are_judged_by_the_ipv4_address() {
    use super::ssrf::{Embedded, embedded_v4};
    let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap_or(Ipv6Addr::UNSPECIFIED);
    let carries = |s: &str, v4: &[&str]| {
        assert_eq!(embedded_v4(v6(s)), Embedded::Carries(v4.iter().map(|a| a.parse().unwrap_or(Ipv4Addr::UNSPECIFIED)).collect()), "{s}");
    };
    carries("::ffff:127.0.0.1", &["127.0.0.1"]); // mapped
    carries("::127.0.0.1", &["127.0.0.1"]); // compatible
    carries("::ffff:0:10.0.0.1", &["10.0.0.1"]); // translated
    carries("64:ff9b::169.254.169.254", &["169.254.169.254"]); // NAT64 well-known prefix
    carries("2002:c0a8:0101::1", &["192.168.1.1"]); // 6to4
    // Teredo: server 65.54.227.120, client 192.168.1.1 stored inverted (3f57:fefe).
    carries("2001:0:4136:e378:8000:63bf:3f57:fefe", &["65.54.227.120", "192.168.1.1"]);
    assert_eq!(embedded_v4(v6("64:ff9b:1::a00:1")), Embedded::Unknown);
    for s in ["::", "::1", "2606:4700::1111", "fe80::1"] {
        assert_eq!(embedded_v4(v6(s)), Embedded::None, "{s}");
    }
    for s in [
        "::127.0.0.1",
        "::7f00:1",
        "::10.0.0.1",
        "::169.254.169.254",
        "::ffff:0:127.0.0.1",
        "64:ff9b::10.0.0.1",
        "64:ff9b:1::8.8.8.8",
        "2002:0a00:0001::",
        "2002:a9fe:a9fe::1",
        "2001:0:4136:e378:8000:63bf:3f57:fefe",
        "2001:0:0a00:0001:8000:63bf:f7f7:f7f7",
    ] {
        assert!(is_internal(ip(s)), "{s} carries an internal IPv4 address");
    }
    for s in ["::8.8.8.8", "64:ff9b::8.8.8.8", "2002:0808:0808::1", "2001:0:4136:e378:8000:63bf:f7f7:f7f7", "::ffff:0:1.1.1.1"] {
        assert!(!is_internal(ip(s)), "{s} carries only public IPv4 addresses");
    }
    // An allow-listed IPv4 range covers its IPv6 carriers too, and only them.
    let p = AddressPolicy { allow_private: false, allow_cidrs: vec!["127.0.0.0/8".parse().unwrap_or_else(|_| unreachable!())] };
    assert!(p.permits(ip("::127.0.0.1")) && p.permits(ip("2002:7f00:1::")) && p.permits(ip("64:ff9b::127.0.0.1")));
    assert!(!p.permits(ip("::10.0.0.1")) && !p.permits(ip("64:ff9b:1::7f00:1")));
}

proptest! {
    #[test]
    fn mapped_v6_is_judged_as_its_v4(a in any::<u32>()) {
        let v4 = Ipv4Addr::from(a);
        prop_assert_eq!(is_internal(IpAddr::V4(v4)), is_internal(IpAddr::V6(v4.to_ipv6_mapped())));
    }

    /// Every carrier of an IPv4 address is judged as that address.
    #[test]
    fn every_carrier_is_judged_as_its_v4(a in 2u32..) {
        let v4 = Ipv4Addr::from(a);
        let [h, l] = [(a >> 16) as u16, a as u16];
        let carriers = [
            Ipv6Addr::new(0, 0, 0, 0, 0, 0, h, l),
            Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, h, l),
            Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, h, l),
            Ipv6Addr::new(0x2002, h, l, 0, 0, 0, 0, 1),
            Ipv6Addr::new(0x2001, 0, 0x0808, 0x0808, 0, 0, !h, !l),
        ];
        for c in carriers {
            prop_assert_eq!(is_internal(IpAddr::V4(v4)), is_internal(IpAddr::V6(c)), "{}", c);
        }
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
