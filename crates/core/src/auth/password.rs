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
        // bcrypt reads at most 72 bytes. The hash is checked on those whatever the length, so
        // a long password costs the same work as any other (refusing it first would answer an
        // existing bcrypt user faster than an unknown one); only then is a password over 72
        // bytes refused rather than accepted for its prefix.
        PasswordHash::Bcrypt(h) => {
            let matched = bcrypt::verify(&password[..password.len().min(72)], h).unwrap_or(false);
            matched && password.len() <= 72
        }
    }
}

/// What decides the cost of verifying against `hash`: the algorithm and its parameters
/// (argon2id memory, iterations, lanes; bcrypt cost). Hashes of one shape take the same work.
pub fn shape(hash: &PasswordHash) -> String {
    match hash {
        PasswordHash::Argon2id(phc) => phc.split('$').take(4).collect::<Vec<_>>().join("$"),
        PasswordHash::Bcrypt(h) => h.get(..6).unwrap_or(h).to_string(),
    }
}

/// A hash of a random secret with the same shape as `like`: verifying a password against it
/// does the same work as against `like`, and never succeeds. `None` when the parameters cannot
/// be read back (not for hashes that passed config validation).
pub fn decoy_like(like: &PasswordHash) -> Option<PasswordHash> {
    let secret: [u8; 32] = rand::random();
    match like {
        PasswordHash::Argon2id(phc) => {
            let parsed = argon2::PasswordHash::new(phc).ok()?;
            let params = argon2::Params::try_from(&parsed).ok()?;
            let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
            let hashed = argon.hash_password(&secret).ok()?;
            Some(PasswordHash::Argon2id(hashed.to_string()))
        }
        PasswordHash::Bcrypt(h) => {
            let cost = h.get(4..6)?.parse().ok()?;
            let hashed = bcrypt::hash(secret, cost).ok()?;
            Some(PasswordHash::Bcrypt(hashed))
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
    fn a_decoy_has_the_shape_of_its_model_and_matches_nothing() {
        let argon = PasswordHash::parse(&hash_argon2id(b"pw").unwrap()).unwrap();
        let bcrypt = PasswordHash::Bcrypt(bcrypt::hash("pw", 5).unwrap());
        for like in [argon, bcrypt] {
            let decoy = decoy_like(&like).unwrap();
            assert_eq!(shape(&decoy), shape(&like));
            assert_ne!(decoy, like);
            assert!(!verify(&decoy, b"pw"));
            assert!(PasswordHash::parse(match &decoy {
                PasswordHash::Argon2id(s) | PasswordHash::Bcrypt(s) => s,
            })
            .is_ok());
        }
        assert_eq!(shape(&PasswordHash::Bcrypt("$2y$04$abc".into())), "$2y$04");
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
