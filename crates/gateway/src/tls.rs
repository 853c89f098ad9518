//! TLS: the HTTPS (+ HTTP/2) listener, client certificates, and TLS to `https://` upstreams.
//!
//! pingora's rustls path panics on unreadable or mismatched certificate files, so every file is
//! loaded and checked here first (PEM, key matches the certificate, expiry) and pingora only ever
//! sees a ready [`CertifiedKey`] through a certificate resolver. The resolver and the client
//! certificate verifier read their material from an `ArcSwap`, which a watcher thread replaces
//! when the files (or the config's `listen.tls`) change: new handshakes get the new certificate,
//! established connections are not touched.
//!
//! A verified client certificate's subject CNs, DNS/URI/email SANs and whether it carries the
//! clientAuth extended key usage are parsed once per handshake and attached to the connection's
//! `SslDigest` ([`PeerCertificate`]); [`client_certificate_identity`] maps them to the one user
//! whose `users[].certificate` (field and value) they match — never by user name alone.

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::{CaType, TlsRef};
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{CertKey, WrappedX509};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use whizard_core::auth::{AuthMethod, Identity};
use whizard_core::config::{
    CertificateField, ClientAuth, Config, ListenTls, OidcTls, TlsVersion, UpstreamTls, User,
};
use whizard_core::sync::lock;

/// How often the listener's certificate files are checked for changes.
const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The crypto provider of every TLS context the gateway builds (pingora uses ring too).
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: LazyLock<Arc<CryptoProvider>> =
        LazyLock::new(|| Arc::new(rustls::crypto::ring::default_provider()));
    PROVIDER.clone()
}

/// Installs ring as the process-wide crypto provider: rustls's (reqwest, pingora and kube look
/// it up; reqwest is built without a provider of its own) and jsonwebtoken's
/// ([`whizard_core::auth::jwt_crypto`]). Idempotent.
pub fn install_crypto_provider() {
    let _ = CryptoProvider::install_default(rustls::crypto::ring::default_provider());
    whizard_core::auth::jwt_crypto::install();
}

// ---------------------------------------------------------------------------------------------
// Loading and checking files
// ---------------------------------------------------------------------------------------------

fn read(key: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))
}

/// Every certificate of a PEM file, each checked to be a parseable X.509 certificate.
pub fn load_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read(key, path)?;
    parse_certs(key, path, &bytes)
}

fn parse_certs(
    key: &str,
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(bytes) {
        let cert = item.map_err(|e| {
            format!(
                "{key}: {} is not a valid PEM certificate file: {e}",
                path.display()
            )
        })?;
        if let Err(e) = x509_parser::parse_x509_certificate(cert.as_ref()) {
            return Err(format!(
                "{key}: {}: certificate {} cannot be parsed: {e}",
                path.display(),
                certs.len() + 1
            ));
        }
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(format!(
            "{key}: {} contains no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, SEC1 or PKCS#1).
pub fn load_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read(key, path)?;
    parse_key(key, path, &bytes)
}

fn parse_key(key: &str, path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => format!(
            "{key}: {} contains no PEM private key (-----BEGIN PRIVATE KEY-----)",
            path.display()
        ),
        e => format!(
            "{key}: {} is not a valid PEM private key: {e}",
            path.display()
        ),
    })
}

/// Refuses a certificate outside its validity period (unless `allow_expired`).
fn check_validity(key: &str, path: &Path, der: &[u8], allow_expired: bool) -> Result<(), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| {
        format!(
            "{key}: {}: cannot parse the certificate: {e}",
            path.display()
        )
    })?;
    let v = cert.validity();
    let now = x509_parser::time::ASN1Time::now();
    if now > v.not_after {
        if allow_expired {
            tracing::warn!(file = %path.display(), not_after = %v.not_after, "serving an expired certificate (allow_expired)");
            return Ok(());
        }
        return Err(format!(
            "{key}: the certificate in {} expired at {}{}",
            path.display(),
            v.not_after,
            if key.starts_with("listen.") {
                " (set listen.tls.allow_expired: true to serve it anyway)"
            } else {
                ""
            }
        ));
    }
    if now < v.not_before {
        tracing::warn!(file = %path.display(), not_before = %v.not_before, "certificate is not valid yet");
    }
    Ok(())
}

