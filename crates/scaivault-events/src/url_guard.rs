//! Outbound safety for webhook URLs (SSRF): a webhook must not make the server call its own loopback,
//! the private network it runs in, or a cloud metadata endpoint, unless the operator starts the server
//! with `--webhook-allow-private`.
//!
//! The check runs twice: when a webhook is created ([`check_webhook_url`], which resolves the name and
//! refuses if any address is forbidden, for a clear error at the API), and at every connection
//! ([`GuardedResolver`], which drops forbidden addresses from each resolution, so a name that resolved
//! to a public address at creation cannot be re-pointed at `127.0.0.1` later: DNS rebinding). IP
//! literals never reach a resolver, so the sender checks those itself before connecting.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use thiserror::Error;

/// How long a creation-time lookup may take before the host counts as unresolvable.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a webhook URL is refused. The messages are shown to API clients as they are.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UrlError {
    #[error("invalid webhook URL: {0}")]
    Invalid(String),
    #[error("webhook URL must use http or https")]
    Scheme,
    #[error("webhook URL must not carry user info")]
    Credentials,
    #[error(
        "webhook URL host '{host}' resolves to a loopback, private, link-local or metadata address; \
         start the server with --webhook-allow-private to allow it"
    )]
    ForbiddenAddress { host: String },
}

/// Whether an IPv4 address is one a webhook must not reach: "this network", loopback, private, CGNAT,
/// link-local (with the 169.254.169.254 metadata service), IETF protocol assignments, documentation,
/// benchmarking, multicast, reserved and broadcast.
fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0                                         // 0.0.0.0/8 "this network"
        || a == 10                                 // 10/8 private
        || (a == 100 && (64..128).contains(&b))    // 100.64/10 carrier-grade NAT
        || a == 127                                // 127/8 loopback
        || (a == 169 && b == 254)                  // 169.254/16 link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b))     // 172.16/12 private
        || (a == 192 && b == 0 && c == 0)          // 192.0.0/24 IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)          // 192.0.2/24 documentation
        || (a == 192 && b == 168)                  // 192.168/16 private
        || (a == 198 && (b == 18 || b == 19))      // 198.18/15 benchmarking
        || (a == 198 && b == 51 && c == 100)       // 198.51.100/24 documentation
        || (a == 203 && b == 0 && c == 113)        // 203.0.113/24 documentation
        || a >= 224 // 224/4 multicast, 240/4 reserved, 255.255.255.255 broadcast
}

/// The IPv4 address an IPv6 address stands for, when it is one of the forms that reach IPv4 hosts:
/// IPv4-mapped `::ffff:0:0/96`, IPv4-compatible `::/96`, NAT64 `64:ff9b::/96` and 6to4 `2002::/16`.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0, 0, _, _] | [0x64, 0xff9b, 0, 0, 0, 0, _, _] => {
            Some(low)
        }
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)),
        _ => None,
    }
}

/// Whether a webhook must not connect to `ip`.
///
/// IPv4: loopback, "this network", private, CGNAT, link-local and metadata, IETF protocol assignments,
/// documentation, benchmarking, multicast, reserved, broadcast. IPv6: loopback,
/// unspecified, link-local `fe80::/10`, site-local `fec0::/10`, unique-local `fc00::/7` (with AWS's
/// `fd00:ec2::254` metadata address), multicast, documentation `2001:db8::/32`, discard `100::/64`,
/// local-use NAT64 `64:ff9b:1::/48` and Teredo `2001::/32` (whose IPv4 end point cannot be judged);
/// the forms that embed an IPv4 address are judged by that address.
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return is_forbidden_v4(v4);
            }
            let s = v6.segments();
            (s[0] & 0xffc0) == 0xfe80                       // fe80::/10 link-local
                || (s[0] & 0xffc0) == 0xfec0                // fec0::/10 site-local (deprecated)
                || (s[0] & 0xfe00) == 0xfc00                // fc00::/7 unique local
                || (s[0] & 0xff00) == 0xff00                // ff00::/8 multicast
                || (s[0] == 0x2001 && s[1] == 0x0db8)       // 2001:db8::/32 documentation
                || (s[0] == 0x2001 && s[1] == 0)            // 2001::/32 Teredo
                || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // 100::/64 discard
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // 64:ff9b:1::/48 local NAT64
        }
    }
}

/// `localhost` and every name under it are loopback by definition (RFC 6761), whatever DNS says, and a
/// trailing dot does not change that.
fn is_localhost_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

/// The URL's host as an IP address when it is an IP literal. The WHATWG parser has already turned
/// every IPv4 spelling (`2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1`) into dotted form, so a
/// domain never parses as an address here.
pub(crate) fn host_ip(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host).parse().ok()
}

