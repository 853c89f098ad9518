//! jsonwebtoken's cryptography on *ring*: the one crypto library of the process (rustls,
//! pingora, reqwest and kube use ring too), instead of jsonwebtoken's own `aws_lc_rs` or
//! `rust_crypto` backends.
//!
//! jsonwebtoken 11 asks a process-wide [`CryptoProvider`] for every signature it makes or checks
//! and for the JWK helpers (`Jwk::from_encoding_key`, thumbprints). [`PROVIDER`] implements
//! them all with ring; [`install`] makes it the process default, once. It must run before
//! jsonwebtoken's first use of its provider: otherwise jsonwebtoken settles on its
//! feature-selected one, which (built with neither backend) panics. The gateway calls it in
//! the gateway's `tls::install_crypto_provider` and whenever it builds an OIDC [`Issuer`],
//! so every verifier has it.
//!
//! Key formats are jsonwebtoken's (those its constructors store):
//! - verify: HMAC secret; RSA as (n, e) from a JWK or an `RSAPublicKey` DER; EC as the
//!   uncompressed point (x, y from a JWK); Ed25519 as the 32-byte public key;
//! - sign: HMAC secret; RSA `RSAPrivateKey` (PKCS#1) DER, or PKCS#8; EC and Ed25519 PKCS#8.
//!
//! Nothing a token or a key controls can panic here: every parse failure is an error.
//!
//! [`Issuer`]: crate::auth::oidc::Issuer

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{new_error, ErrorKind, Result};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::rand::SystemRandom;
use ring::{digest, hmac, signature as sig};

/// The ring-backed provider. [`install`] makes it the process default.
pub static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key,
        rsa_pub_components_from_public_key,
        ec_pub_components_from_private_key,
        ed_pub_components_from_private_key,
        compute_digest,
    },
};

