//! Keeping secrets out of logs, error messages and `Debug` output.
//!
//! Three layers: what we build ourselves never holds a secret (a call is
//! named by method, host and path, never its query string or headers); logs
//! show query *keys* only; and text that came from elsewhere (an error body,
//! a transport error) passes through [`Redactor::redact`] before it is shown.

use reqwest::Url;

use crate::Secret;

/// Shown instead of a secret.
const MASK: &str = "***";

/// Shorter than this, a credential is not searched for in text: masking
/// every `abc` would garble messages, and such a value protects nothing.
const MIN_SECRET_LEN: usize = 4;

/// A token after `Bearer` / `Basic` shorter than this is an ordinary word
/// ("Basic plan"), not a credential.
const MIN_SCHEME_TOKEN_LEN: usize = 8;

/// Names whose value is masked wherever it appears as `name=value`,
/// `name: value` or `"name": "value"` (query strings, headers, JSON).
const SECRET_NAMES: &[&str] = &["sig", "key", "pwd", "pass", "auth", "code_verifier"];

/// Parts of names that make them secret (`X-Amz-Signature`, `access_token`,
/// `client_secret`, `sessionId`, …).
const SECRET_NAME_PARTS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "signature",
    "credential",
    "authorization",
    "cookie",
    "session",
    "api_key",
    "apikey",
    "api-key",
    "access_key",
    "private_key",
    "assertion",
];

/// Names whose value runs to the end of the line (or quote), not the next
/// space: `Authorization: Bearer x`, `Cookie: a=b; c=d`.
const LINE_VALUED_NAMES: &[&str] = &["authorization", "proxy-authorization", "cookie", "set-cookie"];

/// Masks known secret values and anything that looks like a credential.
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    secrets: Vec<Secret>,
}

impl Redactor {
    pub(crate) fn add(&mut self, secret: &Secret) {
        if secret.expose().len() >= MIN_SECRET_LEN && !self.secrets.contains(secret) {
            self.secrets.push(secret.clone());
        }
    }

    pub(crate) fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            out = out.replace(secret.expose(), MASK);
        }
        mask_named_values(&mask_auth_schemes(&out))
    }
}

/// A URL as it may be shown: no user info, no query, no fragment.
pub(crate) fn url_for_display(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => format!("{}://{}{}", u.scheme(), host_and_port(&u), u.path()),
        Err(_) => "(not a valid URL)".to_string(),
    }
}

/// `api.stripe.com`, or `127.0.0.1:8080` when the port is not the default.
pub(crate) fn host_and_port(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// The query's keys, comma separated, without their values.
pub(crate) fn query_keys(url: &Url) -> String {
    let mut keys: Vec<String> = Vec::new();
    for (k, _) in url.query_pairs() {
        if !keys.iter().any(|seen| *seen == k) {
            keys.push(k.into_owned());
        }
    }
    keys.join(",")
}

/// The start of a body as one line: whitespace collapsed, at most `max`
/// characters, `…` when cut.
pub(crate) fn excerpt(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    let mut count = 0;
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
            count += 1;
        }
        for c in word.chars() {
            if count >= max {
                out.push('…');
                return out;
            }
            out.push(c);
            count += 1;
        }
    }
    out
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'
}

fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_NAMES.contains(&lower.as_str()) || SECRET_NAME_PARTS.iter().any(|part| lower.contains(part))
}

/// `Bearer abc…` / `Basic dXNl…` → `Bearer ***`.
fn mask_auth_schemes(text: &str) -> String {
    let mut out = text.to_string();
    // Each round replaces a token of 8 or more characters by `***`, so it ends.
    while let Some(next) = mask_first_scheme(&out) {
        out = next;
    }
    out
}

fn mask_first_scheme(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    for scheme in ["bearer ", "basic "] {
        for (pos, _) in lower.match_indices(scheme) {
            if pos > 0 && is_name_byte(bytes[pos - 1]) {
                continue;
            }
            let start = pos + scheme.len();
            let end = token_end(bytes, start, false);
            if end - start >= MIN_SCHEME_TOKEN_LEN {
                return Some(format!("{}{MASK}{}", &text[..start], &text[end..]));
            }
        }
    }
    None
}

