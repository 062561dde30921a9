//! Request signatures of the chat platforms that call the daemon: HMAC-SHA256 over the raw
//! body with a secret only the platform and the daemon know.
//!
//! - Slack: `X-Slack-Signature: v0=<hex>` of `v0:{X-Slack-Request-Timestamp}:{body}` with the
//!   app's signing secret; a timestamp more than five minutes from now is refused, so a
//!   captured request cannot be replayed later.
//!   <https://api.slack.com/authentication/verifying-requests-from-slack>
//! - LINE: `X-Line-Signature: <base64>` of the body with the channel secret.
//!   <https://developers.line.biz/en/docs/messaging-api/verify-webhook-signature/>
//!
//! Several channels of a type may be configured (two Slack apps, two LINE channels): the
//! request is tried against each secret, and the one that verifies names the channel the click
//! came through. aws-lc-rs computes the HMAC (the binary's one crypto provider) and
//! `hmac::verify` compares in constant time.

use aws_lc_rs::hmac;
use base64::Engine as _;

use super::Error;
use crate::secret::Secret;

/// The widest gap between a Slack request's timestamp and now, either way.
pub const SLACK_WINDOW_SECS: i64 = 300;

/// HMAC-SHA256 of `parts` (concatenated) under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    for p in parts {
        ctx.update(p);
    }
    ctx.sign().as_ref().to_vec()
}

fn verifies(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let msg: Vec<u8> = parts.concat();
    hmac::verify(&key, &msg, tag).is_ok()
}

/// Checks a Slack request: the timestamp within [`SLACK_WINDOW_SECS`] of `now_secs`, then the
/// signature against each `(channel, signing secret)`. Returns the channel whose secret signed.
pub fn slack<'a>(
    secrets: &'a [(String, Secret)],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<&'a str, Error> {
    let ts = timestamp.ok_or(Error::MissingHeader("X-Slack-Request-Timestamp"))?;
    let sig = signature.ok_or(Error::MissingHeader("X-Slack-Signature"))?;
    let at: i64 = ts
        .trim()
        .parse()
        .map_err(|_| Error::MissingHeader("X-Slack-Request-Timestamp"))?;
    let skew = now_secs.saturating_sub(at);
    if skew.abs() > SLACK_WINDOW_SECS {
        return Err(Error::Stale(skew));
    }
    let tag = sig
        .trim()
        .strip_prefix("v0=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(Error::BadSignature)?;
    let base: [&[u8]; 4] = [b"v0:", ts.as_bytes(), b":", body];
    secrets
        .iter()
        .find(|(_, secret)| verifies(secret.expose().as_bytes(), &base, &tag))
        .map(|(name, _)| name.as_str())
        .ok_or(Error::BadSignature)
}

/// Checks a LINE webhook's signature against each `(channel, channel secret)`. Returns the
/// channel whose secret signed.
pub fn line<'a>(
    secrets: &'a [(String, Secret)],
    signature: Option<&str>,
    body: &[u8],
) -> Result<&'a str, Error> {
    let sig = signature.ok_or(Error::MissingHeader("X-Line-Signature"))?;
    let tag = base64::engine::general_purpose::STANDARD
        .decode(sig.trim())
        .map_err(|_| Error::BadSignature)?;
    secrets
        .iter()
        .find(|(_, secret)| verifies(secret.expose().as_bytes(), &[body], &tag))
        .map(|(name, _)| name.as_str())
        .ok_or(Error::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> Vec<(String, Secret)> {
        vec![
            ("a".into(), Secret::new("first-secret")),
            ("b".into(), Secret::new("8f742231b10e8888abcd99yyyzzz85a5")),
        ]
    }

    /// Slack's own worked example: secret, timestamp, body and the signature it documents.
    /// <https://api.slack.com/authentication/verifying-requests-from-slack>
    #[test]
    fn slack_s_documented_example_verifies_and_names_the_channel() {
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        let s = secrets();
        assert_eq!(
            slack(&s, Some("1531420618"), Some(sig), body, 1_531_420_618 + 10).ok(),
            Some("b")
        );
    }

    #[test]
    fn slack_refuses_a_stale_or_future_timestamp_a_wrong_body_and_missing_headers() {
        let s = secrets();
        let now = 1_700_000_000;
        let sign = |ts: i64, body: &[u8]| {
            format!(
                "v0={}",
                hex::encode(hmac_sha256(
                    b"first-secret",
                    &[b"v0:", ts.to_string().as_bytes(), b":", body]
                ))
            )
        };
        let ok = sign(now - 299, b"x");
        assert_eq!(
            slack(&s, Some(&(now - 299).to_string()), Some(&ok), b"x", now).ok(),
            Some("a")
        );
        let old = sign(now - 301, b"x");
        assert!(matches!(
            slack(&s, Some(&(now - 301).to_string()), Some(&old), b"x", now),
            Err(Error::Stale(301))
        ));
        let future = sign(now + 301, b"x");
        assert!(matches!(
            slack(&s, Some(&(now + 301).to_string()), Some(&future), b"x", now),
            Err(Error::Stale(-301))
        ));
        assert!(matches!(
            slack(&s, Some(&(now - 299).to_string()), Some(&ok), b"y", now),
            Err(Error::BadSignature)
        ));
        assert!(matches!(
            slack(&s, Some(&now.to_string()), Some("v0=zz"), b"x", now),
            Err(Error::BadSignature)
        ));
        assert!(matches!(
            slack(&s, None, Some(&ok), b"x", now),
            Err(Error::MissingHeader(_))
        ));
    }

    #[test]
    fn line_verifies_the_base64_hmac_of_the_body_with_the_channel_secret() {
        let s = secrets();
        let body = br#"{"destination":"U1","events":[]}"#;
        let sig =
            base64::engine::general_purpose::STANDARD.encode(hmac_sha256(b"first-secret", &[body]));
        assert_eq!(line(&s, Some(&sig), body).ok(), Some("a"));
        assert!(matches!(
            line(&s, Some(&sig), b"{}"),
            Err(Error::BadSignature)
        ));
        assert!(matches!(
            line(&s, Some("not base64!"), body),
            Err(Error::BadSignature)
        ));
        assert!(matches!(line(&s, None, body), Err(Error::MissingHeader(_))));
    }
}
