//! HTTPS (`[http.tls]`): the certificate, made or loaded, and the rustls acceptor that
//! [`crate::server`] puts in front of the same HTTP service as plain HTTP.
//!
//! A self-signed certificate is made once and kept in the state directory (systemd's
//! `StateDirectory=`, `/var/lib/roverd`), so a phone that has accepted it is not asked
//! again after every restart. Its names are the ones the Host check accepts: `localhost`,
//! the hostname and its `.local` name, and the loopback addresses.

use crate::config::{TlsConfig, TlsIdentity};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// File names in the state directory.
const CERT_FILE: &str = "tls-cert.pem";
const KEY_FILE: &str = "tls-key.pem";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate {}: {source} (check http.tls.cert)", path.display())]
    Cert {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("the TLS certificate file {} holds no certificate (check http.tls.cert: a PEM file with -----BEGIN CERTIFICATE-----)", .0.display())]
    NoCert(PathBuf),
    #[error("cannot read the TLS private key {}: {source} (check http.tls.key: a PEM private key, readable by roverd)", path.display())]
    Key {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("the TLS certificate and key do not go together, or are not supported: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot keep the self-signed certificate in {}: {source} (roverd needs a writable state directory: systemd's StateDirectory=, or $XDG_STATE_HOME)", dir.display())]
    StateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("no state directory (for the self-signed certificate and the e-stop latch): neither $STATE_DIRECTORY, $XDG_STATE_HOME nor $HOME is set")]
    NoStateDir,
}

/// The directory for state kept across restarts: systemd's `$STATE_DIRECTORY` (the first
/// one, when several are listed), else `$XDG_STATE_HOME/roverd`, else `~/.local/state/roverd`.
pub fn state_dir() -> Result<PathBuf, TlsError> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dirs) = var("STATE_DIRECTORY") {
        let first = dirs.to_string_lossy().split(':').next().map(PathBuf::from);
        if let Some(dir) = first {
            return Ok(dir);
        }
    }
    if let Some(state) = var("XDG_STATE_HOME") {
        return Ok(PathBuf::from(state).join("roverd"));
    }
    var("HOME")
        .map(|home| PathBuf::from(home).join(".local/state/roverd"))
        .ok_or(TlsError::NoStateDir)
}

/// The acceptor for `config`. For `self_signed`, the certificate in `state_dir` is used,
/// or made there first.
pub fn acceptor(config: &TlsConfig, state_dir: &Path) -> Result<TlsAcceptor, TlsError> {
    let (cert, key) = match &config.identity {
        TlsIdentity::Files { cert, key } => (cert.clone(), key.clone()),
        TlsIdentity::SelfSigned => self_signed(state_dir)?,
    };
    let certs = CertificateDer::pem_file_iter(&cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Cert {
            path: cert.clone(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(cert));
    }
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|source| TlsError::Key {
        path: key.clone(),
        source,
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// The paths of the self-signed certificate and key in `dir`, made when missing.
fn self_signed(dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(KEY_FILE);
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let io = |source| TlsError::StateDir {
        dir: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let made = rcgen::generate_simple_self_signed(certificate_names(hostname().as_deref()))?;
    write_private(&key_path, made.signing_key.serialize_pem().as_bytes()).map_err(io)?;
    std::fs::write(&cert_path, made.cert.pem()).map_err(io)?;
    log::info!(
        "made a self-signed TLS certificate in {} (browsers will ask once to accept it)",
        cert_path.display()
    );
    Ok((cert_path, key_path))
}

/// The names a self-signed certificate is made for.
pub fn certificate_names(hostname: Option<&str>) -> Vec<String> {
    let mut names = vec!["localhost".to_owned()];
    if let Some(host) = hostname {
        names.push(host.to_owned());
        names.push(format!("{host}.local"));
    }
    names.push("127.0.0.1".to_owned());
    names.push("::1".to_owned());
    names
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// Writes a file only its owner can read, from its creation on.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("roverd-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn self_signed_config() -> TlsConfig {
        TlsConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            identity: TlsIdentity::SelfSigned,
        }
    }

    #[test]
    fn a_self_signed_certificate_is_made_once_and_kept() {
        let dir = temp_dir("keep");
        acceptor(&self_signed_config(), &dir).unwrap();
        let cert = std::fs::read(dir.join(CERT_FILE)).unwrap();
        let key_mode = std::fs::metadata(dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600, "the key must be private");
        acceptor(&self_signed_config(), &dir).unwrap();
        assert_eq!(std::fs::read(dir.join(CERT_FILE)).unwrap(), cert);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn certificate_names_follow_the_host_check() {
        assert_eq!(
            certificate_names(Some("rover")),
            ["localhost", "rover", "rover.local", "127.0.0.1", "::1"]
        );
        assert_eq!(certificate_names(None), ["localhost", "127.0.0.1", "::1"]);
    }

    #[test]
    fn missing_or_wrong_files_say_which_and_what_to_check() {
        let dir = temp_dir("files");
        std::fs::create_dir_all(&dir).unwrap();
        let files = |cert: &str, key: &str| TlsConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            identity: TlsIdentity::Files {
                cert: dir.join(cert),
                key: dir.join(key),
            },
        };
        let missing = acceptor(&files("nope.pem", "nope.key"), &dir)
            .err()
            .unwrap()
            .to_string();
        assert!(
            missing.contains("nope.pem") && missing.contains("http.tls.cert"),
            "{missing}"
        );
        std::fs::write(dir.join("empty.pem"), "not a pem file\n").unwrap();
        let empty = acceptor(&files("empty.pem", "nope.key"), &dir)
            .err()
            .unwrap()
            .to_string();
        assert!(empty.contains("holds no certificate"), "{empty}");
        // A real certificate with a key that is not its own.
        acceptor(&self_signed_config(), &dir).unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(dir.join("other.key"), other.serialize_pem()).unwrap();
        let mismatch = acceptor(&files(CERT_FILE, "other.key"), &dir)
            .err()
            .unwrap()
            .to_string();
        assert!(mismatch.contains("do not go together"), "{mismatch}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn an_unwritable_state_directory_is_named() {
        let err = acceptor(
            &self_signed_config(),
            Path::new("/proc/roverd-cannot-be-here"),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("/proc/roverd-cannot-be-here"), "{err}");
    }
}