/// A certificate chain and its key, checked to belong together and to be in date.
fn load_pair(
    prefix: &str,
    cert_path: &Path,
    key_path: &Path,
    allow_expired: bool,
) -> Result<
    (
        Vec<CertificateDer<'static>>,
        PrivateKeyDer<'static>,
        Arc<CertifiedKey>,
    ),
    String,
> {
    let cert_key = format!("{prefix}.cert_file");
    let key_key = format!("{prefix}.key_file");
    let certs = load_certs(&cert_key, cert_path)?;
    let key = load_key(&key_key, key_path)?;
    check_validity(&cert_key, cert_path, certs[0].as_ref(), allow_expired)?;
    let signing = provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| {
            format!(
                "{key_key}: {}: unsupported private key: {e}",
                key_path.display()
            )
        })?;
    let certified = CertifiedKey::new(certs.clone(), signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(format!(
                "{key_key}: the key in {} does not match the certificate in {}",
                key_path.display(),
                cert_path.display()
            ))
        }
        Err(e) => {
            return Err(format!(
                "{cert_key}: {}: cannot use the certificate: {e}",
                cert_path.display()
            ))
        }
    }
    Ok((certs, key, Arc::new(certified)))
}

/// A root store from a PEM CA bundle.
fn load_roots(key: &str, path: &Path) -> Result<RootCertStore, String> {
    let certs = load_certs(key, path)?;
    let mut roots = RootCertStore::empty();
    for (i, c) in certs.into_iter().enumerate() {
        roots.add(c).map_err(|e| {
            format!(
                "{key}: {}: certificate {} is not a usable CA: {e}",
                path.display(),
                i + 1
            )
        })?;
    }
    Ok(roots)
}

/// Checks every TLS file of `config` the way the gateway will load it, reporting all problems
/// (for `check-config` and start-up).
pub fn check_files(config: &Config) -> Result<(), String> {
    let mut errors = Vec::new();
    if let Some(t) = &config.listen.tls {
        if let Err(e) = ListenMaterial::load(t) {
            errors.push(e);
        }
    }
    if let Some(t) = &config.upstreams.tls {
        if let Err(e) = PeerTls::load(t) {
            errors.push(e);
        }
    }
    for (i, o) in config.oidc.iter().enumerate() {
        if let Err(e) = oidc_client_config(&format!("oidc[{i}].tls"), &o.tls) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

// ---------------------------------------------------------------------------------------------
// The HTTPS listener
// ---------------------------------------------------------------------------------------------

/// Everything the listener serves with, from one consistent read of the files.
struct ListenMaterial {
    certified: Arc<CertifiedKey>,
    client_roots: Option<Arc<RootCertStore>>,
}

impl ListenMaterial {
    fn load(t: &ListenTls) -> Result<ListenMaterial, String> {
        let (_, _, certified) =
            load_pair("listen.tls", &t.cert_file, &t.key_file, t.allow_expired)?;
        let client_roots = match &t.client_ca_file {
            Some(p) => Some(Arc::new(load_roots("listen.tls.client_ca_file", p)?)),
            None => None,
        };
        Ok(ListenMaterial {
            certified,
            client_roots,
        })
    }
}

/// Serves the current certificate; refuses TLS 1.2-only clients when `min_version` is 1.3.
#[derive(Debug)]
struct Resolver {
    current: ArcSwap<CertifiedKey>,
    tls13_only: AtomicBool,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // pingora's rustls config enables TLS 1.2 and 1.3 and rustls picks 1.3 whenever the
        // client supports it; a client offering no TLS 1.3 suite can only do 1.2.
        if self.tls13_only.load(Ordering::Relaxed)
            && !hello
                .cipher_suites()
                .iter()
                .any(|s| (0x1301..=0x1305).contains(&u16::from(*s)))
        {
            return None;
        }
        Some(self.current.load_full())
    }
}

struct VerifierState {
    mode: ClientAuth,
    inner: Option<Arc<dyn ClientCertVerifier>>,
    /// CA names sent in the CertificateRequest. Leaked once per client-CA change so the
    /// trait's borrowed return type can outlive a swap.
    hints: &'static [DistinguishedName],
}

/// `client_auth` + `client_ca_file`, swappable at run time.
struct ClientVerifier {
    state: ArcSwap<VerifierState>,
}

impl std::fmt::Debug for ClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientVerifier({:?})", self.state.load().mode)
    }
}

