//! Client-side encryption of files a PUT uploads to an internal stage.
//!
//! When a PUT's response carries `data.encryptionMaterial`, the stage expects
//! every file encrypted the way Snowflake's own drivers do it
//! (snowflake-connector-python `encryption_util.py`, gosnowflake
//! `encrypt_util.go`):
//!
//! 1. the master key is base64-decoded `queryStageMasterKey` (16, 24 or 32
//!    bytes; Snowflake normally sends 16);
//! 2. a random file key of the same size and a random 16-byte IV are made;
//! 3. the file is encrypted with AES-CBC (file key, IV), PKCS#7-padded;
//! 4. the file key is encrypted ("wrapped") with AES-ECB under the master key,
//!    PKCS#7-padded (a 16-byte key becomes 32 bytes);
//! 5. the wrapped key, the IV and a "material description"
//!    (`{"queryId":…,"smkId":"…","keySize":"128"}`, all values strings) travel
//!    as object metadata, with `sfc-digest`: base64 of the SHA-256 of the
//!    file *before* encryption (after compression, if the file is compressed).
//!
//! On S3 the metadata goes in as user metadata (`x-amz-meta-…`, see
//! [`s3_metadata`]); on GCS as `x-goog-meta-…` headers with the key and IV
//! inside a JSON document (see [`gcs_headers`]).
//!
//! The master key never appears in `Debug` output or in error messages.

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockCipher, BlockDecrypt, BlockDecryptMut, BlockEncrypt, BlockEncryptMut, KeyInit, KeyIvInit};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest as _, Sha256};
use simplyload_core::{Error, Result};

/// AES block size, and the size of the IV.
const BLOCK: usize = 16;

/// S3 user-metadata keys (without the `x-amz-meta-` prefix S3 adds on the wire).
pub const S3_META_PREFIX: &str = "x-amz-meta-";
pub const S3_KEY: &str = "x-amz-key";
pub const S3_IV: &str = "x-amz-iv";
pub const S3_MATDESC: &str = "x-amz-matdesc";
/// The plaintext digest's metadata key, on every cloud (S3 user metadata; GCS after `x-goog-meta-`).
pub const SFC_DIGEST: &str = "sfc-digest";

/// GCS header names (full names, sent as request headers).
pub const GCS_ENCRYPTION_DATA: &str = "x-goog-meta-encryptiondata";
pub const GCS_MATDESC: &str = "x-goog-meta-matdesc";
pub const GCS_SFC_DIGEST: &str = "x-goog-meta-sfc-digest";

/// What a PUT response's `encryptionMaterial` holds.
#[derive(Clone, serde::Deserialize)]
pub struct EncryptionMaterial {
    /// The stage master key, base64. Secret: never logged.
    #[serde(rename = "queryStageMasterKey")]
    pub master_key_b64: String,
    #[serde(rename = "queryId")]
    pub query_id: String,
    /// Snowflake sends a number; some tools and mocks send it as a string.
    #[serde(rename = "smkId", deserialize_with = "smk_id_from_number_or_string")]
    pub smk_id: i64,
}

impl std::fmt::Debug for EncryptionMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptionMaterial")
            .field("master_key_b64", &"***")
            .field("query_id", &self.query_id)
            .field("smk_id", &self.smk_id)
            .finish()
    }
}

fn smk_id_from_number_or_string<'de, D>(deserializer: D) -> std::result::Result<i64, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum NumberOrString {
        Number(i64),
        String(String),
    }
    match <NumberOrString as serde::Deserialize>::deserialize(deserializer)? {
        NumberOrString::Number(n) => Ok(n),
        NumberOrString::String(s) => {
            s.trim().parse().map_err(|_| serde::de::Error::custom(format!("smkId {s:?} is not an integer")))
        }
    }
}

/// An encrypted file body and what must travel with it.
#[derive(Clone)]
pub struct Encrypted {
    /// The ciphertext: the file AES-CBC-encrypted under the file key, PKCS#7-padded.
    pub body: Vec<u8>,
    /// The file key, AES-ECB-encrypted under the master key, base64.
    pub key_b64: String,
    /// The CBC initialisation vector, base64.
    pub iv_b64: String,
    /// The material description JSON: `{"queryId":"…","smkId":"…","keySize":"…"}`.
    pub matdesc: String,
    /// base64(SHA-256(plaintext)): the `sfc-digest` metadata.
    pub digest_b64: String,
}

