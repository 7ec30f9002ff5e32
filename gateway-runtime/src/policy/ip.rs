//! IP rules: CIDR allow and deny lists, for IPv4 and IPv6.
//!
//! Which address counts: the peer's, by default. With `trusted_proxies`, a peer inside
//! them has its `X-Forwarded-For` read from the right, skipping addresses that are
//! trusted proxies too, and the first that is not is the client (nginx's
//! `real_ip_recursive`; when every address is trusted, the left-most is taken). Only
//! what trusted proxies appended is believed, so a client cannot pick its address by
//! sending its own `X-Forwarded-For`. An entry that is not an address makes the client
//! unknown, and an unknown client is refused: a rule fails closed.
//!
//! The verdict: a denied address is refused; then, when `allow` is not empty, an
//! address outside it is refused too. Deny wins over allow.
//!
//! A rule on a listener without trusted proxies is decided once per connection (the
//! connection phase, from the peer address); every other rule runs in the request
//! phase. The lists are constants compiled into the binary: checking an address is a
//! mask and a compare per entry, with no allocation.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network, IPv4 addresses in the low 32 bits.
    bits: u128,
    /// The network's bits set; computed with the block, not per address checked.
    mask: u128,
    prefix: u8,
    v6: bool,
}

impl Cidr {
    /// An IPv4 block; `prefix` is at most 32 and the host bits are zero (as the
    /// compiler checked).
    pub const fn v4(octets: [u8; 4], prefix: u8) -> Self {
        Cidr {
            bits: u32::from_be_bytes(octets) as u128,
            mask: mask(prefix, false),
            prefix,
            v6: false,
        }
    }

    /// An IPv6 block; `prefix` is at most 128 and the host bits are zero.
    pub const fn v6(segments: [u16; 8], prefix: u8) -> Self {
        let mut bits = 0u128;
        let mut i = 0;
        while i < 8 {
            bits = (bits << 16) | segments[i] as u128;
            i += 1;
        }
        Cidr {
            bits,
            mask: mask(prefix, true),
            prefix,
            v6: true,
        }
    }

    /// Parses `ADDRESS/PREFIX` or a single address. Host bits must be zero, so that a
    /// typo (`10.0.0.1/8`) is not silently read as a wider block than meant.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().map_err(|_| {
            format!("`{text}` is not an IP address or block: write `10.0.0.0/8`, `2001:db8::/32` or one address")
        })?;
        let width = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= width && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(format!("`/{p}` is not a prefix length from 0 to {width}")),
            },
        };
        let cidr = Cidr::of(address, prefix);
        if cidr.bits != Cidr::of(address, width).bits {
            return Err(format!(
                "`{text}` has bits set past its prefix: write `{cidr}`"
            ));
        }
        Ok(cidr)
    }

    fn of(address: IpAddr, prefix: u8) -> Cidr {
        let (bits, v6) = match address {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), false),
            IpAddr::V6(v6) => (u128::from(v6), true),
        };
        let mask = mask(prefix, v6);
        Cidr {
            bits: bits & mask,
            mask,
            prefix,
            v6,
        }
    }

    /// Whether `ip` lies in the block. IPv4-mapped IPv6 addresses (`::ffff:10.1.2.3`,
    /// as a dual-stack listener sees IPv4 clients) count as the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(v4) => !self.v6 && u128::from(u32::from(v4)) & self.mask == self.bits,
            IpAddr::V6(v6) => self.v6 && u128::from(v6) & self.mask == self.bits,
        }
    }

    /// Whether every address of `other` lies in this block.
    pub fn covers(&self, other: &Cidr) -> bool {
        self.v6 == other.v6 && self.prefix <= other.prefix && other.bits & self.mask == self.bits
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The network address.
    pub fn address(&self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(self.bits))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.bits as u32))
        }
    }
}