impl ClientVerifier {
    fn state_for(
        mode: ClientAuth,
        roots: Option<&Arc<RootCertStore>>,
    ) -> Result<VerifierState, String> {
        let Some(roots) = roots.filter(|_| mode != ClientAuth::None) else {
            return Ok(VerifierState {
                mode: ClientAuth::None,
                inner: None,
                hints: &[],
            });
        };
        let inner = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| format!("listen.tls.client_ca_file: {e}"))?;
        let hints: Vec<DistinguishedName> = roots.subjects();
        Ok(VerifierState {
            mode,
            inner: Some(inner),
            hints: Box::leak(hints.into_boxed_slice()),
        })
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.state.load().mode != ClientAuth::None
    }

    fn client_auth_mandatory(&self) -> bool {
        self.state.load().mode == ClientAuth::Require
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.state.load().hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match &self.state.load().inner {
            Some(v) => v.verify_client_cert(end_entity, intermediates, now),
            None => Err(rustls::Error::General(
                "client certificates are not enabled".into(),
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What the gateway reads of a verified client certificate, parsed once per handshake and
/// attached to the connection's `SslDigest`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerCertificate {
    /// Subject common names (UTF-8 decodable ones), in certificate order.
    pub cns: Vec<String>,
    /// `dNSName` subject alternative names.
    pub dns: Vec<String>,
    /// `uniformResourceIdentifier` subject alternative names.
    pub uris: Vec<String>,
    /// `rfc822Name` subject alternative names.
    pub emails: Vec<String>,
    /// The extendedKeyUsage extension is present and lists id-kp-clientAuth
    /// (1.3.6.1.5.5.7.3.2). Without it the certificate identifies nobody.
    pub client_auth: bool,
    pub subject: String,
}

impl PeerCertificate {
    /// Parses the fields used for identity; an error for a certificate whose SAN or
    /// extendedKeyUsage extension is malformed or duplicated (such a certificate identifies
    /// nobody rather than being read half).
    pub fn from_der(der: &[u8]) -> Result<PeerCertificate, String> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|e| format!("unparsable: {e}"))?;
        let mut peer = PeerCertificate {
            cns: cert
                .subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok().map(str::to_string))
                .collect(),
            subject: cert.subject().to_string(),
            ..PeerCertificate::default()
        };
        let san = cert
            .subject_alternative_name()
            .map_err(|e| format!("subjectAltName: {e}"))?;
        for gn in san.iter().flat_map(|san| &san.value.general_names) {
            match gn {
                GeneralName::DNSName(s) => peer.dns.push(s.to_string()),
                GeneralName::URI(s) => peer.uris.push(s.to_string()),
                GeneralName::RFC822Name(s) => peer.emails.push(s.to_string()),
                _ => {}
            }
        }
        let eku = cert
            .extended_key_usage()
            .map_err(|e| format!("extendedKeyUsage: {e}"))?;
        // Strict on purpose: RFC 5280 reads an absent extension as "any purpose", but a
        // certificate that may log in must say so. anyExtendedKeyUsage alone does not count
        // (webpki refuses it in the handshake already, as it does serverAuth-only ones).
        peer.client_auth = eku.is_some_and(|e| e.value.client_auth);
        Ok(peer)
    }

    /// The certificate's values of one subject field.
    pub fn values(&self, field: CertificateField) -> &[String] {
        match field {
            CertificateField::Cn => &self.cns,
            CertificateField::Dns => &self.dns,
            CertificateField::Uri => &self.uris,
            CertificateField::Email => &self.emails,
        }
    }

    /// The one user whose `certificate` mapping this certificate matches. `None` without the
    /// clientAuth extended key usage, when no mapping matches, or when mappings of several
    /// users match (a certificate naming several users authenticates none of them).
    pub fn user<'c>(&self, users: &'c [User]) -> Option<&'c User> {
        if !self.client_auth {
            tracing::debug!(subject = %self.subject, "client certificate without the clientAuth extended key usage: not used to authenticate");
            return None;
        }
        let mut found: Option<&User> = None;
        for u in users {
            let Some(m) = &u.certificate else { continue };
            if !self.values(m.field).iter().any(|v| m.matches(v)) {
                continue;
            }
            if let Some(f) = found {
                tracing::warn!(subject = %self.subject, users = %format!("{}, {}", f.name, u.name), "client certificate matches several users; not used to authenticate");
                return None;
            }
            found = Some(u);
        }
        if found.is_none() {
            tracing::debug!(subject = %self.subject, "client certificate matches no users[].certificate");
        }
        found
    }
}

