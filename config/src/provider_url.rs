//! Provider base URLs: parsed once, shared by validation (loop refusal) and the fallback client.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// A provider's base URL split into what a connection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderUrl {
    /// `https` (rustls) or `http`.
    pub tls: bool,
    /// Host name or IP (brackets removed), also the TLS server name and the `Host` header.
    pub host: String,
    /// Port (443 / 80 when not written).
    pub port: u16,
    /// Path prefix without a trailing `/`, e.g. `/v1` or `` (empty).
    pub base_path: String,
}

impl ProviderUrl {
    /// Parses `http(s)://host[:port][/path]`; `None` for anything else (queries, fragments,
    /// user info and other schemes are refused).
    pub fn parse(url: &str) -> Option<ProviderUrl> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            (false, url.strip_prefix("http://")?)
        };
        if rest.contains(['?', '#', '@', ' ']) {
            return None;
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().ok()?,
                None if after.is_empty() => default_port,
                None => return None,
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().ok()?),
                None => (authority, default_port),
            }
        };
        if host.is_empty() || port == 0 {
            return None;
        }
        Some(ProviderUrl {
            tls,
            host: host.to_string(),
            port,
            base_path: path.trim_end_matches('/').to_string(),
        })
    }

    /// `host:port` as written in a `Host` header (IPv6 in brackets, default ports omitted).
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The addresses the host resolves to now (empty if it does not resolve). A trailing dot
    /// (`localhost.`, the fully-qualified spelling) resolves like the name without it.
    pub fn resolve(&self) -> Vec<SocketAddr> {
        let host = self.host.strip_suffix('.').unwrap_or(&self.host);
        let mut found: Vec<SocketAddr> = (host, self.port)
            .to_socket_addrs()
            .map(|a| a.collect())
            .unwrap_or_default();
        if found.is_empty() && host != self.host {
            found = (self.host.as_str(), self.port)
                .to_socket_addrs()
                .map(|a| a.collect())
                .unwrap_or_default();
        }
        found
    }

    /// The first address this URL resolves to that is one of `listeners` (a loop), if any.
    pub fn own_listener(&self, listeners: &[SocketAddr]) -> Option<SocketAddr> {
        self.resolve()
            .into_iter()
            .find(|a| listeners.iter().any(|l| reaches_listener(*a, *l)))
    }
}

/// Whether a connection to `target` would reach a listener bound at `listener`: the same
/// address, or the same port on a wildcard listener when `target` is an address of this host.
pub fn reaches_listener(target: SocketAddr, listener: SocketAddr) -> bool {
    if target.port() != listener.port() {
        return false;
    }
    // `::ffff:127.0.0.1` is 127.0.0.1; connecting to 0.0.0.0 or `::` reaches this host.
    let (to, at) = (target.ip().to_canonical(), listener.ip().to_canonical());
    if to == at {
        return true;
    }
    (at.is_unspecified() && is_local(to)) || (to.is_unspecified() && is_local(at))
}

fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback()
        || ip.is_unspecified()
        || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_base_urls() {
        let u = ProviderUrl::parse("https://api.openai.com/v1/").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.base_path.as_str()),
            (true, "api.openai.com", 443, "/v1")
        );
        assert_eq!(u.authority(), "api.openai.com");
        let u = ProviderUrl::parse("http://127.0.0.1:8090").unwrap();
        assert_eq!((u.tls, u.port, u.base_path.as_str()), (false, 8090, ""));
        assert_eq!(u.authority(), "127.0.0.1:8090");
        let u = ProviderUrl::parse("https://[::1]:8443/v1").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 8443));
        assert_eq!(u.authority(), "[::1]:8443");
        for bad in [
            "ftp://x",
            "https://",
            "https://h:0",
            "https://h:x",
            "https://u@h",
            "https://h/v1?x=1",
            "api.openai.com",
        ] {
            assert_eq!(ProviderUrl::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn loops_are_recognised() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(reaches_listener(a("127.0.0.1:8080"), a("127.0.0.1:8080")));
        assert!(reaches_listener(a("127.0.0.1:8080"), a("0.0.0.0:8080")));
        assert!(!reaches_listener(a("127.0.0.1:8081"), a("0.0.0.0:8080")));
        assert!(!reaches_listener(a("127.0.0.2:8080"), a("127.0.0.1:8080")));
        assert!(!reaches_listener(a("203.0.113.9:8080"), a("0.0.0.0:8080")));
        assert!(reaches_listener(
            a("[::ffff:127.0.0.1]:8080"),
            a("127.0.0.1:8080")
        ));
        assert!(reaches_listener(a("0.0.0.0:8080"), a("127.0.0.1:8080")));
        assert!(reaches_listener(a("[::]:8080"), a("127.0.0.1:8080")));
    }

    #[test]
    fn other_spellings_of_this_host_are_recognised() {
        let own = ["127.0.0.1:8080".parse::<SocketAddr>().unwrap()];
        for url in [
            "http://127.0.0.1:8080",
            "http://localhost.:8080",
            "http://[::ffff:127.0.0.1]:8080",
            "http://0.0.0.0:8080",
            "http://127.1:8080",
        ] {
            let u = ProviderUrl::parse(url).unwrap();
            assert!(u.own_listener(&own).is_some(), "{url}");
        }
        let other = ProviderUrl::parse("http://127.0.0.1:8081").unwrap();
        assert!(other.own_listener(&own).is_none());
    }
}
