//! Realistic values for the playground's rows (PR-1.3), shared by the baseline
//! (`seed`, COPY text) and the continuous activity (`run`, array parameters).
//!
//! The writers append to a `String` instead of returning one: the baseline
//! writes a million rows, and in a debug build `format!` and a fresh
//! allocation per value would cost more than Postgres spends parsing them.
//! No vocabulary entry holds a tab, newline or backslash, so only names and
//! emails need COPY escaping.

use rand::Rng;
use rand::rngs::SmallRng;

pub(crate) const FIRST: &[&str] = &[
    "Ada",
    "Grace",
    "Linus",
    "Margaret",
    "Alan",
    "Barbara",
    "Ken",
    "Frances",
    "Dennis",
    "Radia",
    "Edsger",
    "Hedy",
    "Donald",
    "Katherine",
    "Guido",
    "Sophie",
    "Yukihiro",
    "Anita",
    "Bjarne",
    "Shafi",
    "José",
    "Zoë",
    "Ngozi",
    "Søren",
    "Mei",
    "Aarav",
    "Chloé",
    "Mateus",
    "Fatima",
    "Björn",
];
pub(crate) const LAST: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Torvalds",
    "Hamilton",
    "Turing",
    "Liskov",
    "Thompson",
    "Allen",
    "Ritchie",
    "Perlman",
    "Dijkstra",
    "Lamarr",
    "Knuth",
    "Johnson",
    "van Rossum",
    "Wilson",
    "Matsumoto",
    "Borg",
    "Stroustrup",
    "Goldwasser",
    "García",
    "O'Brien",
    "Okonkwo",
    "Kierkegaard",
    "Zhang",
    "Patel",
    "Dubois",
    "Silva",
    "Haddad",
    "Åberg",
];
pub(crate) const DOMAINS: &[&str] = &["example.com", "mail.test", "corp.example", "shop.test", "inbox.example"];
pub(crate) const COUNTRIES: &[&str] = &["US", "DE", "FR", "GB", "IN", "BR", "JP", "NG", "SE", "ES", "CA", "AU"];
pub(crate) const PLANS: &[(&str, u32)] = &[("free", 60), ("pro", 30), ("team", 8), ("enterprise", 2)];
pub(crate) const CURRENCIES: &[(&str, u32)] = &[("USD", 60), ("EUR", 25), ("GBP", 10), ("JPY", 5)];
pub(crate) const EVENT_TYPES: &[(&str, u32)] = &[
    ("page_view", 50),
    ("click", 25),
    ("search", 10),
    ("add_to_cart", 7),
    ("purchase", 3),
    ("signup", 2),
    ("logout", 3),
];
const PATHS: &[&str] = &["/", "/pricing", "/docs", "/blog", "/cart", "/checkout", "/account", "/search"];
const REFERRERS: &[&str] = &["google", "direct", "newsletter", "twitter", "hacker_news", "partner"];
const BROWSERS: &[&str] = &["Firefox", "Chrome", "Safari", "Edge"];
/// Words for generated text columns (the columns `run --schema-changes` adds).
pub(crate) const WORDS: &[&str] = &[
    "spring", "summer", "autumn", "winter", "alpha", "beta", "gamma", "delta", "north", "south", "ios", "android",
    "web", "desktop", "partner", "welcome", "vip", "retry", "bulk", "gift",
];

pub(crate) fn weighted<'a>(rng: &mut SmallRng, items: &[(&'a str, u32)]) -> &'a str {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut n = rng.random_range(0..total);
    for (item, w) in items {
        if n < *w {
            return item;
        }
        n -= w;
    }
    items[0].0
}

pub(crate) fn pick<'a>(rng: &mut SmallRng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

/// COPY text format escaping.
pub(crate) fn esc(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// Appends a non-negative integer in decimal.
pub(crate) fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    push_ascii(out, &digits[i..]);
}

/// Appends ASCII bytes in one go (pushing char by char is slow in debug builds).
fn push_ascii(out: &mut String, bytes: &[u8]) {
    out.push_str(std::str::from_utf8(bytes).unwrap_or_default());
}

pub(crate) fn push_i64(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    push_u64(out, n.unsigned_abs());
}

fn put_2(buf: &mut [u8], at: usize, n: i64) {
    buf[at] = b'0' + (n / 10) as u8;
    buf[at + 1] = b'0' + (n % 10) as u8;
}