struct HandshakeCallbacks;

#[async_trait]
impl TlsAccept for HandshakeCallbacks {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        // Only certificates the verifier accepted get here (a bad one fails the handshake).
        // The verifier (webpki) refuses a certificate whose extendedKeyUsage lacks clientAuth;
        // one without the extension passes it and is refused as an identity here.
        let der = tls.peer_certificate_der()?;
        match PeerCertificate::from_der(der) {
            Ok(peer) => {
                if !peer.client_auth {
                    tracing::warn!(subject = %peer.subject, "client certificate has no extendedKeyUsage clientAuth: it authenticates nobody");
                }
                Some(Arc::new(peer))
            }
            Err(e) => {
                tracing::warn!(error = %e, "client certificate cannot be read: it authenticates nobody");
                None
            }
        }
    }
}

/// The user a verified client certificate identifies: the one whose `users[].certificate`
/// (field and value) it matches — never by `name` alone — and only with the clientAuth extended
/// key usage. `None` when the connection has no certificate, it has no clientAuth EKU, it
/// matches no user, or it matches several.
pub fn client_certificate_identity(
    session: &pingora::proxy::Session,
    config: &Config,
) -> Option<Arc<Identity>> {
    let digest = session.digest()?.ssl_digest.as_ref()?;
    let peer = digest.extension.get::<PeerCertificate>()?;
    let user = peer.user(&config.users)?;
    let mut identity = whizard_core::auth::basic::identity_of(user);
    identity.method = AuthMethod::ClientCertificate;
    Some(Arc::new(identity))
}

/// Identifies a set of files by metadata, to notice replacement cheaply.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Vec<Option<(std::time::SystemTime, u64, u64)>>);

fn stamp(paths: &[&Path]) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    Stamp(
        paths
            .iter()
            .map(|p| {
                std::fs::metadata(p).ok().map(|m| {
                    (
                        m.modified().unwrap_or(std::time::UNIX_EPOCH),
                        m.len(),
                        m.ino(),
                    )
                })
            })
            .collect(),
    )
}

fn listen_paths(t: &ListenTls) -> Vec<&Path> {
    let mut v = vec![t.cert_file.as_path(), t.key_file.as_path()];
    if let Some(ca) = &t.client_ca_file {
        v.push(ca.as_path());
    }
    v
}

fn content_hash(paths: &[&Path]) -> Option<blake3::Hash> {
    let mut h = blake3::Hasher::new();
    for p in paths {
        let b = std::fs::read(p).ok()?;
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(&b);
    }
    Some(h.finalize())
}

/// What the watcher last applied.
#[derive(Clone, PartialEq, Eq)]
struct Applied {
    settings: (
        PathBuf,
        PathBuf,
        Option<PathBuf>,
        ClientAuth,
        TlsVersion,
        bool,
    ),
    content: Option<blake3::Hash>,
}

fn settings_of(
    t: &ListenTls,
) -> (
    PathBuf,
    PathBuf,
    Option<PathBuf>,
    ClientAuth,
    TlsVersion,
    bool,
) {
    (
        t.cert_file.clone(),
        t.key_file.clone(),
        t.client_ca_file.clone(),
        t.client_auth,
        t.min_version,
        t.allow_expired,
    )
}

/// The listener's TLS: validated material plus the swappable resolver and verifier.
pub struct ListenerTls {
    resolver: Arc<Resolver>,
    verifier: Arc<ClientVerifier>,
}

