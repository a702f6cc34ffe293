//! Ordering versions (DESIGN.md §3): every staged row carries
//! `_simplyload_version`, a 96-bit number stored as DECIMAL(38,0), and a
//! merge applies a row only if its version is ≥ the stored one.
//!
//! A version is a 64-bit position times 2³² plus a 32-bit ordinal:
//! * `full_refresh` and `incremental` reads: the batch id and the row's
//!   ordinal in the batch;
//! * a change feed: the source's position of the change (Postgres: the
//!   commit's WAL position) and the change's place within it — the feed's
//!   position type makes it ([`crate::feed::FeedPosition::version`]);
//! * a snapshot read at a change feed's start: the start position with
//!   ordinal 0, so every change the feed delivers afterwards sorts above it.

/// `position × 2³² + ordinal`.
pub fn version(position: u64, ordinal: u32) -> i128 {
    ((position as i128) << 32) | ordinal as i128
}

/// Versions as decimal text in JSON (they do not fit a JSON number exactly).
pub mod text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &i128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i128, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|_| serde::de::Error::custom(format!("`{s}` is not a version (a decimal integer)")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_positions_win_then_later_ordinals() {
        let p = 0x16_B374_D848;
        assert!(version(p + 1, 0) > version(p, u32::MAX));
        assert!(version(p, 2) > version(p, 1));
        assert!(version(u64::MAX, u32::MAX) < 10i128.pow(38), "fits decimal(38,0)");
    }
}
