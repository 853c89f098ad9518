//! Password hashes: argon2id (PHC strings) and bcrypt ($2a$/$2b$/$2y$, as `htpasswd -B` writes).
//! Verification is deliberately slow; callers run it off the async workers and cache successes.

use crate::config::PasswordHash;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};

/// True when `password` matches `hash`. Both algorithms compare in constant time.
pub fn verify(hash: &PasswordHash, password: &[u8]) -> bool {
    match hash {
        PasswordHash::Argon2id(phc) => match argon2::PasswordHash::new(phc) {
            Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
            Err(_) => false,
        },
        // bcrypt ignores bytes past 72; refuse such passwords rather than accept a prefix.
        PasswordHash::Bcrypt(h) => {
            password.len() <= 72 && bcrypt::verify(password, h).unwrap_or(false)
        }
    }
}

/// A new argon2id PHC string with the crate's default (OWASP) parameters and a random salt.
pub fn hash_argon2id(password: &[u8]) -> Result<String, String> {
    Argon2::default()
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip() {
        let phc = hash_argon2id(b"s3cret").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        let h = PasswordHash::parse(&phc).unwrap();
        assert!(verify(&h, b"s3cret"));
        assert!(!verify(&h, b"s3cret "));
        assert!(!verify(&h, b""));
    }

    #[test]
    fn bcrypt_2y_from_htpasswd() {
        // `htpasswd -nbB -C 5 alice wonderland`
        let h = PasswordHash::parse("$2y$05$1Mk7VI09gNxPCtdhvvXepuStlU9Ih5pmkxo3b3Ih3oFAggIgjSoQm")
            .unwrap();
        assert!(verify(&h, b"wonderland"));
        assert!(!verify(&h, b"Wonderland"));
    }

    #[test]
    fn bcrypt_2b_and_2a() {
        let hashed = bcrypt::hash("pw", 4).unwrap();
        assert!(hashed.starts_with("$2b$"));
        assert!(verify(&PasswordHash::parse(&hashed).unwrap(), b"pw"));
        let as_2a = hashed.replacen("$2b$", "$2a$", 1);
        assert!(verify(&PasswordHash::parse(&as_2a).unwrap(), b"pw"));
    }

    #[test]
    fn bcrypt_refuses_passwords_longer_than_72_bytes() {
        let long = vec![b'a'; 80];
        let hashed = bcrypt::hash(&long[..72], 4).unwrap();
        let h = PasswordHash::parse(&hashed).unwrap();
        assert!(verify(&h, &long[..72]));
        assert!(!verify(&h, &long));
    }

    #[test]
    fn malformed_hashes_are_refused_at_parse() {
        for bad in [
            "",
            "plain",
            "$argon2id$v=19$m=19456",
            "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$2y$05$short",
            "$2x$05$ZhTKv5.AovmNzDpy/E5kYuqxB4ykHumdfC5wjp0YOXasbQ7OMo6Dq",
            "$2y$99$ZhTKv5.AovmNzDpy/E5kYuqxB4ykHumdfC5wjp0YOXasbQ7OMo6Dq",
            "$apr1$abc$def",
        ] {
            assert!(
                PasswordHash::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }
}
