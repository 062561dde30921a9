//! Console users' credentials: what a user name may be, and passwords as argon2id hashes (PHC
//! strings, `$argon2id$v=19$m=…`).
//!
//! RustCrypto's `argon2` crate rather than the binary's TLS provider: aws-lc-rs has no Argon2,
//! and argon2id is what OWASP recommends for passwords. The parameters are the crate's defaults
//! (m = 19 MiB, t = 2, p = 1: OWASP's first recommended setting); each hash stores its own
//! parameters, so raising them later keeps old hashes verifiable.
//!
//! Hashing costs tens of milliseconds of CPU on purpose: callers on the async runtime run
//! [`hash`] and [`verify`] in `spawn_blocking`.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// Fewest characters a password may have (NIST SP 800-63B's minimum for a chosen password).
pub const MIN_CHARS: usize = 8;
/// Most bytes a password may have: hashing cost grows with the input, and a sign-in form must
/// not become a way to make the daemon hash megabytes.
pub const MAX_BYTES: usize = 1024;

/// Longest user name: names are typed at sign-in and shown in the header and the audit log.
pub const MAX_NAME_BYTES: usize = 64;

/// Whether `name` may be a console user's: 1 to [`MAX_NAME_BYTES`] of ASCII letters, digits and
/// `.`, `_`, `@`, `-`, starting with a letter or digit (so it reads the same in a log line, an
/// approver's `console:<name>` and a shell command).
pub fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadName(name.chars().take(80).collect()))
    }
}

/// Why a user name or password cannot be set.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not a valid user name (see [`check_name`]).
    #[error(
        "invalid user name {0:?}: 1 to {MAX_NAME_BYTES} letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
    )]
    BadName(String),
    /// Shorter than [`MIN_CHARS`].
    #[error("the password is too short: at least {MIN_CHARS} characters")]
    TooShort,
    /// Longer than [`MAX_BYTES`].
    #[error("the password is too long: at most {MAX_BYTES} bytes")]
    TooLong,
    /// The hasher failed (no random salt); never names the password.
    #[error("could not hash the password: {0}")]
    Hash(String),
}

/// Whether `password` may be set: [`MIN_CHARS`] characters to [`MAX_BYTES`] bytes.
pub fn check_password(password: &str) -> Result<(), Error> {
    if password.chars().count() < MIN_CHARS {
        return Err(Error::TooShort);
    }
    if password.len() > MAX_BYTES {
        return Err(Error::TooLong);
    }
    Ok(())
}

/// The argon2id hash (PHC string) of `password`, with a fresh random salt.
pub fn hash(password: &str) -> Result<String, Error> {
    check_password(password)?;
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Hash(e.to_string()))
}

/// A hash of a password nobody has, verified when the user name is unknown (or its stored hash
/// unreadable) so that the answer takes as long as for a wrong password: the time of a sign-in
/// must not tell which user names exist.
static DUMMY: LazyLock<String> = LazyLock::new(|| {
    let mut random = [0u8; 24];
    aws_lc_rs::rand::fill(&mut random).expect("the system's random source works");
    hash(&hex::encode(random)).expect("a 48-character password hashes")
});

/// Whether `password` is the one hashed in `stored`; `None` (no such user) does the same work
/// against a dummy hash and answers false.
pub fn verify(password: &str, stored: Option<&str>) -> bool {
    // An over-long password is refused, but only after the same work as any other.
    let presented = if password.len() > MAX_BYTES {
        ""
    } else {
        password
    };
    let parsed = stored.and_then(|s| PasswordHash::new(s).ok());
    let ok = match &parsed {
        Some(h) => Argon2::default()
            .verify_password(presented.as_bytes(), h)
            .is_ok(),
        None => {
            let dummy = PasswordHash::new(&DUMMY).expect("the dummy hash parses");
            let _ = Argon2::default().verify_password(presented.as_bytes(), &dummy);
            false
        }
    };
    ok && password.len() <= MAX_BYTES
}

/// Computes the dummy hash now, so that the first sign-in of an unknown name is not the only
/// one that is slower (it would then tell that the name is unknown).
pub fn warm_up() {
    LazyLock::force(&DUMMY);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_argon2id_salted_and_verifies_only_its_own_password() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(!h.contains("correct horse"));
        assert_ne!(hash("correct horse").unwrap(), h, "a fresh salt each time");
        assert!(verify("correct horse", Some(&h)));
        assert!(!verify("correct horsE", Some(&h)));
        assert!(!verify("", Some(&h)));
    }

    #[test]
    fn unknown_users_and_unreadable_hashes_never_verify() {
        assert!(!verify("anything at all", None));
        assert!(!verify("anything at all", Some("!test-only, no password")));
    }

    #[test]
    fn user_names_are_short_plain_ascii() {
        for good in ["alice", "a", "ops.bot", "j_doe-2", "me@example.com"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-x",
            ".x",
            "a b",
            "ali\nce",
            "爱丽丝",
            "a:b",
            &"x".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords_too_short_or_too_long_are_refused() {
        assert!(matches!(hash("seven77"), Err(Error::TooShort)));
        assert!(matches!(hash("密碼密碼密碼密"), Err(Error::TooShort)));
        assert!(hash("密碼密碼密碼密碼").is_ok(), "characters, not bytes");
        assert!(matches!(
            hash(&"x".repeat(MAX_BYTES + 1)),
            Err(Error::TooLong)
        ));
        let h = hash("correct horse").unwrap();
        let long = format!("correct horse{}", " ".repeat(MAX_BYTES));
        assert!(!verify(&long, Some(&h)));
    }
}
