//! TLS for MLLP listeners (rustls with the ring provider): server certificate, and client
//! certificate verification against a CA file when mutual TLS is configured.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::Tls;

/// A variant with a cause leaves it to the error chain (`cli::error_chain`, `{:#}`), which prints it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    #[error("TLS file {path}: {message}")]
    File { path: String, message: String },
    #[error("TLS configuration")]
    Rustls(#[from] rustls::Error),
}

fn file_error(path: &Path, message: impl ToString) -> TlsError {
    TlsError::File { path: path.display().to_string(), message: message.to_string() }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate found"));
    }
    Ok(certs)
}

/// Builds the acceptor for a listener's `[listener.tls]` section.
pub(crate) fn acceptor(tls: &Tls) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certs(tls.cert.get_ref())?;
    let key = PrivateKeyDer::from_pem_file(tls.key.get_ref()).map_err(|e| file_error(tls.key.get_ref(), e))?;
    let builder = ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let config = match &tls.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certs(ca.get_ref())? {
                roots.add(cert).map_err(|e| file_error(ca.get_ref(), e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| file_error(ca.get_ref(), e))?;
            builder.with_client_cert_verifier(verifier).with_single_cert(chain, key)?
        }
        None => builder.with_no_client_auth().with_single_cert(chain, key)?,
    };
    Ok(TlsAcceptor::from(Arc::new(config)))
}