impl ListenerTls {
    /// Loads and checks the files of `t`; an error names the key and the file.
    pub fn new(t: &ListenTls) -> Result<ListenerTls, String> {
        install_crypto_provider();
        let m = ListenMaterial::load(t)?;
        Ok(ListenerTls {
            resolver: Arc::new(Resolver {
                current: ArcSwap::new(m.certified),
                tls13_only: AtomicBool::new(t.min_version == TlsVersion::V1_3),
            }),
            verifier: Arc::new(ClientVerifier {
                state: ArcSwap::from_pointee(ClientVerifier::state_for(
                    t.client_auth,
                    m.client_roots.as_ref(),
                )?),
            }),
        })
    }

    /// pingora settings: HTTP/2 and HTTP/1.1 by ALPN, our resolver and verifier, the callback
    /// that records client certificate names.
    pub fn settings(&self) -> Result<TlsSettings, String> {
        let mut s = TlsSettings::with_callbacks(Box::new(HandshakeCallbacks))
            .map_err(|e| format!("listen.tls: {e}"))?;
        s.set_cert_resolver(self.resolver.clone());
        s.set_client_cert_verifier(self.verifier.clone());
        s.enable_h2();
        Ok(s)
    }

    /// Starts a thread that re-reads the files when they (or `current()`'s settings) change and
    /// swaps them in; a bad set of files is logged (naming the file) and the old one kept.
    pub fn spawn_reloader<F>(&self, initial: &ListenTls, current: F)
    where
        F: Fn() -> Option<ListenTls> + Send + 'static,
    {
        let resolver = self.resolver.clone();
        let verifier = self.verifier.clone();
        let mut applied = Applied {
            settings: settings_of(initial),
            content: content_hash(&listen_paths(initial)),
        };
        let mut last_stamp = stamp(&listen_paths(initial));
        let mut last_error: Option<String> = None;
        std::thread::Builder::new()
            .name("whizard-tls-reload".into())
            .spawn(move || loop {
                std::thread::sleep(RELOAD_INTERVAL);
                let Some(t) = current() else { continue };
                let paths = listen_paths(&t);
                let now_stamp = stamp(&paths);
                let settings = settings_of(&t);
                if now_stamp == last_stamp && settings == applied.settings {
                    continue;
                }
                last_stamp = now_stamp;
                let want = Applied {
                    settings,
                    content: content_hash(&paths),
                };
                if want == applied {
                    continue;
                }
                match ListenMaterial::load(&t).and_then(|m| {
                    let state = ClientVerifier::state_for(t.client_auth, m.client_roots.as_ref())?;
                    Ok((m, state))
                }) {
                    Ok((m, state)) => {
                        resolver.current.store(m.certified);
                        resolver
                            .tls13_only
                            .store(t.min_version == TlsVersion::V1_3, Ordering::Relaxed);
                        verifier.state.store(Arc::new(state));
                        applied = want;
                        last_error = None;
                        tracing::info!(
                            cert_file = %t.cert_file.display(),
                            key_file = %t.key_file.display(),
                            "TLS certificate reloaded"
                        );
                    }
                    Err(e) => {
                        if last_error.as_deref() != Some(e.as_str()) {
                            tracing::error!(error = %e, "TLS certificate reload refused; keeping the previous certificate");
                            last_error = Some(e);
                        }
                    }
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!(error = %e, "cannot start the TLS reloader"));
    }
}

// ---------------------------------------------------------------------------------------------
// TLS to upstreams
// ---------------------------------------------------------------------------------------------

/// `upstreams.tls`, loaded: what pingora peers and the reqwest client use.
pub struct PeerTls {
    source: UpstreamTls,
    ca: Option<Arc<CaType>>,
    roots: Arc<RootCertStore>,
    client: Option<(
        Vec<CertificateDer<'static>>,
        PrivateKeyDer<'static>,
        Arc<CertKey>,
    )>,
}

fn same_source(a: &UpstreamTls, b: &UpstreamTls) -> bool {
    a.ca_file == b.ca_file
        && a.cert_file == b.cert_file
        && a.key_file == b.key_file
        && a.server_name == b.server_name
        && a.insecure_skip_verify == b.insecure_skip_verify
}

fn wrap_x509(der: &CertificateDer<'_>) -> WrappedX509 {
    // Parsed (and checked) by `load_certs` already, so pingora's parser will not panic.
    WrappedX509::new(der.as_ref().to_vec(), pingora::utils::tls::parse_x509)
}

fn native_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_roots();
    let (added, _) = roots.add_parsable_certificates(found);
    if added == 0 {
        tracing::warn!(
            "no system CA certificates found; set upstreams.tls.ca_file for https upstreams"
        );
    }
    roots
}

fn rustls_native_roots() -> Vec<CertificateDer<'static>> {
    match pingora::tls::load_native_certs() {
        Ok(certs) => certs,
        Err(e) => {
            tracing::warn!(error = %e, "cannot load the system CA certificates");
            Vec::new()
        }
    }
}