/// Appends epoch seconds as `YYYY-MM-DD HH:MM:SS+00` (proleptic Gregorian,
/// UTC, years 0–9999).
pub(crate) fn push_epoch(out: &mut String, secs: i64) {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    let y = y.clamp(0, 9999);
    let mut b = *b"0000-00-00 00:00:00+00";
    put_2(&mut b, 0, y / 100);
    put_2(&mut b, 2, y % 100);
    put_2(&mut b, 5, m);
    put_2(&mut b, 8, d);
    put_2(&mut b, 11, sod / 3600);
    put_2(&mut b, 14, sod % 3600 / 60);
    put_2(&mut b, 17, sod % 60);
    push_ascii(out, &b);
}

/// Appends an amount of cents as `123.45`.
pub(crate) fn push_cents(out: &mut String, cents: i64) {
    push_i64(out, cents / 100);
    let mut b = *b".00";
    put_2(&mut b, 1, (cents % 100).abs());
    push_ascii(out, &b);
}

/// Appends a random version-4 UUID.
pub(crate) fn push_uuid(out: &mut String, rng: &mut SmallRng) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let v: u128 = rng.random();
    let v = (v & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let mut b = [b'-'; 36];
    let mut at = 0;
    for i in 0..32 {
        if matches!(i, 8 | 12 | 16 | 20) {
            at += 1;
        }
        b[at] = HEX[((v >> (124 - 4 * i)) & 0xf) as usize];
        at += 1;
    }
    push_ascii(out, &b);
}

/// A user's name and email: `(email, full name)` appended to two strings.
/// The email's local part is the ASCII letters of the name plus `n`, so it
/// is unique for distinct `n`.
pub(crate) fn user_identity(rng: &mut SmallRng, n: u64, email: &mut String, name: &mut String) {
    let first = pick(rng, FIRST);
    let last = pick(rng, LAST);
    for c in first.chars().chain(std::iter::once('.')).chain(last.chars()) {
        if c.is_ascii_alphanumeric() || c == '.' {
            email.push(c.to_ascii_lowercase());
        }
    }
    push_u64(email, n);
    email.push('@');
    email.push_str(pick(rng, DOMAINS));
    name.push_str(first);
    name.push(' ');
    name.push_str(last);
}

/// An event's `properties` document (JSON text without tabs, newlines or
/// backslashes, so it needs no COPY escaping).
pub(crate) fn event_properties(rng: &mut SmallRng, kind: &str, out: &mut String) {
    out.push_str("{\"path\": \"");
    out.push_str(pick(rng, PATHS));
    out.push_str("\", \"referrer\": \"");
    out.push_str(pick(rng, REFERRERS));
    out.push_str("\", \"duration_ms\": ");
    push_u64(out, rng.random_range(5..30_000));
    out.push_str(", \"browser\": {\"name\": \"");
    out.push_str(pick(rng, BROWSERS));
    out.push_str("\", \"version\": ");
    push_u64(out, rng.random_range(90..130));
    out.push_str("}, \"tags\": [\"");
    out.push_str(kind);
    out.push_str("\", \"");
    for c in pick(rng, COUNTRIES).chars() {
        out.push(c.to_ascii_lowercase());
    }
    out.push_str("\"]}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn writes_numbers_and_money() {
        let mut s = String::new();
        push_u64(&mut s, 0);
        s.push(' ');
        push_i64(&mut s, -1234567890123);
        s.push(' ');
        push_cents(&mut s, 199);
        s.push(' ');
        push_cents(&mut s, 250_007);
        assert_eq!(s, "0 -1234567890123 1.99 2500.07");
    }

    #[test]
    fn writes_v4_uuids() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut s = String::new();
        push_uuid(&mut s, &mut rng);
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "{s}");
        assert_eq!(s.matches('-').count(), 4);
    }

    #[test]
    fn properties_are_json_without_copy_specials() {
        let mut rng = SmallRng::seed_from_u64(3);
        for _ in 0..100 {
            let mut s = String::new();
            event_properties(&mut rng, "click", &mut s);
            let v: serde_json::Value = serde_json::from_str(&s).expect("valid JSON");
            assert_eq!(v["tags"][0], "click");
            assert!(!s.contains(['\t', '\n', '\\']));
        }
    }
}