impl std::fmt::Debug for Encrypted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encrypted")
            .field("body_len", &self.body.len())
            .field("key_b64", &self.key_b64)
            .field("iv_b64", &self.iv_b64)
            .field("matdesc", &self.matdesc)
            .field("digest_b64", &self.digest_b64)
            .finish()
    }
}

/// The AES variant for a key length.
#[derive(Clone, Copy)]
enum Aes {
    A128,
    A192,
    A256,
}

impl Aes {
    fn for_len(len: usize) -> Option<Aes> {
        match len {
            16 => Some(Aes::A128),
            24 => Some(Aes::A192),
            32 => Some(Aes::A256),
            _ => None,
        }
    }
}

/// The decoded master key. The message never contains the key or any part of it.
fn master_key(material: &EncryptionMaterial) -> Result<(Vec<u8>, Aes)> {
    let key = B64.decode(material.master_key_b64.trim()).map_err(|_| {
        Error::data(format!(
            "the stage master key (queryStageMasterKey) of query {} is not valid base64",
            material.query_id
        ))
    })?;
    let aes = Aes::for_len(key.len()).ok_or_else(|| {
        Error::data(format!(
            "the stage master key (queryStageMasterKey) of query {} is {} bytes long; expected 16, 24 or 32",
            material.query_id,
            key.len()
        ))
    })?;
    Ok((key, aes))
}

fn random_bytes(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf)
        .map_err(|e| Error::internal(format!("could not get random bytes from the operating system: {e}")))
}

/// The PKCS#7-padded length of `len` bytes: always at least one byte of padding.
fn padded_len(len: usize) -> usize {
    (len / BLOCK + 1) * BLOCK
}

/// `sfc-digest`: base64 of the SHA-256 of the bytes as uploaded before
/// encryption. Unencrypted uploads carry it too.
pub fn digest_b64(plaintext: &[u8]) -> String {
    B64.encode(Sha256::digest(plaintext))
}

/// Encrypts a file for a stage with a fresh random file key and IV.
pub fn encrypt(material: &EncryptionMaterial, plaintext: &[u8]) -> Result<Encrypted> {
    let (master, _) = master_key(material)?;
    let mut file_key = vec![0u8; master.len()];
    random_bytes(&mut file_key)?;
    let mut iv = [0u8; BLOCK];
    random_bytes(&mut iv)?;
    encrypt_with(material, plaintext, &file_key, &iv)
}

/// Encrypts with a given file key (the master key's length) and IV: deterministic, for tests.
pub fn encrypt_with(
    material: &EncryptionMaterial,
    plaintext: &[u8],
    file_key: &[u8],
    iv: &[u8; 16],
) -> Result<Encrypted> {
    let (master, master_aes) = master_key(material)?;
    if file_key.len() != master.len() {
        return Err(Error::internal(format!(
            "the file key is {} bytes long but the stage master key is {}: they must be the same size",
            file_key.len(),
            master.len()
        )));
    }
    let body = match master_aes {
        Aes::A128 => cbc_encrypt::<aes::Aes128>(file_key, iv, plaintext)?,
        Aes::A192 => cbc_encrypt::<aes::Aes192>(file_key, iv, plaintext)?,
        Aes::A256 => cbc_encrypt::<aes::Aes256>(file_key, iv, plaintext)?,
    };
    let wrapped = match master_aes {
        Aes::A128 => ecb_encrypt::<aes::Aes128>(&master, file_key)?,
        Aes::A192 => ecb_encrypt::<aes::Aes192>(&master, file_key)?,
        Aes::A256 => ecb_encrypt::<aes::Aes256>(&master, file_key)?,
    };
    Ok(Encrypted {
        body,
        key_b64: B64.encode(wrapped),
        iv_b64: B64.encode(iv),
        matdesc: matdesc(material, master.len() * 8)?,
        digest_b64: digest_b64(plaintext),
    })
}