/// Installs [`PROVIDER`] as jsonwebtoken's process-wide provider. Idempotent and cheap after
/// the first call. If another provider got there first, says so once (that one stays).
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Err(other) = PROVIDER.install_default() {
            if !std::ptr::eq(other, &PROVIDER) {
                tracing::error!(
                    "jsonwebtoken already has another crypto provider: JWTs are not checked with ring"
                );
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Verifying
// ---------------------------------------------------------------------------------------------

enum VerifyKey {
    Hmac(hmac::Key),
    /// A public key in a form ring parses itself: `RSAPublicKey` DER, an uncompressed EC point,
    /// an Ed25519 public key.
    Encoded(&'static dyn sig::VerificationAlgorithm, Vec<u8>),
    /// An RSA public key as big-endian (n, e), without leading zero bytes.
    RsaComponents(&'static sig::RsaParameters, Vec<u8>, Vec<u8>),
}

struct RingVerifier {
    alg: Algorithm,
    key: VerifyKey,
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let checked = match &self.key {
            // Constant time (ring compares the tags with `constant_time::verify_slices_are_equal`).
            VerifyKey::Hmac(key) => hmac::verify(key, msg, signature),
            VerifyKey::Encoded(alg, key) => {
                sig::UnparsedPublicKey::new(*alg, key).verify(msg, signature)
            }
            VerifyKey::RsaComponents(params, n, e) => {
                sig::RsaPublicKeyComponents { n, e }.verify(params, msg, signature)
            }
        };
        checked.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn rsa_verification(alg: Algorithm) -> Option<&'static sig::RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

fn hmac_algorithm(alg: Algorithm) -> Option<hmac::Algorithm> {
    match alg {
        Algorithm::HS256 => Some(hmac::HMAC_SHA256),
        Algorithm::HS384 => Some(hmac::HMAC_SHA384),
        Algorithm::HS512 => Some(hmac::HMAC_SHA512),
        _ => None,
    }
}

/// `bytes` without its leading zero bytes. A JWK's `n` must not have any (RFC 7518 §6.3.1.1),
/// but some providers pad it; ring refuses them, the number is the same without.
fn unpadded(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or_default()
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    let alg = *alg;
    if key.family() != alg.family() {
        return Err(new_error(ErrorKind::InvalidKeyFormat));
    }
    let key = if let Some(h) = hmac_algorithm(alg) {
        VerifyKey::Hmac(hmac::Key::new(h, key.try_get_as_bytes()?))
    } else if let Some(params) = rsa_verification(alg) {
        match key.kind() {
            DecodingKeyKind::SecretOrDer(der) => VerifyKey::Encoded(params, der.clone()),
            DecodingKeyKind::RsaModulusExponent { n, e } => {
                VerifyKey::RsaComponents(params, unpadded(n).to_vec(), unpadded(e).to_vec())
            }
        }
    } else {
        let verification: &'static dyn sig::VerificationAlgorithm = match alg {
            Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
            Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
            Algorithm::EdDSA => &sig::ED25519,
            _ => return Err(new_error(ErrorKind::UnsupportedAlgorithm)),
        };
        VerifyKey::Encoded(verification, key.try_get_as_bytes()?.to_vec())
    };
    Ok(Box::new(RingVerifier { alg, key }))
}

// ---------------------------------------------------------------------------------------------
// Signing (tests and the benchmark tool sign tokens; the gateway only verifies)
// ---------------------------------------------------------------------------------------------

enum SignKey {
    Hmac(hmac::Key),
    Rsa(&'static dyn sig::RsaEncoding, sig::RsaKeyPair),
    Ecdsa(sig::EcdsaKeyPair),
    Ed25519(sig::Ed25519KeyPair),
}

struct RingSigner {
    alg: Algorithm,
    key: SignKey,
}

impl Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        let rng = SystemRandom::new();
        match &self.key {
            SignKey::Hmac(key) => Ok(hmac::sign(key, msg).as_ref().to_vec()),
            SignKey::Rsa(padding, pair) => {
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(*padding, &rng, msg, &mut out)
                    .map_err(|_| signature::Error::new())?;
                Ok(out)
            }
            SignKey::Ecdsa(pair) => pair
                .sign(&rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| signature::Error::new()),
            SignKey::Ed25519(pair) => Ok(pair.sign(msg).as_ref().to_vec()),
        }
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

/// An RSA private key: `RSAPrivateKey` (PKCS#1) DER, what `EncodingKey::from_rsa_der` and
/// `from_rsa_pem` hold; PKCS#8 is accepted too.
fn rsa_key_pair(der: &[u8]) -> Result<sig::RsaKeyPair> {
    sig::RsaKeyPair::from_der(der)
        .or_else(|pkcs1| sig::RsaKeyPair::from_pkcs8(der).map_err(|_| pkcs1))
        .map_err(|e| new_error(ErrorKind::InvalidRsaKey(e.to_string())))
}

fn ecdsa_signing(alg: Algorithm) -> Option<&'static sig::EcdsaSigningAlgorithm> {
    match alg {
        Algorithm::ES256 => Some(&sig::ECDSA_P256_SHA256_FIXED_SIGNING),
        Algorithm::ES384 => Some(&sig::ECDSA_P384_SHA384_FIXED_SIGNING),
        _ => None,
    }
}

/// A PKCS#8 EC private key (its `ECPrivateKey` must hold the public key, as OpenSSL writes it).
fn ecdsa_key_pair(
    alg: &'static sig::EcdsaSigningAlgorithm,
    der: &[u8],
) -> Result<sig::EcdsaKeyPair> {
    sig::EcdsaKeyPair::from_pkcs8(alg, der, &SystemRandom::new())
        .map_err(|_| new_error(ErrorKind::InvalidEcdsaKey))
}

/// A PKCS#8 Ed25519 private key: v1 (seed only, what OpenSSL writes) or v2 (seed and public
/// key, checked to match).
fn ed25519_key_pair(der: &[u8]) -> Result<sig::Ed25519KeyPair> {
    sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
        .map_err(|_| new_error(ErrorKind::InvalidEddsaKey))
}

fn rsa_signing(alg: Algorithm) -> Option<&'static dyn sig::RsaEncoding> {
    Some(match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_SHA512,
        _ => return None,
    })
}

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    let alg = *alg;
    if key.family() != alg.family() {
        return Err(new_error(ErrorKind::InvalidKeyFormat));
    }
    let bytes = key.as_bytes();
    let key = if let Some(h) = hmac_algorithm(alg) {
        SignKey::Hmac(hmac::Key::new(h, bytes))
    } else if let Some(padding) = rsa_signing(alg) {
        SignKey::Rsa(padding, rsa_key_pair(bytes)?)
    } else if let Some(signing) = ecdsa_signing(alg) {
        SignKey::Ecdsa(ecdsa_key_pair(signing, bytes)?)
    } else if alg == Algorithm::EdDSA {
        SignKey::Ed25519(ed25519_key_pair(bytes)?)
    } else {
        return Err(new_error(ErrorKind::UnsupportedAlgorithm));
    };
    Ok(Box::new(RingSigner { alg, key }))
}

// ---------------------------------------------------------------------------------------------
// Key utilities (JWKs from keys, thumbprints)
// ---------------------------------------------------------------------------------------------

fn rsa_pub_components_from_private_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let pair = rsa_key_pair(der)?;
    let c = sig::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
    Ok((c.n, c.e))
}

