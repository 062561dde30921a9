//! Redaction: every configured secret, and every fragment of one, removed from text that comes
//! from outside before it is recorded or shown (moved out of `dispatch.rs`, which re-exports it).

use super::Error;
use crate::secret::Secret;

/// Shortest fragment of a secret that is redacted on its own. Shorter pieces of a URL (`api`,
/// `v1`, `hooks`) are not credentials, and replacing them everywhere would garble messages;
/// anything longer may be a token and is replaced.
pub const MIN_FRAGMENT: usize = 6;

/// Removes every configured secret — and every fragment of one — from text that comes from
/// outside (an API's error body or description, a library's error) before it reaches a log,
/// `notification_attempts.detail` or `aiops notify test` output.
///
/// A receiver that refuses a message often echoes what it got: the path of a webhook or Slack
/// URL, one query parameter, the token part of a Telegram bot token. So each secret is
/// registered with its pieces: for a URL its user name, password, path, each path segment,
/// query string, each query value and fragment; for a token its `:`-separated parts; each
/// both as written and percent-decoded. Pieces shorter than [`MIN_FRAGMENT`] are left out
/// (except a URL's password). Longer pieces are replaced first, so a whole secret becomes one
/// `***`, not a mosaic of its parts.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    /// Longest first.
    fragments: Vec<String>,
}

impl Redactor {
    /// A redactor for these secrets.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Redactor {
        let mut fragments = Vec::new();
        for s in secrets {
            fragments_of(s.expose(), &mut fragments);
        }
        fragments.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        fragments.dedup();
        Redactor { fragments }
    }

    /// `text` with every secret and fragment replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for f in &self.fragments {
            if out.contains(f.as_str()) {
                out = out.replace(f.as_str(), "***");
            }
        }
        out
    }

    /// The error with every text that came from outside redacted (the channel's name and
    /// the status stay readable).
    pub fn error(&self, e: Error) -> Error {
        match e {
            Error::Status {
                channel,
                status,
                detail,
                retryable,
                retry_after,
            } => Error::Status {
                channel,
                status,
                detail: self.redact(&detail),
                retryable,
                retry_after,
            },
            Error::Transport { channel, detail } => Error::Transport {
                channel,
                detail: self.redact(&detail),
            },
            Error::Smtp { detail, retryable } => Error::Smtp {
                detail: self.redact(&detail),
                retryable,
            },
            Error::Invalid(m) => Error::Invalid(self.redact(&m)),
            e @ (Error::Timeout { .. } | Error::Store(_)) => e,
        }
    }
}

/// Adds `secret` and its fragments (see [`Redactor`]).
fn fragments_of(secret: &str, out: &mut Vec<String>) {
    fn add(out: &mut Vec<String>, piece: &str, min: usize) {
        if piece.len() >= min.max(1) {
            out.push(piece.to_string());
            if let Ok(decoded) = percent_encoding::percent_decode_str(piece).decode_utf8()
                && decoded != piece
                && decoded.len() >= min.max(1)
            {
                out.push(decoded.into_owned());
            }
            // Forms decode `+` as a space.
            if piece.contains('+') {
                out.push(piece.replace('+', " "));
            }
        }
    }
    let secret = secret.trim();
    if secret.is_empty() {
        return;
    }
    add(out, secret, 1);
    match reqwest::Url::parse(secret) {
        Ok(url) if url.has_host() => {
            add(out, url.username(), MIN_FRAGMENT);
            // A password is a credential whatever its length.
            if let Some(p) = url.password() {
                add(out, p, 3);
            }
            let path = url.path();
            if path != "/" {
                add(out, path, MIN_FRAGMENT);
                add(out, path.trim_start_matches('/'), MIN_FRAGMENT);
            }
            for seg in path.split('/') {
                add(out, seg, MIN_FRAGMENT);
            }
            if let Some(q) = url.query() {
                add(out, q, MIN_FRAGMENT);
                for pair in q.split('&') {
                    let value = pair.split_once('=').map_or(pair, |(_, v)| v);
                    add(out, value, MIN_FRAGMENT);
                }
            }
            if let Some(f) = url.fragment() {
                add(out, f, MIN_FRAGMENT);
            }
        }
        _ => {
            // A token (Telegram's `123456789:AAE…`, a channel token): its parts, too.
            for part in secret.split([':', '/', '.', '@']) {
                add(out, part, MIN_FRAGMENT);
            }
        }
    }
}

