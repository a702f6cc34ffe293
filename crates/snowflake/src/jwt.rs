//! Key-pair authentication: a JWT signed with the user's RSA private key
//! (RS256), as Snowflake documents it — issuer
//! `ACCOUNT.USER.SHA256:<base64 SHA-256 of the public key's DER>`, subject
//! `ACCOUNT.USER`, valid for an hour.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::signature::{SignatureEncoding, Signer};
use sha2::{Digest, Sha256};
use simplyload_core::{Error, ErrorKind, Result};

/// Reads a PEM private key: PKCS#8 (encrypted with `passphrase`, or not) or PKCS#1.
pub fn read_key(pem: &str, passphrase: Option<&str>) -> Result<RsaPrivateKey> {
    let bad = |what: String| {
        Error::new(ErrorKind::Auth, format!("Snowflake private key: {what}")).with_hint(
            "give an RSA private key in PEM (`openssl genrsa 2048 | openssl pkcs8 -topk8 -v2 aes256 -out rsa_key.p8`), with private_key_passphrase if it is encrypted",
        )
    };
    if pem.contains("ENCRYPTED PRIVATE KEY") {
        let pass = passphrase.ok_or_else(|| bad("the key is encrypted but no passphrase was given".into()))?;
        return RsaPrivateKey::from_pkcs8_encrypted_pem(pem, pass.as_bytes())
            .map_err(|_| bad("cannot decrypt it; is the passphrase right?".into()));
    }
    if pem.contains("BEGIN RSA PRIVATE KEY") {
        return RsaPrivateKey::from_pkcs1_pem(pem).map_err(|e| bad(format!("not a valid PKCS#1 key ({e})")));
    }
    if pem.contains("BEGIN PRIVATE KEY") {
        return RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| bad(format!("not a valid RSA PKCS#8 key ({e})")));
    }
    Err(bad("no PEM private key found".into()))
}

/// `SHA256:<base64>` of the key's public half, as `DESC USER` shows it.
pub fn fingerprint(key: &RsaPrivateKey) -> Result<String> {
    let der = key
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| Error::internal(format!("encoding the public key: {e}")))?;
    Ok(format!("SHA256:{}", STANDARD.encode(Sha256::digest(der.as_bytes()))))
}

/// `SHA256:<base64>` of a PEM public key, as Snowflake shows it in
/// `DESC USER … RSA_PUBLIC_KEY_FP`, so a customer can check the right key is set.
pub fn public_key_fingerprint(pem: &str) -> Result<String> {
    use rsa::pkcs8::DecodePublicKey;
    let key = rsa::RsaPublicKey::from_public_key_pem(pem.trim())
        .map_err(|e| Error::config(format!("not an RSA public key in PEM: {e}")))?;
    let der = key.to_public_key_der().map_err(|e| Error::internal(format!("encoding the public key: {e}")))?;
    Ok(format!("SHA256:{}", STANDARD.encode(Sha256::digest(der.as_bytes()))))
}

/// The account part Snowflake expects in the JWT: the locator before any
/// region or cloud suffix, upper case.
pub fn account_name(account: &str) -> String {
    account.split('.').next().unwrap_or(account).to_uppercase()
}

/// A JWT for `account` and `user`, issued at `now` (Unix seconds).
pub fn token(account: &str, user: &str, key: &RsaPrivateKey, now: u64) -> Result<String> {
    let qualified = format!("{}.{}", account_name(account), user.to_uppercase());
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
    let claims = serde_json::json!({
        "iss": format!("{qualified}.{}", fingerprint(key)?),
        "sub": qualified,
        "iat": now,
        "exp": now + 3600,
    });
    let signing_input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(key.clone());
    let signature = signer.sign(signing_input.as_bytes());
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    use rsa::signature::Verifier;

    fn key() -> RsaPrivateKey {
        RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap()
    }

    #[test]
    fn tokens_are_signed_for_the_account_and_user() {
        let k = key();
        let t = token("xy12345.us-east-1", "simplyload", &k, 1_700_000_000).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["sub"], "XY12345.SIMPLYLOAD");
        assert!(claims["iss"].as_str().unwrap().starts_with("XY12345.SIMPLYLOAD.SHA256:"));
        assert_eq!(claims["exp"], 1_700_003_600);
        let verifier = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(k.to_public_key());
        let sig = rsa::pkcs1v15::Signature::try_from(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().as_slice()).unwrap();
        verifier.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig).unwrap();
    }

    #[test]
    fn keys_are_read_in_every_pem_form_and_bad_ones_say_why() {
        let k = key();
        let plain = k.to_pkcs8_pem(LineEnding::LF).unwrap();
        assert_eq!(read_key(&plain, None).unwrap(), k);
        let enc = k.to_pkcs8_encrypted_pem(&mut rsa::rand_core::OsRng, b"s3cret", LineEnding::LF).unwrap();
        assert_eq!(read_key(&enc, Some("s3cret")).unwrap(), k);
        let e = read_key(&enc, Some("wrong")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Auth);
        assert!(e.to_string().contains("passphrase"), "{e}");
        assert!(!e.to_string().contains("wrong"));
        assert!(read_key(&enc, None).unwrap_err().to_string().contains("no passphrase"));
        assert!(read_key("not a key", None).unwrap_err().to_string().contains("no PEM private key"));
        let public = k.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
        assert_eq!(public_key_fingerprint(&public).unwrap(), fingerprint(&k).unwrap());
        assert!(public_key_fingerprint("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err());
    }
}
