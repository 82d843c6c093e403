//! TLS for `https://` and `mqtts://`: the built-in public roots (the same webpki roots reqwest
//! trusts), or, with `--ca-file`, only the CAs in that file.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::error::{Error, Result};

/// The certificates of a PEM file; an error naming `--ca-file` when it holds none.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::config(format!("--ca-file {}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| Error::config(format!("--ca-file {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::config(format!("--ca-file {}: holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

/// The rustls client configuration for `mqtts://`.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in read_ca_file(path)? {
                roots.add(cert).map_err(|e| Error::config(format!("--ca-file {}: {e}", path.display())))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_an_error_naming_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = client_config(Some(&empty)).unwrap_err().to_string();
        assert!(error.contains("--ca-file") && error.contains("no PEM certificate"), "{error}");
        let missing = client_config(Some(&dir.path().join("missing.pem"))).unwrap_err().to_string();
        assert!(missing.contains("--ca-file"), "{missing}");
    }

    #[test]
    fn without_a_ca_file_the_public_roots_are_trusted() {
        assert!(client_config(None).is_ok());
    }
}
