//! TLS for connections (`tls` feature): rustls with the webpki roots plus
//! any CA the builder was given.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::ConfigError;

/// A connector trusting the public web roots and `extra_ca_pem`.
pub(crate) fn connector(extra_ca_pem: &[Vec<u8>]) -> Result<MakeRustlsConnect, ConfigError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for pem in extra_ca_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| ConfigError::InvalidCaCert(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| ConfigError::InvalidCaCert(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(ConfigError::InvalidCaCert(
                "no certificate found in the PEM data".into(),
            ));
        }
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::InvalidCaCert(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Whether `e` is a failure to verify the server's certificate (a
/// configuration problem, not a transient one).
pub(crate) fn is_certificate_error(e: &tokio_postgres::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = cur {
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|i| i as &(dyn std::error::Error + 'static));
        for candidate in [Some(err), inner].into_iter().flatten() {
            if let Some(r) = candidate.downcast_ref::<rustls::Error>() {
                return matches!(
                    r,
                    rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
                );
            }
        }
        cur = err.source();
    }
    false
}
