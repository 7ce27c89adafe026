//! The SSRF guard: which addresses an upstream call may reach.
//!
//! Checked after DNS resolution (a resolver that filters every answer), and for IP-literal
//! URLs before the call; redirects are never followed. Internal ranges are denied unless
//! allow-listed by CIDR or by the dangerous switch.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Which destinations are allowed.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    pub allow_private: bool,
    pub allow_cidrs: Vec<IpNet>,
}

impl AddressPolicy {
    /// The policy `upstream:` configures, for everything Warden reaches on a caller's or a
    /// config's word (tools, federated servers, OpenAPI documents, client metadata, webhooks).
    pub fn of(config: &super::config::UpstreamConfig) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self { allow_private: config.dangerous_allow_private_upstreams, allow_cidrs: config.allow_cidrs.clone() })
    }

    /// Whether a call may go to `ip`. An IPv6 address that carries IPv4 addresses (see
    /// [`embedded_v4`]) is judged by every address it carries: all must be allowed.
    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.allow_private {
            return true;
        }
        let listed = |ip: IpAddr| self.allow_cidrs.iter().any(|n| n.contains(&ip));
        match ip {
            IpAddr::V4(v4) => !is_internal_v4(v4) || listed(ip),
            IpAddr::V6(v6) => match embedded_v4(v6) {
                Embedded::Carries(list) => listed(ip) || list.iter().all(|&v4| !is_internal_v4(v4) || listed(IpAddr::V4(v4))),
                Embedded::Unknown => listed(ip),
                Embedded::None => !is_internal_v6(v6) || listed(ip),
            },
        }
    }
}

impl AddressPolicy {
    /// Whether `url` may be called as far as its host tells before DNS: an IP literal must be
    /// permitted; a name is checked by the resolver, after DNS.
    pub fn permits_literal(&self, url: &url::Url) -> bool {
        match url.host() {
            Some(url::Host::Ipv4(v4)) => self.permits(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => self.permits(IpAddr::V6(v6)),
            Some(url::Host::Domain(_)) | None => true,
        }
    }
}

/// What IPv4 addresses an IPv6 address carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Embedded {
    /// None: a plain IPv6 address.
    None,
    /// These (one, or two for Teredo's server and client).
    Carries(Vec<Ipv4Addr>),
    /// Some, at a place the address alone does not tell (NAT64 local-use prefixes): never
    /// allowed unless allow-listed.
    Unknown,
}

/// The IPv4 addresses an IPv6 address carries: IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`, deprecated), IPv4-translated (`::ffff:0:a.b.c.d`), NAT64
/// (`64:ff9b::a.b.c.d`, RFC 6052; the local-use `64:ff9b:1::/48` of RFC 8215 at an unknown
/// place), 6to4 (`2002:AABB:CCDD::/48`, RFC 3056) and Teredo (`2001:0::/32`, RFC 4380: the
/// server at bits 32-63, the client inverted in the last 32 bits).
pub fn embedded_v4(ip: Ipv6Addr) -> Embedded {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Embedded::Carries(vec![v4]);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1) {
        return Embedded::Carries(vec![v4(s[6], s[7])]);
    }
    if s[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return Embedded::Carries(vec![v4(s[6], s[7])]);
    }
    if s[0] == 0x0064 && s[1] == 0xff9b {
        if s[2..6] == [0, 0, 0, 0] {
            return Embedded::Carries(vec![v4(s[6], s[7])]);
        }
        if s[2] == 0x0001 {
            return Embedded::Unknown;
        }
    }
    if s[0] == 0x2002 {
        return Embedded::Carries(vec![v4(s[1], s[2])]);
    }
    if s[0] == 0x2001 && s[1] == 0 {
        return Embedded::Carries(vec![v4(s[2], s[3]), v4(!s[6], !s[7])]);
    }
    Embedded::None
}

/// Loopback, private, link-local (cloud metadata lives at 169.254.169.254), shared address
/// space, unspecified, broadcast, multicast, benchmarking and reserved ranges; for IPv6, the
/// same judged of every IPv4 address it carries.
pub fn is_internal(ip: IpAddr) -> bool {
    !AddressPolicy::default().permits(ip)
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 shared address space
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24 protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15 benchmarking
        || o[0] >= 240 // reserved
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local
        || (s[0] & 0xffc0) == 0xfe80 // fe80::/10 link local
        || (s[0] & 0xffc0) == 0xfec0 // fec0::/10 site local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
}

/// A resolver that drops every answer the policy forbids; an empty result fails the call.
pub struct GuardedResolver {
    pub policy: Arc<AddressPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs.into_iter().filter(|a| policy.permits(a.ip())).collect();
            if allowed.is_empty() {
                return Err(Box::new(Blocked) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The error a blocked destination produces; recognised in the error chain.
#[derive(Debug, thiserror::Error)]
#[error("destination address not allowed by the SSRF guard")]
pub struct Blocked;
