//! The TLS client certificate coming back: the receipt carried the box's CSR to the
//! provisioning office, the cloud's CA signed it, and the next stick carries the certificate
//! in `[provision] client_certificate` (covered by the stick's signatures like the rest of
//! `provision.toml`). It is installed beside the device key only if its public key is that
//! key's, and `[cloud] client_cert` / `client_key` may then name the device's two files.

use std::path::{Path, PathBuf};

use rcgen::PublicKeyData as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;

use super::device_keys;

/// The installed certificate (chain), beside the device TLS key.
pub(crate) const TLS_CERT: &str = "tls-client.crt";

/// Why a delivered certificate is refused. Says nothing about the certificate's subject.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("[provision] client_certificate holds no PEM certificate")]
    NoCertificate,
    #[error("[provision] client_certificate is not a readable PEM certificate: {0}")]
    Pem(String),
    #[error("[provision] client_certificate is not an X.509 certificate: {0}")]
    Der(String),
    #[error("[provision] client_certificate was issued for another key than this box's TLS client key")]
    OtherKey,
    #[error("the box's TLS client key is unusable: {0}")]
    DeviceKey(String),
    #[error("[cloud] {field} must name the box's own file {expected} when [provision] client_certificate is given")]
    Path { field: &'static str, expected: PathBuf },
}

/// The certificates of `pem`, leaf first; each one parses as X.509.
pub(crate) fn parse(pem: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(CertError::NoCertificate);
    }
    for c in &certs {
        webpki::EndEntityCert::try_from(c).map_err(|e| CertError::Der(e.to_string()))?;
    }
    Ok(certs)
}

/// Checks that the leaf of `pem` certifies the device TLS key in `keys_dir`.
pub(crate) fn check(pem: &str, keys_dir: &Path) -> Result<(), CertError> {
    let certs = parse(pem)?;
    let leaf = webpki::EndEntityCert::try_from(&certs[0]).map_err(|e| CertError::Der(e.to_string()))?;
    let key_path = keys_dir.join(device_keys::TLS_KEY);
    let key_pem =
        std::fs::read_to_string(&key_path).map_err(|e| CertError::DeviceKey(format!("{}: {e}", key_path.display())))?;
    let key = rcgen::KeyPair::from_pem(&key_pem).map_err(|e| CertError::DeviceKey(e.to_string()))?;
    if leaf.subject_public_key_info().as_ref() != key.subject_public_key_info().as_slice() {
        return Err(CertError::OtherKey);
    }
    Ok(())
}

/// With a delivered certificate, `[cloud] client_cert` and `client_key` (when set) must be the
/// device's files: a certificate for the device key paired with another key cannot work.
pub(crate) fn check_paths(
    cloud_cert: Option<&Path>,
    cloud_key: Option<&Path>,
    keys_dir: &Path,
) -> Result<(), CertError> {
    let wanted = [("client_cert", cloud_cert, TLS_CERT), ("client_key", cloud_key, device_keys::TLS_KEY)];
    for (field, named, file) in wanted {
        let expected = keys_dir.join(file);
        if named.is_some_and(|p| p != expected) {
            return Err(CertError::Path { field, expected });
        }
    }
    Ok(())
}

/// Installs `pem` (public: 0644) as the device's certificate, atomically.
pub(crate) fn install(pem: &str, keys_dir: &Path) -> anyhow::Result<()> {
    super::apply::write_atomic(&keys_dir.join(TLS_CERT), pem.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA made here signs a certificate for `key`.
    fn certificate_for(key: &rcgen::KeyPair) -> String {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::Issuer::new(ca, ca_key);
        rcgen::CertificateParams::new(Vec::<String>::new()).unwrap().signed_by(key, &issuer).unwrap().pem()
    }

    #[test]
    fn only_a_certificate_for_the_device_key_passes() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = tmp.path().join("keys");
        device_keys::ensure(&keys, "SN1").unwrap();
        let device =
            rcgen::KeyPair::from_pem(&std::fs::read_to_string(keys.join(device_keys::TLS_KEY)).unwrap()).unwrap();
        check(&certificate_for(&device), &keys).unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        assert!(matches!(check(&certificate_for(&other), &keys), Err(CertError::OtherKey)));
        assert!(matches!(check("no pem here", &keys), Err(CertError::NoCertificate)));
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(check(garbage, &keys), Err(CertError::Der(_))), "{:?}", check(garbage, &keys));
    }

    #[test]
    fn the_cloud_must_name_the_device_files() {
        let keys = Path::new("/state/keys");
        let (cert, key) = (keys.join(TLS_CERT), keys.join(device_keys::TLS_KEY));
        check_paths(Some(&cert), Some(&key), keys).unwrap();
        check_paths(None, None, keys).unwrap();
        let e = check_paths(Some(Path::new("/etc/other.crt")), Some(&key), keys).unwrap_err();
        assert!(matches!(e, CertError::Path { field: "client_cert", .. }), "{e}");
    }
}
