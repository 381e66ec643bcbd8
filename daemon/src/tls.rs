//! The TLS client setup shared by every outgoing `https://` and `wss://`
//! connection (the idle webhook, health probes, `workspaced forward`):
//! rustls with `ring`, so the binary needs no OpenSSL and links statically.

use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// A client configuration trusting the system's roots (or those of
/// `SSL_CERT_FILE`/`SSL_CERT_DIR` when set) plus the PEM certificates of
/// `extra_pem`. A system store that cannot be read is not an error as long
/// as some root is trusted: a private CA given by the caller is enough.
pub fn client_config(extra_pem: Option<&[u8]>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!(error = %e, "a system certificate could not be read");
    }
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    let mut extra = 0;
    if let Some(pem) = extra_pem {
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.context("read a PEM certificate")?;
            roots
                .add(cert)
                .context("add a certificate to the trusted roots")?;
            extra += 1;
        }
        anyhow::ensure!(extra > 0, "the CA file holds no PEM certificate");
    }
    anyhow::ensure!(
        added + extra > 0,
        "no trusted root certificate: the system store is empty or unreadable (set SSL_CERT_FILE)"
    );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("set up TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let e = client_config(Some(b"not a certificate\n")).unwrap_err();
        assert!(format!("{e:#}").contains("no PEM certificate"), "{e:#}");
    }
}
