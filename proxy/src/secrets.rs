//! Keeping a target's credentials out of what a target sends back. A target may echo the
//! `Authorization` it was sent (a 401 saying `invalid credentials: Bearer sk-…`); every text
//! caplab keeps from a target (error messages, probe answers) passes through `Redactor::redact`
//! before it is stored, served or logged, so a known secret becomes `***`.
//!
//! Known: the API key and its base64, the Basic `user:pass`, its base64 and percent-encoded
//! forms, and the password alone when it is 4 characters or more (a shorter one would erase
//! ordinary words). A secret the target transforms otherwise (hashed, cut, re-encoded) is not
//! recognised.

use reqwest::header::HeaderValue;

/// What replaces a secret.
pub const MASK: &str = "***";

/// Shortest secret replaced on its own (a password alone); whole credentials always are.
const MIN_ALONE: usize = 4;

/// The known secrets of one target's credentials.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    /// Longest first, so a secret inside another is never left half-replaced.
    secrets: Vec<String>,
}

impl Redactor {
    /// The secrets in the `Authorization` value caplab sends a target (`Bearer KEY` or `Basic B64`).
    pub fn for_auth(auth: Option<&HeaderValue>) -> Redactor {
        let Some(value) = auth.and_then(|v| v.to_str().ok()) else { return Redactor::default() };
        let mut secrets = vec![value.to_string()];
        let (scheme, rest) = value.split_once(' ').unwrap_or(("", value));
        let rest = rest.trim();
        secrets.push(rest.to_string());
        if scheme.eq_ignore_ascii_case("basic") {
            if let Some(plain) = base64_decode(rest).and_then(|b| String::from_utf8(b).ok()) {
                secrets.push(percent_encode(&plain));
                if let Some((user, pass)) = plain.split_once(':') {
                    if pass.len() >= MIN_ALONE {
                        secrets.push(pass.to_string());
                        secrets.push(percent_encode(pass));
                        secrets.push(base64(pass));
                    }
                    secrets.push(format!("{}:{}", percent_encode(user), percent_encode(pass)));
                }
                secrets.push(plain);
            }
        } else {
            secrets.push(base64(rest));
            secrets.push(percent_encode(rest));
        }
        secrets.retain(|s| s.len() >= MIN_ALONE);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    /// Whether there is nothing to hide.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with every known secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }
}

/// Standard base64 with padding (Basic auth's encoding).
pub fn base64(s: &str) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = s.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16) | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8) | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let digits: Vec<u8> = s.trim_end_matches('=').bytes().map(value).collect::<Option<_>>()?;
    let mut out = Vec::new();
    for chunk in digits.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &d)| n | (u32::from(d) << (18 - 6 * i)));
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

/// Percent-encoding of everything but unreserved characters (as a URL would carry it).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_both_ways() {
        assert_eq!(base64("Man"), "TWFu");
        assert_eq!(base64("Ma"), "TWE=");
        assert_eq!(base64("M"), "TQ==");
        for s in ["alice:s3cret", "M", "Ma", "Man", "user:p@ss"] {
            assert_eq!(base64_decode(&base64(s)).unwrap(), s.as_bytes());
        }
    }

    #[test]
    fn a_bearer_key_and_its_base64_are_hidden() {
        let r = Redactor::for_auth(Some(&HeaderValue::from_static("Bearer sk-live-12345")));
        let echoed = format!("HTTP 401: invalid credentials: Bearer sk-live-12345 (as base64: {})", base64("sk-live-12345"));
        assert_eq!(r.redact(&echoed), "HTTP 401: invalid credentials: *** (as base64: ***)");
        assert_eq!(r.redact("key sk-live-12345!"), "key ***!");
        assert_eq!(Redactor::for_auth(None).redact("Bearer x"), "Bearer x");
    }

    #[test]
    fn basic_credentials_in_every_form_are_hidden() {
        let header = format!("Basic {}", base64("alice:p@ss word"));
        let r = Redactor::for_auth(Some(&HeaderValue::from_str(&header).unwrap()));
        for echoed in [header.clone(), base64("alice:p@ss word"), "alice:p@ss word".into(), "alice:p%40ss%20word".into(), "p@ss word".into()] {
            let shown = r.redact(&format!("you sent {echoed}."));
            assert!(!shown.contains("p@ss") && !shown.contains("p%40ss") && !shown.contains("cDBzc") && shown.contains("***"), "{echoed} → {shown}");
        }
        // A short password alone is left (it would erase ordinary words); the pair never is.
        let short = Redactor::for_auth(Some(&HeaderValue::from_str(&format!("Basic {}", base64("bob:pw"))).unwrap()));
        assert_eq!(short.redact("bob:pw power"), "*** power");
    }
}