/// Decrypts a file encrypted for a stage (ours, or one Snowflake wrote, given
/// its key and IV metadata). Does not check `digest_b64`; compare
/// [`digest_b64`] of the result with it where that matters.
pub fn decrypt(material: &EncryptionMaterial, e: &Encrypted) -> Result<Vec<u8>> {
    let (master, master_aes) = master_key(material)?;
    let wrapped = B64
        .decode(e.key_b64.trim())
        .map_err(|_| Error::data("the encrypted file key (x-amz-key) is not valid base64"))?;
    let iv: [u8; BLOCK] = B64
        .decode(e.iv_b64.trim())
        .ok()
        .and_then(|iv| iv.try_into().ok())
        .ok_or_else(|| Error::data("the file's IV (x-amz-iv) is not 16 bytes of base64"))?;
    let file_key = match master_aes {
        Aes::A128 => ecb_decrypt::<aes::Aes128>(&master, &wrapped)?,
        Aes::A192 => ecb_decrypt::<aes::Aes192>(&master, &wrapped)?,
        Aes::A256 => ecb_decrypt::<aes::Aes256>(&master, &wrapped)?,
    };
    match Aes::for_len(file_key.len()) {
        Some(Aes::A128) => cbc_decrypt::<aes::Aes128>(&file_key, &iv, &e.body),
        Some(Aes::A192) => cbc_decrypt::<aes::Aes192>(&file_key, &iv, &e.body),
        Some(Aes::A256) => cbc_decrypt::<aes::Aes256>(&file_key, &iv, &e.body),
        None => Err(Error::data(format!(
            "the file key unwrapped to {} bytes, not an AES key size: wrong stage master key?",
            file_key.len()
        ))),
    }
}

/// S3 user metadata for an encrypted upload: (key without the `x-amz-meta-`
/// prefix, value). Send each as the header `x-amz-meta-<key>`.
pub fn s3_metadata(e: &Encrypted) -> Vec<(String, String)> {
    vec![
        (SFC_DIGEST.to_owned(), e.digest_b64.clone()),
        (S3_IV.to_owned(), e.iv_b64.clone()),
        (S3_KEY.to_owned(), e.key_b64.clone()),
        (S3_MATDESC.to_owned(), e.matdesc.clone()),
    ]
}

/// GCS request headers for an encrypted upload (full header names).
pub fn gcs_headers(e: &Encrypted) -> Vec<(String, String)> {
    // The drivers send these constants whatever the key size (even for
    // 128-bit keys): "AES_CBC_256", and the Java SDK's library tag.
    let encryption_data = serde_json::json!({
        "EncryptionMode": "FullBlob",
        "WrappedContentKey": {
            "KeyId": "symmKey1",
            "EncryptedKey": e.key_b64,
            "Algorithm": "AES_CBC_256",
        },
        "EncryptionAgent": {
            "Protocol": "1.0",
            "EncryptionAlgorithm": "AES_CBC_256",
        },
        "ContentEncryptionIV": e.iv_b64,
        "KeyWrappingMetadata": {
            "EncryptionLibrary": "Java 5.3.0",
        },
    });
    vec![
        (GCS_SFC_DIGEST.to_owned(), e.digest_b64.clone()),
        (GCS_ENCRYPTION_DATA.to_owned(), encryption_data.to_string()),
        (GCS_MATDESC.to_owned(), e.matdesc.clone()),
    ]
}

/// The material description, compact and in the Python driver's key order.
fn matdesc(material: &EncryptionMaterial, key_bits: usize) -> Result<String> {
    #[derive(serde::Serialize)]
    struct MatDesc<'a> {
        #[serde(rename = "queryId")]
        query_id: &'a str,
        #[serde(rename = "smkId")]
        smk_id: String,
        #[serde(rename = "keySize")]
        key_size: String,
    }
    serde_json::to_string(&MatDesc {
        query_id: &material.query_id,
        smk_id: material.smk_id.to_string(),
        key_size: key_bits.to_string(),
    })
    .map_err(|e| Error::internal(format!("could not write the encryption material description: {e}")))
}

fn cbc_encrypt<C>(key: &[u8], iv: &[u8; BLOCK], plaintext: &[u8]) -> Result<Vec<u8>>
where
    C: BlockEncryptMut + BlockCipher + KeyInit,
{
    let cipher = cbc::Encryptor::<C>::new_from_slices(key, iv)
        .map_err(|_| Error::internal("AES-CBC rejected the file key or IV length"))?;
    let mut out = vec![0u8; padded_len(plaintext.len())];
    let n = cipher
        .encrypt_padded_b2b_mut::<Pkcs7>(plaintext, &mut out)
        .map_err(|_| Error::internal("AES-CBC output buffer too small"))?
        .len();
    out.truncate(n);
    Ok(out)
}