/// Parses a webhook URL: `http` or `https`, with a host, without user info. A fragment is dropped,
/// as HTTP never sends one.
pub fn parse_webhook_url(raw: &str) -> Result<Url, UrlError> {
    let mut url = Url::parse(raw.trim()).map_err(|e| UrlError::Invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlError::Scheme);
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::Invalid("the URL has no host".to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    url.set_fragment(None);
    Ok(url)
}

fn forbidden(url: &Url) -> UrlError {
    UrlError::ForbiddenAddress { host: url.host_str().unwrap_or_default().to_owned() }
}

/// The creation-time check: refuses a URL whose host is, or resolves to any, forbidden address (a
/// name that does not resolve passes, and is checked at every connection). With `allow_private` every parsed URL passes (nothing is resolved).
pub async fn check_webhook_url(url: &Url, allow_private: bool) -> Result<(), UrlError> {
    if allow_private {
        return Ok(());
    }
    if let Some(ip) = host_ip(url) {
        return if is_forbidden_ip(ip) { Err(forbidden(url)) } else { Ok(()) };
    }
    let host = url.host_str().unwrap_or_default();
    if is_localhost_name(host) {
        return Err(forbidden(url));
    }
    let port = url.port_or_known_default().unwrap_or(0);
    // A name that does not resolve (yet, or not from here) is accepted: the receiver may not be up,
    // and every connection is checked again by the guarded resolver, which drops forbidden answers.
    let Ok(Ok(addrs)) = tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((host, port))).await else {
        return Ok(());
    };
    judge_resolved(url, &addrs.collect::<Vec<_>>())
}

/// A name is refused at creation when any of its addresses is forbidden (a later answer could pick
/// that one).
fn judge_resolved(url: &Url, addrs: &[SocketAddr]) -> Result<(), UrlError> {
    if addrs.iter().any(|a| is_forbidden_ip(a.ip())) {
        return Err(forbidden(url));
    }
    Ok(())
}

/// The addresses a connection may use: at connection time, forbidden ones are dropped whatever the
/// name resolves to now (DNS rebinding).
fn connectable(resolved: Vec<SocketAddr>, allow_private: bool) -> Vec<SocketAddr> {
    if allow_private {
        return resolved;
    }
    resolved
        .into_iter()
        .filter(|a| {
            let ok = !is_forbidden_ip(a.ip());
            if !ok {
                tracing::warn!(address = %a.ip(), "webhook host resolved to a forbidden address; skipped");
            }
            ok
        })
        .collect()
}

/// The DNS resolver of the webhook client: resolves with the system resolver and, unless private
/// addresses are allowed, drops every forbidden address, so the connection can only go to a public
/// one whatever the name resolves to at that moment.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    allow_private: bool,
}