/// The network bits of a block with this prefix, IPv4 in the low 32 bits.
const fn mask(prefix: u8, v6: bool) -> u128 {
    let (width, all) = if v6 {
        (128, u128::MAX)
    } else {
        (32, u32::MAX as u128)
    };
    let host_bits = width - prefix as u32;
    if host_bits >= 128 {
        0
    } else {
        (all << host_bits) & all
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address(), self.prefix)
    }
}

/// One IP policy, as compiled.
#[derive(Debug, Clone, Copy)]
pub struct IpRule {
    /// The policy's name, for refusals and the log.
    pub name: &'static str,
    pub allow: &'static [Cidr],
    pub deny: &'static [Cidr],
    pub trusted_proxies: &'static [Cidr],
}

/// Most `X-Forwarded-For` field lines read; a request with more is refused.
const MAX_FORWARDED_LINES: usize = 8;

impl IpRule {
    /// Whether the rule lets `ip` through.
    pub fn admits(&self, ip: IpAddr) -> bool {
        !self.deny.iter().any(|c| c.contains(ip))
            && (self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip)))
    }

    /// The client's address for this rule, from the peer and the `X-Forwarded-For`
    /// values (field lines in order); `None` when it cannot be told.
    pub fn client<'v>(
        &self,
        peer: IpAddr,
        forwarded_for: impl Iterator<Item = &'v [u8]>,
    ) -> Option<IpAddr> {
        client_address(self.trusted_proxies, peer, forwarded_for)
    }
}

/// The client's address behind `trusted_proxies` (see the module's doc), from the
/// peer and the `X-Forwarded-For` values; `None` when it cannot be told.
pub fn client_address<'v>(
    trusted_proxies: &[Cidr],
    peer: IpAddr,
    forwarded_for: impl Iterator<Item = &'v [u8]>,
) -> Option<IpAddr> {
    let trusted = |ip: IpAddr| trusted_proxies.iter().any(|c| c.contains(ip));
    if !trusted(peer) {
        return Some(peer);
    }
    let mut lines = [&b""[..]; MAX_FORWARDED_LINES];
    let mut count = 0;
    for line in forwarded_for {
        *lines.get_mut(count)? = line;
        count += 1;
    }
    let mut client = peer;
    for line in lines[..count].iter().rev() {
        for entry in line.rsplit(|&b| b == b',') {
            let entry = entry.trim_ascii();
            if entry.is_empty() {
                continue;
            }
            client = forwarded_address(entry)?;
            if !trusted(client) {
                return Some(client);
            }
        }
    }
    Some(client)
}

/// An `X-Forwarded-For` entry: an address, optionally with a port (`10.1.2.3:5678`,
/// `[2001:db8::1]:443`), as some proxies write it.
fn forwarded_address(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?;
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (address, port) = rest.split_once(']')?;
        return (port.is_empty() || port.strip_prefix(':')?.parse::<u16>().is_ok())
            .then(|| address.parse().ok())
            .flatten();
    }
    let (address, port) = text.split_once(':')?;
    port.parse::<u16>().ok()?;
    address.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(feature = "server")]
mod phases {
    use super::IpRule;
    use crate::pipeline::gateway::Request;
    use crate::pipeline::{RequestContext, Stop};