fn cbc_decrypt<C>(key: &[u8], iv: &[u8; BLOCK], ciphertext: &[u8]) -> Result<Vec<u8>>
where
    C: BlockDecryptMut + BlockCipher + KeyInit,
{
    if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(BLOCK) {
        return Err(Error::data(format!(
            "the encrypted file is {} bytes long, not a positive multiple of 16: truncated or not encrypted",
            ciphertext.len()
        )));
    }
    let cipher = cbc::Decryptor::<C>::new_from_slices(key, iv)
        .map_err(|_| Error::internal("AES-CBC rejected the file key or IV length"))?;
    let mut out = vec![0u8; ciphertext.len()];
    let n = cipher
        .decrypt_padded_b2b_mut::<Pkcs7>(ciphertext, &mut out)
        .map_err(|_| Error::data("the decrypted file has bad padding: wrong key or IV, or a damaged file"))?
        .len();
    out.truncate(n);
    Ok(out)
}

/// AES-ECB with PKCS#7 padding, as the drivers wrap the file key. (The block
/// cipher's own padded-encrypt applies it block by block: that is ECB.)
fn ecb_encrypt<C>(key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>>
where
    C: BlockEncrypt + KeyInit,
{
    let cipher = C::new_from_slice(key).map_err(|_| Error::internal("AES rejected the stage master key length"))?;
    let mut out = vec![0u8; padded_len(plaintext.len())];
    let n = cipher
        .encrypt_padded_b2b::<Pkcs7>(plaintext, &mut out)
        .map_err(|_| Error::internal("AES-ECB output buffer too small"))?
        .len();
    out.truncate(n);
    Ok(out)
}

fn ecb_decrypt<C>(key: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>>
where
    C: BlockDecrypt + KeyInit,
{
    if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(BLOCK) {
        return Err(Error::data(format!(
            "the encrypted file key is {} bytes long, not a positive multiple of 16",
            ciphertext.len()
        )));
    }
    let cipher = C::new_from_slice(key).map_err(|_| Error::internal("AES rejected the stage master key length"))?;
    let mut out = vec![0u8; ciphertext.len()];
    let n = cipher
        .decrypt_padded_b2b::<Pkcs7>(ciphertext, &mut out)
        .map_err(|_| Error::data("the encrypted file key does not unwrap under the stage master key (bad padding)"))?
        .len();
    out.truncate(n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        assert!(s.len().is_multiple_of(2));
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn material(master: &[u8]) -> EncryptionMaterial {
        EncryptionMaterial {
            master_key_b64: B64.encode(master),
            query_id: "01b2c3d4-0000-1111-0000-000123456789".into(),
            smk_id: 11_624_616_794_387_406,
        }
    }

    fn seq(start: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| start.wrapping_add(i as u8)).collect()
    }

    fn iv() -> [u8; 16] {
        seq(0x20, 16).try_into().unwrap()
    }

    const KAT_PLAINTEXT: &[u8] = b"Snowflake PUT client-side encryption!"; // 37 bytes

    // Expected values computed once with OpenSSL 3.0.19, independently of this code:
    //   MK=000102030405060708090a0b0c0d0e0f  FK=101112131415161718191a1b1c1d1e1f
    //   IV=202122232425262728292a2b2c2d2e2f
    //   printf 'Snowflake PUT client-side encryption!' > p.bin
    //   openssl enc -aes-128-cbc -K $FK -iv $IV -in p.bin | xxd -p            (body)
    //   echo -n $FK | xxd -r -p | openssl enc -aes-128-ecb -K $MK | xxd -p    (wrapped key)
    //   openssl dgst -sha256 -binary p.bin | base64                           (digest)
    // and the same with -aes-256-cbc / -aes-256-ecb for
    //   MK32=000102…1f (32 bytes)  FK32=404142…5f (32 bytes).
    #[test]
    fn known_answer_aes128() {
        let m = material(&seq(0x00, 16));
        let e = encrypt_with(&m, KAT_PLAINTEXT, &seq(0x10, 16), &iv()).unwrap();
        assert_eq!(
            e.body,
            hex("71084ffb7dde4a8249e495a0a9136dd5b278bbee25d3b2455f658d005bd283d06faf4b0bfde02720bd5762ba92c02a27")
        );
        assert_eq!(
            B64.decode(&e.key_b64).unwrap(),
            hex("07feef74e1d5036e900eee118e949293954f64f2e4e86e9eee82d20216684899")
        );
        assert_eq!(e.iv_b64, B64.encode(iv()));
        assert_eq!(e.digest_b64, "yQkSlLmkbPb5xI8Op57+3FfG7aMshyf0t7+UgVRnCSA=");
        assert_eq!(
            e.matdesc,
            r#"{"queryId":"01b2c3d4-0000-1111-0000-000123456789","smkId":"11624616794387406","keySize":"128"}"#
        );
        assert_eq!(decrypt(&m, &e).unwrap(), KAT_PLAINTEXT);
    }

    #[test]
    fn known_answer_aes192() {
        // -aes-192-cbc / -aes-192-ecb with MK24=000102…17, FK24=606162…77 (24 bytes each).
        let m = material(&seq(0x00, 24));
        let e = encrypt_with(&m, KAT_PLAINTEXT, &seq(0x60, 24), &iv()).unwrap();
        assert_eq!(
            e.body,
            hex("d4d5dce39a013bdd18e2d8393cc65cd2a27488c7af03e527baac0914fde7d820e74ecfb2112ac06485e1ac6ef5556ff7")
        );
        assert_eq!(
            B64.decode(&e.key_b64).unwrap(),
            hex("487b23423d1929187ac259d64525940a8d31229982f41d9c4bd4abb3311cac05")
        );
        assert!(e.matdesc.contains(r#""keySize":"192""#));
        assert_eq!(decrypt(&m, &e).unwrap(), KAT_PLAINTEXT);
    }

    #[test]
    fn known_answer_aes256() {
        let m = material(&seq(0x00, 32));
        let e = encrypt_with(&m, KAT_PLAINTEXT, &seq(0x40, 32), &iv()).unwrap();
        assert_eq!(
            e.body,
            hex("2096c5ebd15b4efa4b15624ca0ac6062a44611240f7ac2e97806034546c6e47f95c14555f8d4c3ad3e30f174fe5f5413")
        );
        assert_eq!(
            B64.decode(&e.key_b64).unwrap(),
            hex("a37edf3f975abaef937b62c78d5bb157974b412738e50f45c7f9db25413f274b9f3b7504926f8bd36e3118e903a4cd4a")
        );
        assert!(e.matdesc.contains(r#""keySize":"256""#));
        assert_eq!(decrypt(&m, &e).unwrap(), KAT_PLAINTEXT);
    }

    #[test]
    fn known_answer_empty_body_and_digest() {
        // openssl enc -aes-128-cbc -K $FK -iv $IV -in /dev/null | xxd -p
        // openssl dgst -sha256 -binary /dev/null | base64
        let m = material(&seq(0x00, 16));
        let e = encrypt_with(&m, b"", &seq(0x10, 16), &iv()).unwrap();
        assert_eq!(e.body, hex("e82546cf4538181b3f0a24390107fd00"));
        assert_eq!(e.digest_b64, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
        assert_eq!(digest_b64(b""), e.digest_b64);
    }

    #[test]
    fn round_trips() {
        let big: Vec<u8> = (0..1_000_003u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for key_len in [16usize, 24, 32] {
            let m = material(&seq(0x80, key_len));
            for len in [0usize, 1, 15, 16, 17, 31, 32, 33] {
                let plain = seq(0x41, len);
                let e = encrypt(&m, &plain).unwrap();
                assert_eq!(e.body.len(), (len / 16 + 1) * 16, "key {key_len}, len {len}");
                assert_eq!(B64.decode(&e.key_b64).unwrap().len(), if key_len == 32 { 48 } else { 32 });
                assert_eq!(B64.decode(&e.iv_b64).unwrap().len(), 16);
                assert_eq!(e.digest_b64, digest_b64(&plain));
                assert_eq!(decrypt(&m, &e).unwrap(), plain, "key {key_len}, len {len}");
            }
            let e = encrypt(&m, &big).unwrap();
            assert_eq!(e.body.len(), (big.len() / 16 + 1) * 16);
            assert_ne!(&e.body[..64], &big[..64]);
            assert_eq!(decrypt(&m, &e).unwrap(), big);
        }
    }

    #[test]
    fn random_key_and_iv_differ_each_time() {
        let m = material(&seq(0, 16));
        let a = encrypt(&m, b"same").unwrap();
        let b = encrypt(&m, b"same").unwrap();
        assert_ne!(a.key_b64, b.key_b64);
        assert_ne!(a.iv_b64, b.iv_b64);
        assert_ne!(a.body, b.body);
        assert_eq!(a.digest_b64, b.digest_b64);
    }

    #[test]
    fn wrong_master_key_or_damage_fails_to_decrypt() {
        let m = material(&seq(0, 16));
        let e = encrypt(&m, b"secret rows").unwrap();
        let other = material(&seq(1, 16));
        // A wrong key almost always fails the padding check; if by chance it
        // does not, the result must still differ.
        if let Ok(p) = decrypt(&other, &e) {
            assert_ne!(p, b"secret rows");
        }
        let mut truncated = e.clone();
        truncated.body.pop();
        assert_eq!(decrypt(&m, &truncated).unwrap_err().kind(), simplyload_core::ErrorKind::Data);
        let mut bad_iv = e.clone();
        bad_iv.iv_b64 = B64.encode([0u8; 8]);
        assert!(decrypt(&m, &bad_iv).is_err());
    }

    #[test]
    fn bad_master_keys_are_data_errors_that_hide_the_key() {
        let not_b64 =
            EncryptionMaterial { master_key_b64: "S3cr3t!!notbase64$$".into(), query_id: "q1".into(), smk_id: 7 };
        let err = encrypt(&not_b64, b"x").unwrap_err();
        assert_eq!(err.kind(), simplyload_core::ErrorKind::Data);
        assert!(!err.to_string().contains("S3cr3t"), "{err}");
        assert!(!format!("{err:?}").contains("S3cr3t"));

        let short_key = B64.encode(b"ten bytes!");
        let wrong_len = EncryptionMaterial { master_key_b64: short_key.clone(), query_id: "q1".into(), smk_id: 7 };
        let err = encrypt(&wrong_len, b"x").unwrap_err();
        assert_eq!(err.kind(), simplyload_core::ErrorKind::Data);
        assert!(err.to_string().contains("10 bytes"), "{err}");
        assert!(!err.to_string().contains(&short_key));
        assert!(!err.to_string().contains("ten bytes"));

        // A file key that does not match the master key's size.
        let m = material(&seq(0, 16));
        assert!(encrypt_with(&m, b"x", &seq(0, 32), &iv()).is_err());
    }

    #[test]
    fn s3_metadata_has_exactly_the_drivers_names() {
        let m = material(&seq(0x00, 16));
        let e = encrypt_with(&m, KAT_PLAINTEXT, &seq(0x10, 16), &iv()).unwrap();
        let meta = s3_metadata(&e);
        let mut names: Vec<&str> = meta.iter().map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["sfc-digest", "x-amz-iv", "x-amz-key", "x-amz-matdesc"]);
        let get = |k: &str| meta.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap();
        assert_eq!(get("x-amz-key"), e.key_b64);
        assert_eq!(get("x-amz-iv"), e.iv_b64);
        assert_eq!(get("sfc-digest"), e.digest_b64);

        let matdesc: serde_json::Value = serde_json::from_str(&get("x-amz-matdesc")).unwrap();
        let obj = matdesc.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["keySize", "queryId", "smkId"]);
        assert!(obj.values().all(serde_json::Value::is_string), "{matdesc}");
        assert_eq!(obj["smkId"], "11624616794387406");
        assert_eq!(obj["keySize"], "128");
        assert_eq!(obj["queryId"], m.query_id.as_str());
    }

    #[test]
    fn gcs_headers_have_exactly_the_drivers_names_and_json() {
        let m = material(&seq(0x00, 16));
        let e = encrypt_with(&m, KAT_PLAINTEXT, &seq(0x10, 16), &iv()).unwrap();
        let headers = gcs_headers(&e);
        let mut names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["x-goog-meta-encryptiondata", "x-goog-meta-matdesc", "x-goog-meta-sfc-digest"]);
        let get = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap();
        assert_eq!(get("x-goog-meta-sfc-digest"), e.digest_b64);
        assert_eq!(get("x-goog-meta-matdesc"), e.matdesc);

        let data: serde_json::Value = serde_json::from_str(&get("x-goog-meta-encryptiondata")).unwrap();
        assert_eq!(
            data,
            serde_json::json!({
                "EncryptionMode": "FullBlob",
                "WrappedContentKey": {"KeyId": "symmKey1", "EncryptedKey": e.key_b64, "Algorithm": "AES_CBC_256"},
                "EncryptionAgent": {"Protocol": "1.0", "EncryptionAlgorithm": "AES_CBC_256"},
                "ContentEncryptionIV": e.iv_b64,
                "KeyWrappingMetadata": {"EncryptionLibrary": "Java 5.3.0"},
            })
        );
        // Header values must be a single line.
        assert!(headers.iter().all(|(_, v)| !v.contains('\n') && !v.contains('\r')));
    }

    #[test]
    fn put_response_encryption_material_deserializes_and_debug_hides_the_key() {
        // The shape of a PUT's query response (`data` of POST /queries/v1/query-request).
        let body = r#"{
          "data": {
            "uploadInfo": {"locationType": "S3", "location": "sfc-prod3-ds1-7-customer-stage/abcd-s-xxxx/stages/0f1e2d3c/", "path": "stages/0f1e2d3c/", "region": "us-west-2", "storageAccount": null, "isClientSideEncrypted": true, "creds": {}, "presignedUrl": null, "endPoint": null},
            "src_locations": ["/tmp/simplyload/part-00000.parquet"],
            "parallel": 4,
            "threshold": 209715200,
            "autoCompress": false,
            "overwrite": true,
            "sourceCompression": "auto_detect",
            "clientShowEncryptionParameter": false,
            "queryId": "01b2c3d4-0000-1111-0000-000123456789",
            "encryptionMaterial": {
              "queryStageMasterKey": "AAECAwQFBgcICQoLDA0ODw==",
              "queryId": "01b2c3d4-0000-1111-0000-000123456789",
              "smkId": 11624616794387406
            },
            "stageInfo": {
              "locationType": "S3",
              "location": "sfc-prod3-ds1-7-customer-stage/abcd-s-xxxx/stages/0f1e2d3c/",
              "path": "stages/0f1e2d3c/",
              "region": "us-west-2",
              "storageAccount": null,
              "isClientSideEncrypted": true,
              "ciphers": "AES_CBC",
              "creds": {
                "AWS_KEY_ID": "ASIAEXAMPLEKEYID",
                "AWS_SECRET_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "AWS_TOKEN": "IQoJb3JpZ2luX2VjEXAMPLETOKEN"
              },
              "presignedUrl": null,
              "endPoint": null
            },
            "command": "UPLOAD",
            "kind": null,
            "operation": "Node"
          },
          "code": null,
          "message": null,
          "success": true
        }"#;
        #[derive(serde::Deserialize)]
        struct Response {
            data: Data,
        }
        #[derive(serde::Deserialize)]
        struct Data {
            #[serde(rename = "encryptionMaterial")]
            encryption_material: Option<EncryptionMaterial>,
        }
        let resp: Response = serde_json::from_str(body).unwrap();
        let m = resp.data.encryption_material.unwrap();
        assert_eq!(m.query_id, "01b2c3d4-0000-1111-0000-000123456789");
        assert_eq!(m.smk_id, 11_624_616_794_387_406);
        assert_eq!(B64.decode(&m.master_key_b64).unwrap(), seq(0, 16));
        let debug = format!("{m:?}");
        assert!(!debug.contains(&m.master_key_b64), "{debug}");
        assert!(!debug.contains("AAECAw"), "{debug}");
        assert!(debug.contains("***") && debug.contains("11624616794387406"), "{debug}");
        // Debug of what encryption returns carries no master key either.
        let e = encrypt(&m, b"row").unwrap();
        assert!(!format!("{e:?}").contains(&m.master_key_b64));

        // A string smkId (as some mocks send it) and a null material (unencrypted stage).
        let m: EncryptionMaterial =
            serde_json::from_str(r#"{"queryStageMasterKey": "AAAA", "queryId": "q", "smkId": "42"}"#).unwrap();
        assert_eq!(m.smk_id, 42);
        let d: Data = serde_json::from_str(r#"{"encryptionMaterial": null}"#).unwrap();
        assert!(d.encryption_material.is_none());
    }
}