/// Where a value starting at `start` ends: at whitespace or punctuation that
/// closes it; a line-valued one only at the end of the line or a quote.
fn token_end(bytes: &[u8], start: usize, line_valued: bool) -> usize {
    let mut end = start;
    while end < bytes.len() {
        let b = bytes[end];
        let stop = if line_valued {
            matches!(b, b'\n' | b'\r' | b'"' | b'\'')
        } else {
            b.is_ascii_whitespace() || matches!(b, b'&' | b'"' | b'\'' | b',' | b';' | b'}' | b']' | b')' | b'<' | b'>')
        };
        if stop {
            break;
        }
        end += 1;
    }
    end
}

/// After a name: an optional closing quote, `=` or `:`, spaces and an
/// optional opening quote. Returns where the value starts.
fn value_start(bytes: &[u8], mut k: usize) -> Option<usize> {
    if k < bytes.len() && matches!(bytes[k], b'"' | b'\'') {
        k += 1;
    }
    while k < bytes.len() && bytes[k] == b' ' {
        k += 1;
    }
    if k >= bytes.len() || !matches!(bytes[k], b'=' | b':') {
        return None;
    }
    k += 1;
    while k < bytes.len() && bytes[k] == b' ' {
        k += 1;
    }
    if k < bytes.len() && matches!(bytes[k], b'"' | b'\'') {
        k += 1;
    }
    Some(k)
}

/// `token=abc` → `token=***`, `"client_secret": "x"` → `"client_secret": "***"`.
fn mask_named_values(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut copied, mut i) = (0, 0);
    while i < bytes.len() {
        if !is_name_byte(bytes[i]) || (i > 0 && is_name_byte(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < bytes.len() && is_name_byte(bytes[j]) {
            j += 1;
        }
        let name = &text[i..j];
        i = j;
        if !is_secret_name(name) {
            continue;
        }
        let Some(start) = value_start(bytes, j) else { continue };
        let line_valued = LINE_VALUED_NAMES.contains(&name.to_ascii_lowercase().as_str());
        let end = token_end(bytes, start, line_valued);
        if end > start {
            out.push_str(&text[copied..start]);
            out.push_str(MASK);
            copied = end;
            i = end;
        }
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(secrets: &[&str]) -> Redactor {
        let mut r = Redactor::default();
        for s in secrets {
            r.add(&Secret::new(*s));
        }
        r
    }

    #[test]
    fn known_secrets_and_credentials_are_masked() {
        let r = redactor(&["sk_test_abcdef123"]);
        let cases = [
            ("invalid key sk_test_abcdef123 given", "invalid key *** given"),
            ("Authorization: Bearer eyJhbGciOi.x.y", "Authorization: ***"),
            ("header was Bearer eyJhbGciOi.x.y, refused", "header was Bearer ***, refused"),
            (
                "https://b.s3.amazonaws.com/k?X-Amz-Signature=deadbeef&X-Amz-Expires=60",
                "https://b.s3.amazonaws.com/k?X-Amz-Signature=***&X-Amz-Expires=60",
            ),
            ("blob?sv=2020&sig=abc%2Fdef&se=1", "blob?sv=2020&sig=***&se=1"),
            (r#"{"access_token": "00Dxx!AQ", "id": 1}"#, r#"{"access_token": "***", "id": 1}"#),
            (r#"{"client_secret":"shh"}"#, r#"{"client_secret":"***"}"#),
            ("Cookie: sid=1; other=2\nnext", "Cookie: ***\nnext"),
            ("token=abc&limit=10", "token=***&limit=10"),
        ];
        for (input, want) in cases {
            assert_eq!(r.redact(input), want, "{input}");
        }
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        let r = redactor(&["abc"]); // too short to search for
        for text in [
            r#"{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such customer: 'cus_1'"}}"#,
            "Basic plan is not available; abc",
            r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#,
            "Größe überschritten: 10 MB",
        ] {
            assert_eq!(r.redact(text), text);
        }
    }

    #[test]
    fn excerpts_are_one_short_line() {
        assert_eq!(excerpt(b"  a\n  b\tc ", 10), "a b c");
        assert_eq!(excerpt("ééééé".as_bytes(), 3), "ééé…");
        assert_eq!(excerpt(b"", 3), "");
    }

    #[test]
    fn urls_are_shown_without_query_or_user() {
        assert_eq!(url_for_display("https://u:pw@h.example:8443/a/b?token=x#f"), "https://h.example:8443/a/b");
        let url = Url::parse("http://h/p?limit=1&token=s&limit=2").unwrap();
        assert_eq!(query_keys(&url), "limit,token");
    }
}