fn rsa_pub_components_from_public_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    rsa_public_key_der(der)
        .map(|(n, e)| (n.to_vec(), e.to_vec()))
        .ok_or_else(|| {
            new_error(ErrorKind::InvalidRsaKey(
                "malformed RSAPublicKey DER".into(),
            ))
        })
}

fn ec_pub_components_from_private_key(
    der: &[u8],
    alg: Algorithm,
) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    let (signing, curve, size) = match alg {
        Algorithm::ES256 => (
            &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            EllipticCurve::P256,
            32,
        ),
        Algorithm::ES384 => (
            &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
            EllipticCurve::P384,
            48,
        ),
        _ => return Err(new_error(ErrorKind::InvalidEcdsaKey)),
    };
    let pair = ecdsa_key_pair(signing, der)?;
    // ring's public key is the uncompressed point: 0x04 || x || y.
    match sig::KeyPair::public_key(&pair).as_ref().split_first() {
        Some((4, xy)) if xy.len() == 2 * size => {
            let (x, y) = xy.split_at(size);
            Ok((curve, x.to_vec(), y.to_vec()))
        }
        _ => Err(new_error(ErrorKind::InvalidEcdsaKey)),
    }
}

fn ed_pub_components_from_private_key(der: &[u8], curve: &EllipticCurve) -> Result<Vec<u8>> {
    match curve {
        EllipticCurve::Ed25519 => Ok(sig::KeyPair::public_key(&ed25519_key_pair(der)?)
            .as_ref()
            .to_vec()),
        _ => Err(new_error(ErrorKind::InvalidAlgorithm)),
    }
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    let alg = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
        _ => return Err(new_error(ErrorKind::UnsupportedAlgorithm)),
    };
    Ok(digest::digest(alg, data).as_ref().to_vec())
}

// ---------------------------------------------------------------------------------------------
// DER: `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017 A.1.1)
// ---------------------------------------------------------------------------------------------

/// (n, e) of a DER `RSAPublicKey`, big-endian without the sign byte. Strict DER: definite,
/// minimal lengths; positive, minimally encoded integers; nothing after the sequence.
fn rsa_public_key_der(der: &[u8]) -> Option<(&[u8], &[u8])> {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    let (body, rest) = der_element(der, SEQUENCE)?;
    if !rest.is_empty() {
        return None;
    }
    let (n, body) = der_element(body, INTEGER)?;
    let (e, body) = der_element(body, INTEGER)?;
    if !body.is_empty() {
        return None;
    }
    Some((der_positive_integer(n)?, der_positive_integer(e)?))
}

/// One TLV with tag `tag` at the start of `input`: (its value, what follows it).
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = input.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        // Long forms, minimal only; two length bytes are plenty (an 8192-bit modulus is 1025).
        0x81 => {
            let (&len, rest) = rest.split_first()?;
            if len < 0x80 {
                return None;
            }
            (usize::from(len), rest)
        }
        0x82 => {
            let (len, rest) = rest.split_first_chunk::<2>()?;
            let len = usize::from(u16::from_be_bytes(*len));
            if len < 0x100 {
                return None;
            }
            (len, rest)
        }
        // Indefinite (0x80) is not DER; longer lengths are not an RSA key.
        _ => return None,
    };
    rest.split_at_checked(len)
}