impl PeerTls {
    fn load(t: &UpstreamTls) -> Result<PeerTls, String> {
        install_crypto_provider();
        let (ca, roots) = match &t.ca_file {
            Some(p) => {
                let certs = load_certs("upstreams.tls.ca_file", p)?;
                let ca: Vec<WrappedX509> = certs.iter().map(wrap_x509).collect();
                let roots = load_roots("upstreams.tls.ca_file", p)?;
                (Some(Arc::from(ca.into_boxed_slice())), roots)
            }
            None => (None, native_roots()),
        };
        let client = match (&t.cert_file, &t.key_file) {
            (Some(c), Some(k)) => {
                let (certs, key, _) = load_pair("upstreams.tls", c, k, false)?;
                // pingora turns the key back into a PrivateKeyDer with `unwrap()`: check first.
                let raw = key.secret_der().to_vec();
                PrivateKeyDer::try_from(raw.clone())
                    .map_err(|e| format!("upstreams.tls.key_file: {}: {e}", k.display()))?;
                let cert_key =
                    CertKey::new(certs.iter().map(|c| c.as_ref().to_vec()).collect(), raw);
                Some((certs, key, Arc::new(cert_key)))
            }
            (None, None) => None,
            _ => return Err("upstreams.tls: cert_file and key_file go together".into()),
        };
        if let Some(name) = &t.server_name {
            ServerName::try_from(name.as_str()).map_err(|e| {
                format!("upstreams.tls.server_name: {name:?} is not a DNS name or IP address: {e}")
            })?;
        }
        Ok(PeerTls {
            source: t.clone(),
            ca,
            roots: Arc::new(roots),
            client,
        })
    }

