//! TLS for PostgreSQL connections with rustls (no system OpenSSL, so wheels are self-contained).
//!
//! libpq semantics: `prefer`/`require` encrypt without checking the certificate; `verify-ca`
//! checks the chain; `verify-full` checks the chain and the host name. Roots come from
//! `sslrootcert` (PEM) when given, otherwise from the Mozilla roots in `webpki-roots`.
//!
//! A client certificate (`sslcert` / `sslkey`, see `config.rs`) is read here, when the pool is
//! built, so a missing or broken file is a configuration error before anything connects.
//! Messages about the key name its file, never its contents.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::KeyProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error as TlsError, RootCertStore,
    SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{ClientCert, StoreConfig, TlsVerify};
use crate::error::{Result, StoreError};

/// Builds the TLS connector for a configuration. It is used only when the server is asked for
/// TLS (sslmode other than `disable`).
pub fn make_connector(config: &StoreConfig) -> Result<MakeRustlsConnect> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key_provider = provider.key_provider;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::config(format!("TLS setup failed: {e}")))?;
    let builder = match config.tls_verify {
        TlsVerify::None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { provider })),
        TlsVerify::Ca | TlsVerify::Full => {
            let roots = Arc::new(load_roots(config.ssl_root_cert.as_deref())?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| StoreError::config(format!("TLS setup failed: {e}")))?;
            let verifier: Arc<dyn ServerCertVerifier> = if config.tls_verify == TlsVerify::Ca {
                Arc::new(ChainOnly { inner: webpki })
            } else {
                webpki
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
        }
    };
    let client_config = match &config.client_cert {
        None => builder.with_no_client_auth(),
        Some(client) => {
            let (chain, key) = load_client_cert(client, key_provider)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| client_cert_problem(client, e))?
        }
    };
    Ok(MakeRustlsConnect::new(client_config))
}

/// Reads `sslcert` (the client's certificate first, then any intermediates) and `sslkey`.
/// The key is also loaded once on its own, so a key that is PEM but not a key the crypto
/// provider can use (RSA, ECDSA P-256/P-384, Ed25519) is reported as such.
fn load_client_cert(
    client: &ClientCert,
    key_provider: &dyn KeyProvider,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let cert_path = client.cert.as_path();
    let chain = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| {
            StoreError::config(format!(
                "cannot read the client certificate sslcert {}: {}",
                cert_path.display(),
                pem_problem(&e)
            ))
        })?;
    if chain.is_empty() {
        return Err(StoreError::config(format!(
            "sslcert {} holds no PEM certificate (a BEGIN CERTIFICATE block)",
            cert_path.display()
        )));
    }
    let key_path = client.key.as_path();
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
        let problem = match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "it holds no unencrypted PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC \
                 PRIVATE KEY; encrypted keys are not supported)"
                    .to_string()
            }
            other => pem_problem(&other),
        };
        StoreError::config(format!(
            "cannot read the client key sslkey {}: {problem}",
            key_path.display()
        ))
    })?;
    if key_provider.load_private_key(key.clone_key()).is_err() {
        return Err(StoreError::config(format!(
            "the client key sslkey {} is not a usable private key (RSA, ECDSA P-256/P-384 or \
             Ed25519 expected)",
            key_path.display()
        )));
    }
    Ok((chain, key))
}

/// rustls refused the certificate and key together: which, in words naming the files only.
fn client_cert_problem(client: &ClientCert, error: TlsError) -> StoreError {
    let (cert, key) = (client.cert.display(), client.key.display());
    StoreError::config(match error {
        TlsError::InconsistentKeys(_) => format!(
            "the client key sslkey {key} does not belong to the certificate sslcert {cert} \
             (its public key differs)"
        ),
        TlsError::InvalidCertificate(e) => {
            format!("the client certificate sslcert {cert} cannot be parsed ({e:?})")
        }
        other => format!("cannot use sslcert {cert} with sslkey {key}: {other}"),
    })
}

/// A PEM reading error in words that never quote the file: some variants carry a line of it,
/// which for a key file would be key material.
fn pem_problem(error: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as Pem;
    match error {
        Pem::Io(e) => e.to_string(),
        Pem::NoItemsFound => "no PEM item of the expected kind".to_string(),
        Pem::SectionTooLarge => "a PEM section is too large".to_string(),
        Pem::MissingSectionEnd { .. } | Pem::IllegalSectionStart { .. } => {
            "it is not well-formed PEM".to_string()
        }
        Pem::Base64Decode(_) => "a PEM section is not valid base64".to_string(),
        _ => "it is not readable PEM".to_string(),
    }
}

fn load_roots(path: Option<&Path>) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match path {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
                StoreError::config(format!("cannot read sslrootcert {}: {e}", path.display()))
            })?;
            for cert in certs {
                let cert = cert.map_err(|e| {
                    StoreError::config(format!("invalid certificate in {}: {e}", path.display()))
                })?;
                roots.add(cert).map_err(|e| {
                    StoreError::config(format!("unusable certificate in {}: {e}", path.display()))
                })?;
            }
            if roots.is_empty() {
                return Err(StoreError::config(format!(
                    "sslrootcert {} holds no certificate",
                    path.display()
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(roots)
}

/// `prefer`/`require`: the channel is encrypted but the peer is not authenticated (as libpq).
/// Handshake signatures are still checked so the session keys are sound.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `verify-ca`: a full chain check that accepts any host name.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, TlsError> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(TlsError::InvalidCertificate(CertificateError::NotValidForName))
            | Err(TlsError::InvalidCertificate(CertificateError::NotValidForNameContext {
                ..
            })) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
