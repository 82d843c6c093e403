//! Outbound requests (webhooks): never to this machine or its networks unless allowed.
//!
//! A tenant with the `admin` scope chooses where webhooks go; without a guard that is a way to
//! make the server reach what only it can reach (SSRF): loopback services, the cloud's metadata
//! endpoint, private networks. Every address is checked after DNS resolution (the resolver
//! drops refused ones, so a name that resolves to 127.0.0.1 fails, and there is no second
//! lookup to race), IP literals in every form the URL parser accepts (`2130706433`,
//! `0x7f.1`, `[::ffff:127.0.0.1]`) before sending, and every redirect hop again.
//! `outbound_allow` (`MICRODASH_OUTBOUND_ALLOW`, CIDRs) lets the server's operator open ranges,
//! e.g. an in-cluster receiver's Service network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// Redirects followed at most (each hop checked).
pub const MAX_REDIRECTS: usize = 3;

/// The ranges outbound requests may reach besides public addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    allow: Vec<IpNet>,
}

impl OutboundPolicy {
    /// Parses comma-separated CIDRs or single addresses (`10.96.0.0/12, 127.0.0.1`); empty = none.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut allow = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let net = match part.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => part
                    .parse::<IpAddr>()
                    .map(IpNet::from)
                    .map_err(|_| format!("{part:?} is not a CIDR like 10.96.0.0/12 or an address like 127.0.0.1"))?,
            };
            allow.push(net);
        }
        Ok(OutboundPolicy { allow })
    }

    pub fn allowed(&self) -> &[IpNet] {
        &self.allow
    }

    /// `Err` with the reason when `ip` may not be reached.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        let Some(kind) = refused_kind(ip) else { return Ok(()) };
        if self.allow.iter().any(|net| net.contains(&ip) || canonical(ip).is_some_and(|v4| net.contains(&v4))) {
            return Ok(());
        }
        Err(format!(
            "{ip} is a {kind} address; outbound requests go to public addresses only (allow ranges with MICRODASH_OUTBOUND_ALLOW)"
        ))
    }

    /// Checks the host of `url` when it is an IP literal (names are checked when resolved).
    pub fn check_url(&self, url: &url::Url) -> Result<(), String> {
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => Ok(()),
            None => Err("the URL has no host".into()),
        }
    }

    /// A reqwest client builder whose DNS answers and redirects are checked against `self`.
    pub fn client_builder(self: &Arc<Self>) -> reqwest::ClientBuilder {
        let policy = self.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            match policy.check_url(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(why) => attempt.error(format!("redirect refused: {why}")),
            }
        });
        reqwest::Client::builder().dns_resolver(Arc::new(GuardedResolver(self.clone()))).redirect(redirects)
    }
}

/// The address as IPv4 when it is an IPv4 address in IPv6 clothing (mapped or compatible).
fn canonical(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().or_else(|| nat64(v6)).map(IpAddr::V4),
        IpAddr::V4(_) => None,
    }
}

/// The IPv4 address inside the NAT64 well-known prefix 64:ff9b::/96.
fn nat64(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]).then(|| Ipv4Addr::from(((s[6] as u32) << 16) | s[7] as u32))
}

/// What kind of non-public address `ip` is; `None` for a public one.
pub fn refused_kind(ip: IpAddr) -> Option<&'static str> {
    if let Some(v4) = canonical(ip) {
        return refused_kind(v4);
    }
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_unspecified() || a == 0 {
                Some("\"this network\" (0.0.0.0/8)")
            } else if v4.is_private() {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local (cloud metadata)")
            } else if a == 100 && (64..128).contains(&b) {
                Some("shared (carrier-grade NAT)")
            } else if v4.is_multicast() || v4.is_broadcast() || a >= 240 {
                Some("multicast, broadcast or reserved")
            } else if a == 192 && b == 0 && v4.octets()[2] == 0 {
                Some("IETF protocol assignment")
            } else if (a == 198 && (b == 18 || b == 19)) || v4.is_documentation() {
                Some("benchmarking or documentation")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if first & 0xfe00 == 0xfc00 {
                Some("unique local (private)")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if first == 0x2001 && v6.segments()[1] == 0x0db8 {
                Some("documentation")
            } else {
                None
            }
        }
    }
}

/// Resolves with the system resolver and keeps only the addresses the policy allows.
struct GuardedResolver(Arc<OutboundPolicy>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let kept: Vec<SocketAddr> = found
                .into_iter()
                .filter(|addr| match policy.check(addr.ip()) {
                    Ok(()) => true,
                    Err(why) => {
                        refused.get_or_insert(why);
                        false
                    }
                })
                .collect();
            if kept.is_empty() {
                let why = refused.unwrap_or_else(|| "no address".into());
                return Err(format!("{host} resolves to no address outbound requests may reach: {why}").into());
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> url::Url {
        url::Url::parse(text).unwrap()
    }

    #[test]
    fn every_form_of_a_local_address_is_refused() {
        let none = OutboundPolicy::default();
        for text in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0x7f.0.0.1/",
            "http://0177.0.0.1/",
            "http://0.0.0.0/",
            "http://0/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://[::1]/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[fd00:ec2::254]/",
            "http://[fe80::1]/",
            "http://255.255.255.255/",
        ] {
            assert!(none.check_url(&url(text)).is_err(), "{text} passed");
        }
        for text in ["http://93.184.216.34/", "http://[2606:4700::1111]/", "http://example.com/"] {
            assert!(none.check_url(&url(text)).is_ok(), "{text} refused");
        }
    }

    #[test]
    fn allowed_ranges_open_exactly_those_addresses() {
        let policy = OutboundPolicy::parse(" 10.96.0.0/12, 127.0.0.1 ,::1").unwrap();
        assert!(policy.check("10.96.0.10".parse().unwrap()).is_ok());
        assert!(policy.check("10.112.0.1".parse().unwrap()).is_err());
        assert!(policy.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(policy.check("::ffff:127.0.0.1".parse().unwrap()).is_ok(), "the mapped form of an allowed address");
        assert!(policy.check("127.0.0.2".parse().unwrap()).is_err());
        assert!(policy.check("::1".parse().unwrap()).is_ok());
        let why = OutboundPolicy::parse("10.0.0.0/33").unwrap_err();
        assert!(why.contains("10.0.0.0/33"), "{why}");
        assert_eq!(OutboundPolicy::parse("").unwrap(), OutboundPolicy::default());
    }
}
