//! The JWT parser and verifier (`auth::Key::verify`), as every `/api` request runs it on the
//! `Authorization: Bearer` value.
//!
//! Two inputs in one target:
//! - the bytes as a token (the attacker's view: no secret). Whatever passes must carry the
//!   key's own HS256 signature over its first two parts.
//! - the bytes as header and payload JSON, signed here with the key (byte 0 is the split
//!   point): reaches the claims parsing that only a correctly signed token gets to.
//!
//! Beyond "never panics": accepted claims are usable (non-empty subject, not expired at `now`),
//! and re-issuing them gives a token that verifies to the same claims.
#![no_main]

use aiops::auth::Key;
use aiops::config::Secret;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const SECRET: &str = "fuzz-secret-fuzz-secret-fuzz-secret!";
/// 2027-01-15: after the seeds' `iat`, before their `exp`.
const NOW: i64 = 1_800_000_000;

fn sign(input: &str) -> String {
    let mut mac = <Hmac<Sha256>>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(input.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

fn check(key: &Key, token: &str) {
    for now in [NOW, 0, i64::MIN, i64::MAX] {
        let Ok(claims) = key.verify(token, now) else {
            continue;
        };
        let (input, signature) = token.rsplit_once('.').expect("three parts");
        assert_eq!(
            signature,
            sign(input),
            "accepted a token the key did not sign"
        );
        assert!(!claims.sub.trim().is_empty(), "accepted an empty subject");
        assert!(
            claims.exp.saturating_add(30) > now,
            "accepted an expired token"
        );
        let reissued = key.issue(&claims).expect("accepted claims can be issued");
        assert_eq!(key.verify(&reissued, now), Ok(claims));
    }
}

fuzz_target!(|data: &[u8]| {
    let key = Key::new(Secret::new(SECRET)).expect("a 36-byte secret is long enough");
    if let Ok(token) = std::str::from_utf8(data) {
        check(&key, token);
    }
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (header, payload) = rest.split_at(usize::from(split).min(rest.len()));
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let token = format!("{input}.{}", sign(&input));
    check(&key, &token);
});
