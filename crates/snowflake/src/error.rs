//! Snowflake's error codes → SimplyLoad's error kinds, with what to fix.
//!
//! A failed request answers `{"success": false, "code": "002003", "message":
//! "...", "data": {"errorCode": "002003", "sqlState": "42S02"}}` (HTTP 200
//! for SQL errors; 4xx/5xx for protocol and server errors).

use simplyload_core::{Error, ErrorKind};

/// The error for a failed Snowflake response.
pub fn classify(code: &str, message: &str, http_status: Option<u16>) -> Error {
    let msg = if message.starts_with(code) { message.to_owned() } else { format!("{code}: {message}") };
    let (kind, hint): (ErrorKind, Option<&str>) = match code {
        // Login: wrong password, bad or unknown key, locked or unknown user.
        "390100" | "390101" | "390102" | "390144" | "390181" | "390186" | "394304" | "390318" => (
            ErrorKind::Auth,
            Some(
                "check the destination's user and password (or private_key_path and the public key set on the user with ALTER USER … SET RSA_PUBLIC_KEY)",
            ),
        ),
        "390189" | "390190" => {
            (ErrorKind::Permission, Some("grant the role to the user: GRANT ROLE <role> TO USER <user>;"))
        }
        "390201" => (
            ErrorKind::NotFound,
            Some("check the destination's database, or GRANT USAGE ON DATABASE <database> TO ROLE <role>;"),
        ),
        "390202" => (
            ErrorKind::NotFound,
            Some("check the destination's schema, or GRANT USAGE ON SCHEMA <database>.<schema> TO ROLE <role>;"),
        ),
        "390203" | "390204" | "000606" => (
            ErrorKind::Permission,
            Some(
                "check the destination's warehouse, and GRANT USAGE ON WAREHOUSE <warehouse> TO ROLE <role>; (`simplyload setup-sql snowflake` prints the whole script)",
            ),
        ),
        // Snowflake says "does not exist or not authorized" for both.
        "002003" | "002043" => (
            ErrorKind::NotFound,
            Some(
                "if it exists, the role lacks a grant on it: GRANT USAGE ON DATABASE <database> TO ROLE <role>; GRANT USAGE ON SCHEMA <database>.<schema> TO ROLE <role>; (`simplyload setup-sql snowflake` prints every GRANT SimplyLoad needs)",
            ),
        ),
        "003001" | "003011" | "003540" => (
            ErrorKind::Permission,
            Some(
                "the role lacks a privilege; SimplyLoad needs: GRANT USAGE ON DATABASE <database> TO ROLE <role>; GRANT USAGE, CREATE TABLE, CREATE STAGE ON SCHEMA <database>.<schema> TO ROLE <role>; (`simplyload setup-sql snowflake` prints the whole script)",
            ),
        ),
        // Session expired or unknown: log in again.
        "390112" | "390114" | "390104" | "390103" => (ErrorKind::Transient, None),
        // Queued too long, timed out, cancelled by the service, internal error.
        "000625" | "000630" | "000604" | "000605" | "261000" | "390400" => (ErrorKind::Transient, None),
        _ => match http_status {
            Some(429) | Some(500..=599) => (ErrorKind::Transient, None),
            Some(401) | Some(403) => (ErrorKind::Auth, None),
            _ => (ErrorKind::Internal, None),
        },
    };
    let e = Error::new(kind, format!("Snowflake: {msg}"));
    match hint {
        Some(h) => e.with_hint(h),
        None => e,
    }
}

/// Whether the session must log in again before retrying.
pub fn needs_login(code: &str) -> bool {
    matches!(code, "390112" | "390114" | "390104" | "390103")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_codes_map_to_kinds_with_fixes() {
        let e = classify("390100", "Incorrect username or password was specified.", Some(200));
        assert_eq!(e.kind(), ErrorKind::Auth);
        assert!(e.to_string().contains("390100: Incorrect username or password"), "{e}");
        let e = classify(
            "002003",
            "002003 (42S02): SQL compilation error:\nTable 'T' does not exist or not authorized.",
            None,
        );
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.hint().unwrap().contains("setup-sql snowflake"));
        assert_eq!(
            classify("000606", "No active warehouse selected in the current session.", None).kind(),
            ErrorKind::Permission
        );
        assert_eq!(
            classify("003001", "Insufficient privileges to operate on schema 'S'", None).kind(),
            ErrorKind::Permission
        );
        assert_eq!(classify("390114", "Authentication token has expired.", Some(200)).kind(), ErrorKind::Transient);
        assert!(needs_login("390114") && !needs_login("002003"));
        assert_eq!(classify("999999", "boom", Some(503)).kind(), ErrorKind::Transient);
        assert_eq!(classify("001003", "SQL compilation error: syntax error", Some(200)).kind(), ErrorKind::Internal);
    }
}