/// The magnitude of a DER INTEGER that must be positive (RSA's n and e).
fn der_positive_integer(bytes: &[u8]) -> Option<&[u8]> {
    match bytes {
        // Empty, zero, negative: not a key component.
        [] | [0] => None,
        [first, ..] if first & 0x80 != 0 => None,
        // A leading zero is only there to keep the next byte's top bit from reading as a sign.
        [0, second, ..] if second & 0x80 == 0 => None,
        [0, magnitude @ ..] => Some(magnitude),
        _ => Some(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{AlgorithmFamily, Header, Validation};
    use ring::rand::SystemRandom;
    use ring::signature::KeyPair;

    /// RSA 2048, `RSAPrivateKey` (PKCS#1), made with `openssl genrsa -traditional 2048`. A test
    /// key: never trust it for anything.
    const RSA_PRIVATE_KEY: &str = "
        MIIEowIBAAKCAQEAytjdtInCchbsvCWUq95PjSukCy6XeyA1QctU1aV2VIJKfgd4
        uEwCHDiaCH9CxKS481IlrXYl22btNDJ4KDSEjj2mRhMQ1hCnHj/Dn8BFZ/7zMgMH
        gyNvIZOMPymjaqiXeIBBH0olQKjs97GNo9m6uakshZ9OzIi5VWSAUVKr0hbrVJ40
        CAAhMLVuI7euoRH8W+7CnX+W2uDvNa9a52/isvILcndVd7MBjhtVnuWYzRWSJ8kI
        IVFmEQUy0RZyVYrV0QtbBZZZlUW25Ns0U/O1SwYXjRd9vyXzbLEUYK6AsVoDYYRP
        iTAJFw7tL1KMapwoVHPBcMA+vkCXVrTwKLv9MwIDAQABAoIBAC3w/g2UochrLsTS
        EiD24beMacPqkn5dZhJ3tcgJiIpNVAfFM28yL8wqeaBxCjM1R3o8YbIurxZI8nI+
        9/3LHzaD+fOm/8orzV3JfUniJxYNpRDvpLTrwpCtNTdc+9j9RAkTqywmA9foKntS
        6Exy1JqWGTJOSW+Di84uS+2fNrEG/fLWaVu2+au3Q2nal5GDFEeHb+gXQEqALw57
        TBPfC7OS/iV/b9HPn9DZBgBBCpEID/flPZCSjU9HhYcI0nQSvHi65DE5j+45aKjq
        BmbjWVJmnNKyqPSJJSj2pd+7w9ZIkG5D8jtf4nPmTijp433GwC5KPWBWidEfnQm+
        BZe1LoECgYEA/2CXbu6ckGALDd3fgm8kJ1geVsZ73F82f+fdVWYr+vvfaqG8Ddwh
        ZHymECLI2O+66BMy52Kdbl26QMg5VLry9CKQUM9gj3dQpqW+pu24FVPkcsTBtJJX
        /KOiC7t8qH48LPf4dKzQdjlZj2eHbhJfWR+q/qGx0uA2dfsPqg3rH8ECgYEAy1d8
        GWJN5YV4C+oxWb45Rl7DcaA3sAkaDIj9SPkYub2dXo95s0/l0hzGZ6EkKzomgkZO
        dTmR6Ar2juw1ytG2R2oog3CzFnCDgo4pK/0dmAk1JXnId+ckNIdIAQhfTFvQIGxD
        zgpncP8NK7VE5NksX6Iom/4gGNhgBL0gK+kzGfMCgYBzDLwMYPkt3eb8/0kThSif
        hQZeB5uDg22VIAtJzvbfYpubeXO0NsjgcXuK53DestncddHIBlhwgU9IoiuZ7YNI
        00166oJQ/+rYuPD0WUJGcX4I6nVt+UQkcD+v025spjpL9Ab94WEk8d9USMrtnt9P
        0oGBp6zqGNLQQiQjc5PKwQKBgEmdXHIcIrNLRJCbsk4ZDccqG3uRU1fJk8Kh/YBj
        nc3wlX5cVuTRshQFEtcFgYCcxsA3D8RkmSv2fBh172uDzIfCKPSc4ljnVtT2/nTM
        Z+BYxQLSOf8ekP7rUuf8zfNo8corJ8j5/0TrMSt3rn9jGCtvG2CN+bTE8M4GYhVD
        kZp9AoGBANLls6ADO7w/acdCMvIxEpizDJ8kcBm6GmYhpubuKXGS2XL0dbgz1ldg
        7a+Yffae2kq0BUtfiw6EFWwAGoOockI3Pgv1dd06RUQcNuFV43wicD/eathW961Z
        qCIavQsc6sPYL+/OpB3YDHKnRICRgYVkGFggpMlBcWMAJarMK6Dy";

    /// The Ed25519 private key of RFC 8410 §10.3 (PKCS#8 v1, what OpenSSL writes) and its
    /// public key.
    const ED25519_V1: &str = "MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC";
    const ED25519_V1_PUBLIC: &str =
        "19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1";

    fn b64(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .expect("test key base64")
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    const ALL: [Algorithm; 12] = [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    /// A DER INTEGER of a big-endian magnitude (a test-side encoder, to check the parser).
    fn der_integer(magnitude: &[u8]) -> Vec<u8> {
        let mut value = magnitude.to_vec();
        if value.first().is_some_and(|b| b & 0x80 != 0) {
            value.insert(0, 0);
        }
        der_tlv(0x02, &value)
    }

    fn der_tlv(tag: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match value.len() {
            n @ 0..=0x7f => out.push(n as u8),
            n @ 0x80..=0xff => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(value);
        out
    }

    fn rsa_public_der(n: &[u8], e: &[u8]) -> Vec<u8> {
        der_tlv(0x30, &[der_integer(n), der_integer(e)].concat())
    }

    /// A signing key and the matching verification key for `alg`.
    fn keys(alg: Algorithm) -> (EncodingKey, DecodingKey) {
        // Before anything asks jsonwebtoken for its provider (the JWK helpers do).
        install();
        let rng = SystemRandom::new();
        match alg.family() {
            AlgorithmFamily::Hmac => {
                let secret = b"a shared secret of thirty-two by";
                (
                    EncodingKey::from_secret(secret),
                    DecodingKey::from_secret(secret),
                )
            }
            AlgorithmFamily::Rsa => {
                let der = b64(RSA_PRIVATE_KEY);
                let (n, e) = rsa_pub_components_from_private_key(&der).unwrap();
                (
                    EncodingKey::from_rsa_der(&der),
                    DecodingKey::from_rsa_raw_components(&n, &e),
                )
            }
            AlgorithmFamily::Ec => {
                let signing = ecdsa_signing(alg).unwrap();
                let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
                let pair = sig::EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref(), &rng).unwrap();
                (
                    EncodingKey::from_ec_der(pkcs8.as_ref()),
                    DecodingKey::from_ec_der(pair.public_key().as_ref()),
                )
            }
            AlgorithmFamily::Ed => {
                let pkcs8 = sig::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
                let pair = sig::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
                (
                    EncodingKey::from_ed_der(pkcs8.as_ref()),
                    DecodingKey::from_ed_der(pair.public_key().as_ref()),
                )
            }
        }
    }

    fn sign(alg: Algorithm, key: &EncodingKey, msg: &[u8]) -> Vec<u8> {
        let signer = (PROVIDER.signer_factory)(&alg, key).unwrap();
        assert_eq!(signer.algorithm(), alg);
        signer.try_sign(msg).unwrap()
    }

    fn verifies(alg: Algorithm, key: &DecodingKey, msg: &[u8], signature: &[u8]) -> bool {
        match (PROVIDER.verifier_factory)(&alg, key) {
            Ok(v) => {
                assert_eq!(v.algorithm(), alg);
                v.verify(msg, &signature.to_vec()).is_ok()
            }
            Err(_) => false,
        }
    }

    #[test]
    fn every_algorithm_round_trips_and_refuses_a_flipped_bit() {
        let msg = b"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ0ZXN0In0".as_slice();
        for alg in ALL {
            let (enc, dec) = keys(alg);
            let signature = sign(alg, &enc, msg);
            assert!(verifies(alg, &dec, msg, &signature), "{alg:?}");
            // Every bit of the signature matters (first, middle, last byte; top and low bit).
            for i in [0, signature.len() / 2, signature.len() - 1] {
                for bit in [0x01, 0x80] {
                    let mut bad = signature.clone();
                    bad[i] ^= bit;
                    assert!(!verifies(alg, &dec, msg, &bad), "{alg:?} sig byte {i}");
                }
            }
            for i in [0, msg.len() / 2, msg.len() - 1] {
                let mut bad = msg.to_vec();
                bad[i] ^= 0x01;
                assert!(
                    !verifies(alg, &dec, &bad, &signature),
                    "{alg:?} msg byte {i}"
                );
            }
            // Truncated, extended and empty signatures.
            assert!(!verifies(alg, &dec, msg, &signature[..signature.len() - 1]));
            assert!(!verifies(
                alg,
                &dec,
                msg,
                &[signature.as_slice(), &[0]].concat()
            ));
            assert!(!verifies(alg, &dec, msg, &[]));
        }
    }

    #[test]
    fn a_signature_of_one_algorithm_does_not_pass_as_another() {
        let msg = b"header.claims".as_slice();
        for alg in ALL {
            let (enc, _) = keys(alg);
            let signature = sign(alg, &enc, msg);
            for other in ALL
                .into_iter()
                .filter(|o| *o != alg && o.family() == alg.family())
            {
                let (_, dec) = if alg.family() == AlgorithmFamily::Hmac
                    || alg.family() == AlgorithmFamily::Rsa
                {
                    keys(alg) // same key material, other algorithm
                } else {
                    keys(other)
                };
                assert!(
                    !verifies(other, &dec, msg, &signature),
                    "{alg:?} as {other:?}"
                );
            }
        }
    }

    #[test]
    fn a_key_of_another_family_is_refused() {
        for alg in ALL {
            for other in ALL.into_iter().filter(|o| o.family() != alg.family()) {
                let (enc, dec) = keys(other);
                assert!(
                    (PROVIDER.signer_factory)(&alg, &enc).is_err(),
                    "sign {alg:?} with a {other:?} key"
                );
                assert!(
                    (PROVIDER.verifier_factory)(&alg, &dec).is_err(),
                    "verify {alg:?} with a {other:?} key"
                );
            }
        }
        // Same family, wrong curve: a P-384 key does not verify ES256 (nor sign it).
        let (enc384, dec384) = keys(Algorithm::ES384);
        let (enc256, _) = keys(Algorithm::ES256);
        let signature = sign(Algorithm::ES256, &enc256, b"m");
        assert!(!verifies(Algorithm::ES256, &dec384, b"m", &signature));
        assert!((PROVIDER.signer_factory)(&Algorithm::ES256, &enc384).is_err());
    }

    #[test]
    fn malformed_keys_are_errors_not_panics() {
        let junk: [&[u8]; 5] = [b"", b"\x00", b"\x04", &[0x30; 70], &[0xff; 600]];
        for alg in ALL {
            for bytes in junk {
                let enc = match alg.family() {
                    AlgorithmFamily::Hmac => continue,
                    AlgorithmFamily::Rsa => EncodingKey::from_rsa_der(bytes),
                    AlgorithmFamily::Ec => EncodingKey::from_ec_der(bytes),
                    AlgorithmFamily::Ed => EncodingKey::from_ed_der(bytes),
                };
                assert!((PROVIDER.signer_factory)(&alg, &enc).is_err(), "{alg:?}");
                let dec = match alg.family() {
                    AlgorithmFamily::Hmac => continue,
                    AlgorithmFamily::Rsa => DecodingKey::from_rsa_der(bytes),
                    AlgorithmFamily::Ec => DecodingKey::from_ec_der(bytes),
                    AlgorithmFamily::Ed => DecodingKey::from_ed_der(bytes),
                };
                assert!(!verifies(alg, &dec, b"m", &[0; 64]), "{alg:?}");
            }
        }
        // RSA components that are not a usable key: empty, zero, tiny, even.
        for (n, e) in [
            (&[][..], &[1, 0, 1][..]),
            (&[0; 256][..], &[1, 0, 1][..]),
            (&[0xc5; 64][..], &[1, 0, 1][..]),
            (&[0xc4; 256][..], &[1, 0, 1][..]),
            (&[0xc5; 256][..], &[][..]),
        ] {
            let dec = DecodingKey::from_rsa_raw_components(n, e);
            assert!(!verifies(Algorithm::RS256, &dec, b"m", &[1; 256]));
        }
        assert!(rsa_pub_components_from_private_key(b"junk").is_err());
        assert!(ec_pub_components_from_private_key(b"junk", Algorithm::ES256).is_err());
        assert!(ec_pub_components_from_private_key(b"junk", Algorithm::RS256).is_err());
        assert!(ed_pub_components_from_private_key(b"junk", &EllipticCurve::Ed25519).is_err());
    }

    #[test]
    fn rsa_verifies_from_jwk_components_and_from_der() {
        install();
        let der = b64(RSA_PRIVATE_KEY);
        let enc = EncodingKey::from_rsa_der(&der);
        let signature = sign(Algorithm::RS256, &enc, b"payload");

        // As a provider publishes it: a JWK with base64url n and e.
        let jwk = Jwk::from_encoding_key(&enc, Algorithm::RS256).unwrap();
        let from_jwk = DecodingKey::from_jwk(&jwk).unwrap();
        assert!(matches!(
            from_jwk.kind(),
            DecodingKeyKind::RsaModulusExponent { .. }
        ));
        assert!(verifies(
            Algorithm::RS256,
            &from_jwk,
            b"payload",
            &signature
        ));

        // A zero-padded modulus (some providers send one) is the same number.
        let (n, e) = rsa_pub_components_from_private_key(&der).unwrap();
        assert_eq!(e, [1, 0, 1]);
        assert_eq!(n.len(), 256);
        let padded = DecodingKey::from_rsa_raw_components(&[&[0][..], &n].concat(), &e);
        assert!(verifies(Algorithm::RS256, &padded, b"payload", &signature));

        // The `RSAPublicKey` DER form, and its components parsed back.
        let public = rsa_public_der(&n, &e);
        let from_der = DecodingKey::from_rsa_der(&public);
        assert!(verifies(
            Algorithm::RS256,
            &from_der,
            b"payload",
            &signature
        ));
        assert_eq!(rsa_pub_components_from_public_key(&public).unwrap(), (n, e));
        let jwk_from_der = Jwk::from_decoding_key(&from_der, Some(Algorithm::RS256)).unwrap();
        assert_eq!(jwk_from_der.algorithm, jwk.algorithm);
    }

    #[test]
    fn the_der_parser_is_strict() {
        let (n, e) = rsa_pub_components_from_private_key(&b64(RSA_PRIVATE_KEY)).unwrap();
        let good = rsa_public_der(&n, &e);
        assert_eq!(rsa_public_key_der(&good), Some((&n[..], &e[..])));

        // Every truncation, and trailing bytes.
        for len in 0..good.len() {
            assert_eq!(rsa_public_key_der(&good[..len]), None, "truncated to {len}");
        }
        assert_eq!(rsa_public_key_der(&[good.as_slice(), &[0]].concat()), None);
        // Bytes after e, inside the sequence.
        let inner = [der_integer(&n), der_integer(&e), vec![0x05, 0x00]].concat();
        assert_eq!(rsa_public_key_der(&der_tlv(0x30, &inner)), None);
        // A third integer (an RSAPrivateKey is not a public key), a missing one.
        assert_eq!(rsa_public_key_der(&b64(RSA_PRIVATE_KEY)), None);
        assert_eq!(rsa_public_key_der(&der_tlv(0x30, &der_integer(&n))), None);
        // Wrong tags.
        let mut wrong = good.clone();
        wrong[0] = 0x31;
        assert_eq!(rsa_public_key_der(&wrong), None);
        let inner = [der_tlv(0x04, &n), der_integer(&e)].concat();
        assert_eq!(rsa_public_key_der(&der_tlv(0x30, &inner)), None);

        let small = |n: &[u8], e: &[u8]| {
            let inner = [der_tlv(0x02, n), der_tlv(0x02, e)].concat();
            rsa_public_key_der(&der_tlv(0x30, &inner)).map(|(n, e)| (n.to_vec(), e.to_vec()))
        };
        assert_eq!(small(&[0x7f], &[3]), Some((vec![0x7f], vec![3])));
        assert_eq!(small(&[0, 0x80], &[3]), Some((vec![0x80], vec![3])));
        // Negative, zero, empty, non-minimal integers.
        assert_eq!(small(&[0x80], &[3]), None);
        assert_eq!(small(&[0], &[3]), None);
        assert_eq!(small(&[], &[3]), None);
        assert_eq!(small(&[0, 0x7f], &[3]), None);
        assert_eq!(small(&[0x7f], &[0, 3]), None);

        // Lengths: indefinite, non-minimal long forms, too long for an RSA key.
        assert_eq!(
            rsa_public_key_der(&[0x30, 0x80, 0x02, 0x01, 0x03, 0, 0]),
            None
        );
        assert_eq!(
            rsa_public_key_der(&[0x30, 0x81, 0x06, 0x02, 0x01, 0x03, 0x02, 0x01, 0x03]),
            None
        );
        let long_form_small = [&[0x30, 0x82, 0x00, 0x06][..], &[2, 1, 3, 2, 1, 3]].concat();
        assert_eq!(rsa_public_key_der(&long_form_small), None);
        assert_eq!(
            rsa_public_key_der(&[0x30, 0x83, 0x00, 0x00, 0x06, 2, 1, 3, 2, 1, 3]),
            None
        );
        // A length past the end.
        assert_eq!(rsa_public_key_der(&[0x30, 0x82, 0xff, 0xff, 2, 1, 3]), None);
        assert!(rsa_pub_components_from_public_key(&[]).is_err());
    }

    #[test]
    fn jwks_of_ec_and_ed25519_private_keys() {
        install();
        for alg in [Algorithm::ES256, Algorithm::ES384] {
            let (enc, _) = keys(alg);
            let signature = sign(alg, &enc, b"payload");
            let jwk = Jwk::from_encoding_key(&enc, alg).unwrap();
            let dec = DecodingKey::from_jwk(&jwk).unwrap();
            assert!(verifies(alg, &dec, b"payload", &signature), "{alg:?}");
        }

        // PKCS#8 v1 (no public key inside): the public key is derived.
        let v1 = b64(ED25519_V1);
        let public = ed_pub_components_from_private_key(&v1, &EllipticCurve::Ed25519).unwrap();
        assert_eq!(hex(&public), ED25519_V1_PUBLIC);
        let enc = EncodingKey::from_ed_der(&v1);
        let jwk = Jwk::from_encoding_key(&enc, Algorithm::EdDSA).unwrap();
        let signature = sign(Algorithm::EdDSA, &enc, b"payload");
        let dec = DecodingKey::from_jwk(&jwk).unwrap();
        assert!(verifies(Algorithm::EdDSA, &dec, b"payload", &signature));
        assert!(ed_pub_components_from_private_key(&v1, &EllipticCurve::P256).is_err());
    }

    #[test]
    fn thumbprint_of_rfc_7638() {
        install();
        // RFC 7638 §3.1.
        let jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        }))
        .unwrap();
        assert_eq!(
            jwk.thumbprint(ThumbprintHash::SHA256).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    /// Through jsonwebtoken's own `encode`/`decode`, with the provider installed.
    #[test]
    fn jsonwebtoken_uses_the_installed_provider() {
        install();
        install(); // idempotent
        let claims = serde_json::json!({"sub": "alice", "exp": 4_102_444_800u64});
        for alg in ALL {
            let (enc, dec) = keys(alg);
            let token = jsonwebtoken::encode(&Header::new(alg), &claims, &enc).unwrap();
            let mut validation = Validation::new(alg);
            validation.required_spec_claims.clear();
            let data = jsonwebtoken::decode::<serde_json::Value>(&token, &dec, &validation)
                .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
            assert_eq!(data.claims, claims);
            // A flipped signature character is refused as a bad signature.
            let (head, sig) = token.rsplit_once('.').unwrap();
            let flipped = if sig.starts_with('A') { 'B' } else { 'A' };
            let bad = format!("{head}.{flipped}{}", &sig[1..]);
            let err = jsonwebtoken::decode::<serde_json::Value>(&bad, &dec, &validation);
            assert!(
                matches!(err.unwrap_err().kind(), ErrorKind::InvalidSignature),
                "{alg:?}"
            );
        }
    }
}