    /// The rustls config of the reqwest client (writes, POST forms, OIDC).
    fn client_config(&self) -> Result<rustls::ClientConfig, String> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("upstreams.tls: {e}"))?;
        let builder = if self.source.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(InsecureVerifier))
        } else {
            let inner = WebPkiServerVerifier::builder_with_provider(self.roots.clone(), provider())
                .build()
                .map_err(|e| format!("upstreams.tls.ca_file: {e}"))?;
            match &self.source.server_name {
                Some(name) => builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(NamedVerifier {
                        inner,
                        name: ServerName::try_from(name.clone())
                            .map_err(|e| format!("upstreams.tls.server_name: {e}"))?,
                    })),
                None => builder.with_webpki_verifier(inner),
            }
        };
        let mut config = match &self.client {
            Some((certs, key, _)) => builder
                .with_client_auth_cert(certs.clone(), key.clone_key())
                .map_err(|e| format!("upstreams.tls.cert_file: {e}"))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// Loaded `upstreams.tls` by its settings; rebuilt by every `Runtime::new` (config reload),
/// so replaced files are picked up on reload.
static PEER_TLS: LazyLock<Mutex<Vec<Arc<PeerTls>>>> = LazyLock::new(Default::default);

fn remember(p: Arc<PeerTls>) {
    let mut v = lock(&PEER_TLS);
    v.retain(|x| !same_source(&x.source, &p.source));
    v.push(p);
    if v.len() > 4 {
        v.remove(0);
    }
}

fn peer_tls(t: &UpstreamTls) -> Result<Arc<PeerTls>, String> {
    {
        let v = lock(&PEER_TLS);
        if let Some(p) = v.iter().rev().find(|p| same_source(&p.source, t)) {
            return Ok(p.clone());
        }
    }
    let p = Arc::new(PeerTls::load(t)?);
    remember(p.clone());
    Ok(p)
}

/// A reqwest client builder whose TLS follows `upstreams.tls` (CA bundle, client certificate,
/// server name, insecure_skip_verify); system roots without it. Loads and checks the files.
pub fn upstream_client_builder(
    tls: Option<&UpstreamTls>,
) -> Result<reqwest::ClientBuilder, String> {
    install_crypto_provider();
    let peer = match tls {
        Some(t) => {
            let p = Arc::new(PeerTls::load(t)?);
            if t.insecure_skip_verify {
                tracing::warn!("upstreams.tls.insecure_skip_verify is set: upstream certificates are NOT verified");
            }
            remember(p.clone());
            p
        }
        None => Arc::new(PeerTls {
            source: UpstreamTls {
                ca_file: None,
                cert_file: None,
                key_file: None,
                server_name: None,
                insecure_skip_verify: false,
            },
            ca: None,
            roots: Arc::new(native_roots()),
            client: None,
        }),
    };
    Ok(reqwest::Client::builder().tls_backend_preconfigured(peer.client_config()?))
}

/// The rustls config of one OpenID provider's client, from its `oidc[N].tls` (`prefix` is
/// `oidc[N].tls`, for messages). Nothing of `upstreams.tls` applies: the provider's keys decide
/// every tenant, so it gets the least trust that works —
/// - roots: `ca_file` alone when set (not added to the system roots: a private CA for the
///   provider should not also vouch for the rest of the internet, nor the public CAs for the
///   provider), else the system roots;
/// - name: always the host of the URL being called (no `server_name` override);
/// - verification is never skipped.
pub fn oidc_client_config(prefix: &str, t: &OidcTls) -> Result<rustls::ClientConfig, String> {
    install_crypto_provider();
    let roots = match &t.ca_file {
        Some(p) => load_roots(&format!("{prefix}.ca_file"), p)?,
        None => {
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(rustls_native_roots());
            if added == 0 {
                tracing::warn!(
                    "no system CA certificates found; set {prefix}.ca_file for an https provider"
                );
            }
            roots
        }
    };
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| format!("{prefix}.ca_file: {e}"))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("{prefix}: {e}"))?
        .with_webpki_verifier(verifier);
    let mut config = match (&t.cert_file, &t.key_file) {
        (Some(c), Some(k)) => {
            let (certs, key, _) = load_pair(prefix, c, k, false)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("{prefix}.cert_file: {e}"))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(format!("{prefix}: cert_file and key_file go together")),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Applies `upstreams.tls` to a TLS peer: CA, client certificate, server name, verification.
pub fn configure_peer(peer: &mut HttpPeer, tls: Option<&UpstreamTls>) -> pingora::Result<()> {
    let Some(t) = tls else { return Ok(()) };
    let p = peer_tls(t).map_err(|e| {
        tracing::error!(error = %e, "upstream TLS files");
        pingora::Error::explain(
            pingora::ErrorType::InvalidCert,
            "upstream TLS files cannot be loaded",
        )
    })?;
    if let Some(ca) = &p.ca {
        peer.options.ca = Some(ca.clone());
    }
    if let Some((_, _, ck)) = &p.client {
        peer.client_cert_key = Some(ck.clone());
    }
    if let Some(name) = &t.server_name {
        peer.sni = name.clone();
    }
    if t.insecure_skip_verify {
        peer.options.verify_cert = false;
        peer.options.verify_hostname = false;
    }
    Ok(())
}

/// Verifies against the CA but checks the name `upstreams.tls.server_name` instead of the URL's.
#[derive(Debug)]
struct NamedVerifier {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for NamedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecure_skip_verify`: any certificate, but handshake signatures are still checked.
#[derive(Debug)]
struct InsecureVerifier;

impl ServerCertVerifier for InsecureVerifier {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_names_key_and_path() {
        let e = load_certs("listen.tls.cert_file", Path::new("/nonexistent/x.crt")).unwrap_err();
        assert!(
            e.contains("listen.tls.cert_file") && e.contains("/nonexistent/x.crt"),
            "{e}"
        );
    }

    /// A self-signed certificate with subject CN `cn` and the openssl `-addext` lines `exts`.
    fn self_signed(dir: &Path, name: &str, cn: &str, exts: &[&str]) -> Vec<u8> {
        let mut cmd = std::process::Command::new("openssl");
        cmd.current_dir(dir).args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-subj",
            &format!("/CN={cn}"),
        ]);
        for e in exts {
            cmd.args(["-addext", e]);
        }
        let out = cmd.output().expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        load_certs("test", &dir.join(format!("{name}.crt"))).unwrap()[0].to_vec()
    }

    fn user(name: &str, field: CertificateField, value: &str) -> User {
        User {
            name: name.into(),
            password_hash: None,
            certificate: Some(whizard_core::config::CertificateMatch {
                field,
                value: value.into(),
            }),
            tenants: vec!["t".into()],
            write_routing: Default::default(),
            access: whizard_core::config::Access {
                read: true,
                write: false,
            },
        }
    }

    #[test]
    fn peer_certificates_match_mappings_by_field_and_need_client_auth() {
        let dir = tempfile::tempdir().unwrap();
        let sans = "subjectAltName=DNS:Host.Example,URI:spiffe://example.org/ns/a/sa/Agent,email:Ops@example.org";
        let der = self_signed(
            dir.path(),
            "full",
            "svc",
            &[sans, "extendedKeyUsage=serverAuth,clientAuth"],
        );
        let peer = PeerCertificate::from_der(&der).unwrap();
        assert_eq!(peer.cns, vec!["svc"]);
        assert_eq!(peer.dns, vec!["Host.Example"]);
        assert_eq!(peer.uris, vec!["spiffe://example.org/ns/a/sa/Agent"]);
        assert_eq!(peer.emails, vec!["Ops@example.org"]);
        assert!(peer.client_auth);

        let name = |users: &[User]| peer.user(users).map(|u| u.name.clone());
        // Each field against its own kind only; nothing by user name.
        let by_uri = user(
            "u",
            CertificateField::Uri,
            "spiffe://example.org/ns/a/sa/Agent",
        );
        let by_email = user("e", CertificateField::Email, "Ops@example.org");
        let by_dns = user("d", CertificateField::Dns, "host.example");
        let by_cn = user("c", CertificateField::Cn, "svc");
        for u in [&by_uri, &by_email, &by_dns, &by_cn] {
            assert_eq!(name(std::slice::from_ref(u)), Some(u.name.clone()));
        }
        let no_match = [
            user("svc", CertificateField::Dns, "svc"),
            user("x", CertificateField::Cn, "Host.Example"),
            user(
                "y",
                CertificateField::Uri,
                "spiffe://example.org/ns/a/sa/agent",
            ),
            user("z", CertificateField::Email, "ops@example.org"),
            User {
                certificate: None,
                ..user("svc", CertificateField::Cn, "unused")
            },
        ];
        assert_eq!(name(&no_match), None);
        // Matching two users' mappings: nobody.
        assert_eq!(name(&[by_uri.clone(), by_cn.clone()]), None);

        // No extendedKeyUsage, serverAuth only, anyExtendedKeyUsage only: never an identity.
        for (file, ext) in [
            ("none", None),
            ("server", Some("extendedKeyUsage=serverAuth")),
            ("any", Some("extendedKeyUsage=anyExtendedKeyUsage")),
        ] {
            let exts: Vec<&str> = std::iter::once(sans).chain(ext).collect();
            let peer =
                PeerCertificate::from_der(&self_signed(dir.path(), file, "svc", &exts)).unwrap();
            assert!(!peer.client_auth, "{file}");
            assert_eq!(
                peer.user(std::slice::from_ref(&by_cn)).map(|u| &u.name),
                None,
                "{file}"
            );
        }
    }

    #[test]
    fn not_pem_is_refused() {
        let p = Path::new("x.crt");
        let e = parse_certs("k", p, b"hello").unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = parse_key("k", p, b"hello").unwrap_err();
        assert!(e.contains("no PEM private key"), "{e}");
        let garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(parse_certs("k", p, garbage).is_err());
    }
}