impl GuardedResolver {
    pub fn new(allow_private: bool) -> GuardedResolver {
        GuardedResolver { allow_private }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let refused = || {
                io::Error::other(format!(
                    "refused: webhook host '{host}' resolves only to loopback, private, link-local or \
                     metadata addresses"
                ))
            };
            if !allow_private && is_localhost_name(&host) {
                return Err(refused().into());
            }
            // Port 0: reqwest puts the URL's port (or the scheme's) in its place.
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = connectable(resolved, allow_private);
            if allowed.is_empty() {
                return Err(refused().into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use proptest::prelude::*;

    use super::*;

    fn forbidden(s: &str) -> bool {
        is_forbidden_ip(s.parse().unwrap())
    }

    fn addrs(ips: &[&str]) -> Vec<SocketAddr> {
        ips.iter().map(|ip| SocketAddr::new(ip.parse().unwrap(), 443)).collect()
    }

    /// A name that resolves to loopback (or to a public and a private address) is refused at
    /// creation; at connection time only public addresses are dialled.
    #[test]
    fn names_are_judged_by_every_address_they_resolve_to() {
        let url = parse_webhook_url("https://rebind.example/hook").unwrap();
        assert!(matches!(
            judge_resolved(&url, &addrs(&["127.0.0.1"])),
            Err(UrlError::ForbiddenAddress { .. })
        ));
        assert!(matches!(
            judge_resolved(&url, &addrs(&["93.184.216.34", "::ffff:10.0.0.1"])),
            Err(UrlError::ForbiddenAddress { .. })
        ));
        assert!(judge_resolved(&url, &[]).is_ok());
        assert!(judge_resolved(&url, &addrs(&["93.184.216.34", "2606:4700::1"])).is_ok());
        let mixed = addrs(&["169.254.169.254", "93.184.216.34", "::1"]);
        assert_eq!(connectable(mixed.clone(), false), addrs(&["93.184.216.34"]));
        assert_eq!(connectable(mixed.clone(), true), mixed);
        assert!(connectable(addrs(&["127.0.0.1", "fd00::1"]), false).is_empty());
    }

    #[test]
    fn ipv4_ranges() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.0.1",
            "169.254.169.254",
            "169.254.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(forbidden(ip), "{ip} should be forbidden");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.0.3.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "11.0.0.1",
            "126.255.255.255",
            "128.0.0.1",
        ] {
            assert!(!forbidden(ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn ipv6_ranges() {
        for ip in [
            "::",
            "::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "fc00::1",
            "fd00::1",
            "fd00:ec2::254",
            "ff02::1",
            "2001:db8::1",
            "2001:0:4136:e378::1",
            "100::1",
            "64:ff9b:1::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2002:c0a8:101::",
        ] {
            assert!(forbidden(ip), "{ip} should be forbidden");
        }
        for ip in [
            "2606:4700::1",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:db9::1",
        ] {
            assert!(!forbidden(ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn parse_refuses_what_is_not_a_plain_http_url() {
        assert_eq!(parse_webhook_url("ftp://example.com/"), Err(UrlError::Scheme));
        assert_eq!(parse_webhook_url("file:///etc/passwd"), Err(UrlError::Scheme));
        assert_eq!(parse_webhook_url("https://user@example.com/"), Err(UrlError::Credentials));
        assert_eq!(parse_webhook_url("https://:pw@example.com/"), Err(UrlError::Credentials));
        assert!(matches!(parse_webhook_url("not a url"), Err(UrlError::Invalid(_))));
        assert!(matches!(parse_webhook_url("http://"), Err(UrlError::Invalid(_))));
        let url = parse_webhook_url("https://example.com/hook?x=1#frag").unwrap();
        assert_eq!(url.as_str(), "https://example.com/hook?x=1");
    }

    #[test]
    fn ipv4_spellings_are_normalised_to_dotted_form() {
        for raw in [
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://127.0.0.1./",
        ] {
            let url = parse_webhook_url(raw).unwrap();
            assert_eq!(host_ip(&url), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), "{raw}");
        }
    }

    #[test]
    fn localhost_names() {
        for name in ["localhost", "localhost.", "LOCALHOST", "a.localhost", "a.b.localhost."] {
            assert!(is_localhost_name(name), "{name}");
        }
        for name in ["localhost.example.com", "notlocalhost", "example.com"] {
            assert!(!is_localhost_name(name), "{name}");
        }
    }

    #[tokio::test]
    async fn allow_private_lets_everything_parsed_through() {
        for raw in
            ["http://127.0.0.1/", "http://localhost/", "http://[::1]:8080/", "http://nonexistent.invalid/"]
        {
            let url = parse_webhook_url(raw).unwrap();
            assert_eq!(check_webhook_url(&url, true).await, Ok(()), "{raw}");
        }
    }

    #[tokio::test]
    async fn names_that_do_not_resolve_are_accepted_and_guarded_at_connection() {
        // The seed pages' receivers (`reporting.acme.example`) resolve nowhere; a webhook is still
        // created, and a delivery to it fails like one to a receiver that is down.
        for raw in ["https://does-not-exist.invalid/", "https://reporting.acme.example/scaivault/events"] {
            let url = parse_webhook_url(raw).unwrap();
            assert_eq!(check_webhook_url(&url, false).await, Ok(()), "{raw}");
        }
        // A name is still refused when it is, or resolves to, a forbidden address.
        let url = parse_webhook_url("http://localhost./hook").unwrap();
        assert!(matches!(check_webhook_url(&url, false).await, Err(UrlError::ForbiddenAddress { .. })));
    }

    #[tokio::test]
    async fn the_resolver_refuses_localhost_unless_allowed() {
        let guarded = GuardedResolver::new(false);
        let err = guarded.resolve(Name::from_str("localhost").unwrap()).await.err().unwrap();
        assert!(err.to_string().starts_with("refused:"), "{err}");
        assert!(guarded.resolve(Name::from_str("localhost.").unwrap()).await.is_err());
        // The system resolver may not know `localhost` in every sandbox; when it does, the open
        // resolver hands back its loopback addresses.
        if let Ok(addrs) = GuardedResolver::new(true).resolve(Name::from_str("localhost").unwrap()).await {
            assert!(addrs.into_iter().all(|a| a.ip().is_loopback()));
        }
    }

    #[test]
    fn forbidden_address_message_names_the_flag() {
        let msg = UrlError::ForbiddenAddress { host: "127.0.0.1".into() }.to_string();
        assert_eq!(
            msg,
            "webhook URL host '127.0.0.1' resolves to a loopback, private, link-local or metadata address; \
             start the server with --webhook-allow-private to allow it"
        );
    }

    proptest! {
        #[test]
        fn mapped_addresses_are_judged_like_their_ipv4(a in any::<u8>(), b in any::<u8>(), c in any::<u8>(), d in any::<u8>()) {
            let v4 = Ipv4Addr::new(a, b, c, d);
            prop_assert_eq!(is_forbidden_ip(IpAddr::V4(v4)), is_forbidden_ip(IpAddr::V6(v4.to_ipv6_mapped())));
            prop_assert_eq!(is_forbidden_ip(IpAddr::V4(v4)), is_forbidden_ip(IpAddr::V6(v4.to_ipv6_compatible())));
        }
    }
}
