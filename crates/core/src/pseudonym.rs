//! `hash_columns:` — pseudonymisation of personal data before it is staged.
//!
//! A hashed column's value `v` is stored as the lowercase hex SHA-256 of
//! the salt's bytes followed by `v`'s UTF-8 bytes. The same value always
//! gives the same text, so joins and counts on the column still work; the
//! clear value never reaches staging or the destination. Without the salt
//! a value cannot be checked against a guess list, which is why the salt
//! comes from the environment ([`SALT_ENV`]) and never from the config
//! file. This is pseudonymisation, not anonymisation: whoever holds the
//! salt can test a guess.
//!
//! The same transform is applied to the source's values when `reconcile`
//! compares them, so a hashed column still reconciles exactly.

use crate::error::{Error, Result};
use crate::schema::TableSpec;
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The environment variable that holds the salt.
pub const SALT_ENV: &str = "SIMPLYLOAD_HASH_SALT";

/// The salt, or a config error naming the variable.
pub fn salt() -> Result<String> {
    match std::env::var(SALT_ENV) {
        Ok(s) if !s.is_empty() => Ok(s),
        _ => Err(Error::config(format!("hash_columns needs a salt: {SALT_ENV} is not set")).with_hint(format!(
            "set {SALT_ENV} to a long random secret (e.g. `openssl rand -hex 32`), the same for every sync \
                 of the pipeline; changing it changes every hashed value"
        ))),
    }
}

/// The stored form of `value`.
pub fn pseudonym(salt: &str, value: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(value.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// `batch` with the table's hashed columns replaced by their pseudonyms
/// (unchanged when the table hashes none). Columns are found by their
/// destination name; NULL stays NULL.
pub fn apply(table: &TableSpec, batch: RecordBatch) -> Result<RecordBatch> {
    if table.hashed.is_empty() {
        return Ok(batch);
    }
    let salt = salt()?;
    let schema = batch.schema();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for name in &table.hashed {
        let Some((i, _)) = schema.column_with_name(name) else { continue };
        let Some(values) = columns[i].as_string_opt::<i32>() else {
            return Err(Error::internal(format!("{}: hashed column {name} is not text", table.stream)));
        };
        let hashed: StringArray =
            (0..values.len()).map(|r| (!values.is_null(r)).then(|| pseudonym(&salt, values.value(r)))).collect();
        columns[i] = Arc::new(hashed);
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_salted_sha256_in_hex() {
        assert_eq!(pseudonym("salt", "a@x"), pseudonym("salt", "a@x"));
        assert_ne!(pseudonym("salt", "a@x"), pseudonym("pepper", "a@x"));
        // SHA-256("abc"), the FIPS 180-2 test vector.
        assert_eq!(pseudonym("", "abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(pseudonym("a", "bc"), pseudonym("", "abc"), "the salt's bytes come first");
    }
}