    impl IpRule {
        /// The request phase: refuses with 403 a client the rule does not let through.
        pub fn check(&self, req: &Request, cx: &RequestContext) -> Result<(), Stop> {
            let peer = cx.client.ip();
            let client = if self.trusted_proxies.is_empty() {
                Some(peer)
            } else {
                self.client(peer, req.fields.get_all(b"x-forwarded-for"))
            };
            match client {
                Some(ip) if self.admits(ip) => Ok(()),
                _ => Err(Stop::forbidden(self.name)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    /// Blocks parse strictly and print in their normal form.
    #[test]
    fn parsing() {
        assert_eq!(
            Cidr::parse("10.0.0.0/8").unwrap(),
            Cidr::v4([10, 0, 0, 0], 8)
        );
        assert_eq!(
            Cidr::parse("10.1.2.3").unwrap(),
            Cidr::v4([10, 1, 2, 3], 32)
        );
        assert_eq!(
            Cidr::parse("2001:db8::/32").unwrap(),
            Cidr::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32)
        );
        assert_eq!(Cidr::parse("0.0.0.0/0").unwrap().to_string(), "0.0.0.0/0");
        assert!(
            Cidr::parse("10.0.0.1/8")
                .unwrap_err()
                .contains("10.0.0.0/8")
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("10.0.0.0/+8").is_err());
        assert!(Cidr::parse("10.0.0/8").is_err());
        assert!(Cidr::parse("::/129").is_err());
        assert!(Cidr::parse("example.com").is_err());
    }

    /// Membership per family; IPv4-mapped IPv6 counts as IPv4.
    #[test]
    fn membership() {
        let block = Cidr::v4([10, 0, 0, 0], 8);
        assert!(block.contains(ip("10.255.1.2")));
        assert!(!block.contains(ip("11.0.0.1")));
        assert!(block.contains(ip("::ffff:10.1.2.3")));
        assert!(!block.contains(ip("::1")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("1.2.3.4")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("2001:db8::1")));
        assert!(block.covers(&Cidr::v4([10, 1, 0, 0], 16)));
        assert!(!Cidr::v4([10, 1, 0, 0], 16).covers(&block));
    }

    const OFFICE: &[Cidr] = &[Cidr::v4([192, 168, 0, 0], 16)];
    const BANNED: &[Cidr] = &[Cidr::v4([192, 168, 66, 0], 24)];
    const PROXIES: &[Cidr] = &[Cidr::v4([10, 0, 0, 0], 8)];

    /// Deny wins over allow; an allow list refuses everything outside it.
    #[test]
    fn verdicts() {
        let rule = IpRule {
            name: "office",
            allow: OFFICE,
            deny: BANNED,
            trusted_proxies: &[],
        };
        assert!(rule.admits(ip("192.168.1.1")));
        assert!(!rule.admits(ip("192.168.66.1")));
        assert!(!rule.admits(ip("8.8.8.8")));
        let deny_only = IpRule { allow: &[], ..rule };
        assert!(deny_only.admits(ip("8.8.8.8")));
    }

    /// The right-most untrusted `X-Forwarded-For` entry is the client, and only when
    /// the peer is a trusted proxy.
    #[test]
    fn client_behind_trusted_proxies() {
        let rule = IpRule {
            name: "office",
            allow: OFFICE,
            deny: &[],
            trusted_proxies: PROXIES,
        };
        let client =
            |peer: &str, lines: &[&str]| rule.client(ip(peer), lines.iter().map(|l| l.as_bytes()));
        // An untrusted peer's own header is ignored.
        assert_eq!(client("8.8.8.8", &["192.168.1.1"]), Some(ip("8.8.8.8")));
        // Spoofed entries to the left of what the proxies appended do not count.
        assert_eq!(
            client("10.0.0.1", &["192.168.1.1, 8.8.4.4", "10.0.0.2"]),
            Some(ip("8.8.4.4"))
        );
        assert_eq!(
            client("10.0.0.1", &["192.168.1.1:5678"]),
            Some(ip("192.168.1.1"))
        );
        assert_eq!(
            client("10.0.0.1", &["[2001:db8::1]:443"]),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(client("10.0.0.1", &[]), Some(ip("10.0.0.1")));
        assert_eq!(
            client("10.0.0.1", &["10.0.0.9, 10.0.0.8"]),
            Some(ip("10.0.0.9"))
        );
        // Garbage makes the client unknown, which is refused.
        assert_eq!(client("10.0.0.1", &["192.168.1.1, unknown"]), None);
        assert_eq!(client("10.0.0.1", &["x"; 9]), None);
    }
}
