//! Who may do what, and from which page: the token → [`Access`] mapping, compared in
//! constant time whatever the guess (SHA-256 digests of equal length, so not even the
//! token's length leaks), and the `Host`/`Origin` policy against DNS rebinding and cross-site
//! requests. Pure: the machine's hostname is handed in.

use crate::config::HttpConfig;
use crate::session::Access;
use hyper::header::{self, HeaderValue};
use hyper::Request;
use std::net::IpAddr;
use subtle::ConstantTimeEq;

/// A SHA-256 digest: what tokens are compared as.
type Digest = [u8; 32];

fn sha256(bytes: &[u8]) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

/// The checks every request passes before it reaches a route.
#[derive(Debug, Clone)]
pub struct RequestPolicy {
    /// SHA-256 of `http.token`.
    token: Option<Digest>,
    /// SHA-256 of `http.viewer_token`.
    viewer_token: Option<Digest>,
    /// The machine's own names, for the Host check: its hostname and hostname.local.
    own_names: Vec<String>,
    /// `http.allowed_hosts`.
    allowed_hosts: Vec<String>,
}

impl RequestPolicy {
    /// The policy of `http`, on a machine called `hostname` (when it has a name).
    pub fn new(http: &HttpConfig, hostname: Option<String>) -> Self {
        let own_names = hostname
            .map(|h| vec![format!("{h}.local"), h])
            .unwrap_or_default();
        Self {
            token: http.token.as_deref().map(|t| sha256(t.as_bytes())),
            viewer_token: http.viewer_token.as_deref().map(|t| sha256(t.as_bytes())),
            own_names,
            allowed_hosts: http.allowed_hosts.clone(),
        }
    }

    /// What the `Authorization` header allows: `None` when a token is configured and the
    /// header holds neither it nor the viewer token. The guess is hashed and its digest
    /// compared with each token's in constant time, and with both always, so the timing
    /// tells nothing about how much of a token, or of its length, was guessed right.
    pub fn access(&self, header: Option<&HeaderValue>) -> Option<Access> {
        let Some(full) = &self.token else {
            return Some(Access::Full);
        };
        let given = header
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or("")
            .as_bytes();
        let given = sha256(given);
        let is_full: bool = given.ct_eq(full).into();
        let is_viewer: bool = match &self.viewer_token {
            Some(viewer) => given.ct_eq(viewer).into(),
            None => false,
        };
        match (is_full, is_viewer) {
            (true, _) => Some(Access::Full),
            (false, true) => Some(Access::Viewer),
            (false, false) => None,
        }
    }

    /// Whether `name` (a Host header without its port) is one of the robot's names.
    pub fn host_allowed(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.');
        name.parse::<IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || self.own_names.iter().any(|n| n.eq_ignore_ascii_case(name))
            || self
                .allowed_hosts
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name))
    }

    /// DNS rebinding and cross-site requests: the `Host` must be one of the robot's own
    /// names, and an `Origin`, when sent, must be the same host. The error is the reason
    /// for the 403.
    pub fn check_host_and_origin<B>(&self, req: &Request<B>) -> Result<(), String> {
        let host = match req.headers().get(header::HOST) {
            None => req.uri().authority().map(|a| a.as_str().to_owned()),
            Some(h) => Some(
                h.to_str()
                    .map_err(|_| "the Host header is not readable text".to_owned())?
                    .to_owned(),
            ),
        };
        if let Some(host) = &host {
            let name = host_name(host);
            if !self.host_allowed(name) {
                return Err(format!(
                    "Host {name:?} is not one of this robot's names; add it to http.allowed_hosts \
                     if you reach the robot by that name"
                ));
            }
        }
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            let origin_host = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            let same = match (origin_host, &host) {
                (Some(o), Some(h)) => o.eq_ignore_ascii_case(h),
                _ => false,
            };
            if !same {
                return Err(format!(
                    "requests from another site (Origin {origin:?}) are not accepted; open the \
                     robot's own page instead"
                ));
            }
        }
        Ok(())
    }
}

/// The name part of a Host header: `[::1]:8080` → `::1`, `robot.local:8080` → `robot.local`.
pub fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// This machine's hostname, for [`RequestPolicy::new`].
pub fn machine_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(token: Option<&str>, viewer: Option<&str>) -> RequestPolicy {
        let http = HttpConfig {
            token: token.map(str::to_owned),
            viewer_token: viewer.map(str::to_owned),
            allowed_hosts: vec!["rover.example.com".to_owned()],
            ..HttpConfig::default()
        };
        RequestPolicy::new(&http, Some("robot".to_owned()))
    }

    fn bearer(token: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap()
    }

    #[test]
    fn host_names_lose_their_port_and_brackets() {
        assert_eq!(host_name("robot.local:8080"), "robot.local");
        assert_eq!(host_name("robot"), "robot");
        assert_eq!(host_name("127.0.0.1:8080"), "127.0.0.1");
        assert_eq!(host_name("[::1]:8080"), "::1");
        assert_eq!(host_name("[fe80::1]"), "fe80::1");
    }

    #[test]
    fn tokens_give_full_or_viewer_access() {
        let open = policy(None, None);
        assert_eq!(open.access(None), Some(Access::Full));
        let p = policy(Some("drive-token"), Some("watch-token"));
        assert_eq!(p.access(Some(&bearer("drive-token"))), Some(Access::Full));
        assert_eq!(p.access(Some(&bearer("watch-token"))), Some(Access::Viewer));
        assert_eq!(p.access(Some(&bearer("drive-toke"))), None);
        assert_eq!(p.access(Some(&bearer("drive-token-and-more"))), None);
        assert_eq!(p.access(Some(&bearer(""))), None);
        assert_eq!(p.access(None), None);
    }

    #[test]
    fn tokens_are_kept_and_compared_as_digests_of_one_length() {
        let p = policy(Some("drive-token"), Some("a-much-longer-watch-token"));
        // Nothing of the token itself is kept: a guess of any length is hashed to 32 bytes
        // and compared with the same number of bytes.
        assert_eq!(p.token, Some(sha256(b"drive-token")));
        assert_eq!(p.viewer_token, Some(sha256(b"a-much-longer-watch-token")));
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hosts_are_ip_literals_localhost_own_and_allowed_names() {
        let p = policy(None, None);
        for name in [
            "127.0.0.1",
            "::1",
            "localhost",
            "robot",
            "ROBOT.local",
            "rover.example.com.",
        ] {
            assert!(p.host_allowed(name), "{name}");
        }
        assert!(!p.host_allowed("evil.example"));
    }

    #[test]
    fn a_foreign_origin_is_refused() {
        let p = policy(None, None);
        let req = |origin: &str| {
            Request::builder()
                .header(header::HOST, "robot.local:8080")
                .header(header::ORIGIN, origin)
                .body(())
                .unwrap()
        };
        assert_eq!(
            p.check_host_and_origin(&req("http://robot.local:8080")),
            Ok(())
        );
        assert!(p
            .check_host_and_origin(&req("http://evil.example"))
            .is_err());
    }
}