/// Replaces every configured secret, and every fragment of one, in a text from outside (see
/// [`Redactor`]; build one when redacting more than once).
pub fn redact(text: &str, secrets: &[Secret]) -> String {
    Redactor::new(secrets).redact(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(values: &[&str]) -> Vec<Secret> {
        values.iter().map(|v| Secret::new(*v)).collect()
    }

    #[test]
    fn a_receiver_echoing_the_path_or_one_segment_of_a_slack_url_shows_none_of_it() {
        let r = Redactor::new(&secrets(&[
            "https://hooks.slack.test/services/T0SECRET1/B0SECRET2/abcdEFGHijklMNOPqrstUVWX",
        ]));
        let echoed = r.redact(
            "no_team: /services/T0SECRET1/B0SECRET2/abcdEFGHijklMNOPqrstUVWX not found; hook abcdEFGHijklMNOPqrstUVWX, team T0SECRET1, JSON \\/services\\/T0SECRET1\\/B0SECRET2",
        );
        for piece in ["T0SECRET1", "B0SECRET2", "abcdEFGHijklMNOPqrstUVWX"] {
            assert!(!echoed.contains(piece), "{piece} in {echoed}");
        }
        assert!(
            echoed.starts_with("no_team: *** not found; hook ***, team ***"),
            "{echoed}"
        );
    }

    #[test]
    fn query_values_of_a_webhook_url_are_redacted_raw_and_decoded() {
        let r = Redactor::new(&secrets(&[
            "https://hooks.test/in/abc123def456?token=tok%2Fen-9876&team=x&sig=a+b+c+d+e",
        ]));
        let out = r.redact(
            "bad request: query token=tok%2Fen-9876&team=x; token tok/en-9876; sig a b c d e; path /in/abc123def456",
        );
        for piece in ["tok%2Fen-9876", "tok/en-9876", "a b c d e", "abc123def456"] {
            assert!(!out.contains(piece), "{piece} in {out}");
        }
        assert!(
            out.contains("bad request"),
            "the rest stays readable: {out}"
        );
    }

    #[test]
    fn the_token_part_of_a_telegram_bot_token_is_redacted_on_its_own() {
        let r = Redactor::new(&secrets(&["123456789:AAEhBOweik9ai2o4AAsecretPart"]));
        let out = r.redact("Unauthorized: token part AAEhBOweik9ai2o4AAsecretPart; bot id 123456789; path /bot123456789:AAEhBOweik9ai2o4AAsecretPart/sendMessage");
        assert!(!out.contains("AAEhBOweik9ai2o4AAsecretPart"), "{out}");
        assert!(!out.contains("123456789"), "{out}");
        assert!(
            out.contains("/bot***/sendMessage"),
            "the whole token is one ***: {out}"
        );
    }

    #[test]
    fn smtp_url_credentials_are_redacted_and_short_path_words_are_left_alone() {
        let r = Redactor::new(&secrets(&[
            "smtps://alerts%40corp.test:pw%21x@mail.test:465/api",
        ]));
        let out =
            r.redact("535 auth failed for alerts@corp.test (pw!x); see /api docs; email: smtp");
        assert!(!out.contains("alerts@corp.test"), "{out}");
        assert!(!out.contains("pw!x"), "{out}");
        assert!(out.contains("/api docs; email: smtp"), "{out}");
    }

    #[test]
    fn a_redacted_error_keeps_its_channel_and_status_readable() {
        let r = Redactor::new(&secrets(&[
            "http://127.0.0.1:9/webhook/s3cr3t-t0ken?key=qwerty123",
        ]));
        let e = r.error(Error::Status {
            channel: "webhook",
            status: 400,
            detail: "unknown hook /webhook/s3cr3t-t0ken?key=qwerty123 (key qwerty123)".into(),
            retryable: false,
            retry_after: None,
        });
        let shown = e.to_string();
        assert!(
            shown.starts_with("webhook: HTTP 400: unknown hook "),
            "{shown}"
        );
        assert!(
            !shown.contains("s3cr3t-t0ken") && !shown.contains("qwerty123"),
            "{shown}"
        );
    }
}
