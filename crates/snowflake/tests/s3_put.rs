//! PUT to a Snowflake internal stage on AWS, against the `moto` S3 server:
//! the answer Snowflake gives (documented format: `stageInfo` with
//! `locationType: S3`, temporary credentials, and `encryptionMaterial`) is
//! handed to the uploader, which must write the object encrypted, with the
//! metadata Snowflake reads back (wrapped key, IV, material description,
//! digest of the plaintext).

use object_store::aws::AmazonS3Builder;
use object_store::{Attribute, ObjectStoreExt};
use simplyload_snowflake::encryption::{self, Encrypted, EncryptionMaterial};
use simplyload_snowflake::put;
use simplyload_testkit::peers::Moto;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_to_an_s3_stage_encrypts_with_the_stage_key() {
    simplyload_core::install_tls_provider();
    let moto = Moto::start();
    moto.create_bucket("sfc-stage");
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("part-00000.parquet");
    let plaintext: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(&local, &plaintext).unwrap();
    let answer = serde_json::json!({
        "command": "UPLOAD",
        "src_locations": [local.display().to_string()],
        "autoCompress": false,
        "overwrite": true,
        "stageInfo": {
            "locationType": "S3",
            "location": "sfc-stage/stages/b1e2/tmp/",
            "path": "stages/b1e2/tmp/",
            "region": "us-east-1",
            "endPoint": moto.endpoint(),
            "creds": {"AWS_KEY_ID": "testing", "AWS_SECRET_KEY": "testing", "AWS_TOKEN": "session-token"},
        },
        "encryptionMaterial": {
            "queryStageMasterKey": "AAECAwQFBgcICQoLDA0ODw==",
            "queryId": "01b2c3d4-0000-1111-0000-000000000001",
            "smkId": 9_876_543_210_i64,
        },
    });
    put::upload(&reqwest::Client::new(), &answer, &local, "part-00000.parquet").await.unwrap();

    let store = AmazonS3Builder::new()
        .with_bucket_name("sfc-stage")
        .with_region("us-east-1")
        .with_endpoint(moto.endpoint())
        .with_allow_http(true)
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .build()
        .unwrap();
    let got = store.get(&object_store::path::Path::from("stages/b1e2/tmp/part-00000.parquet")).await.unwrap();
    let attrs = got.attributes.clone();
    let body = got.bytes().await.unwrap().to_vec();
    assert_ne!(body, plaintext, "the object is encrypted");
    let meta = |k: &str| -> String {
        attrs
            .iter()
            .find(|(a, _)| matches!(a, Attribute::Metadata(m) if m.as_ref() == k))
            .map(|(_, v)| v.as_ref().to_owned())
            .unwrap_or_else(|| panic!("metadata {k} missing: {attrs:?}"))
    };
    let material: EncryptionMaterial = serde_json::from_value(answer["encryptionMaterial"].clone()).unwrap();
    let e = Encrypted {
        body,
        key_b64: meta(encryption::S3_KEY),
        iv_b64: meta(encryption::S3_IV),
        matdesc: meta(encryption::S3_MATDESC),
        digest_b64: meta(encryption::SFC_DIGEST),
    };
    let matdesc: serde_json::Value = serde_json::from_str(&e.matdesc).unwrap();
    assert_eq!(matdesc["smkId"], "9876543210");
    assert_eq!(matdesc["keySize"], "128");
    assert_eq!(e.digest_b64, encryption::digest_b64(&plaintext));
    assert_eq!(encryption::decrypt(&material, &e).unwrap(), plaintext);
}

#[test]
fn put_answers_without_a_supported_storage_say_so() {
    simplyload_core::install_tls_provider();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("f.parquet");
    std::fs::write(&local, b"x").unwrap();
    let azure = serde_json::json!({"command": "UPLOAD", "stageInfo": {"locationType": "AZURE", "location": "c/p/"}});
    let e = rt.block_on(put::upload(&reqwest::Client::new(), &azure, &local, "f.parquet")).unwrap_err();
    assert_eq!(e.kind(), simplyload_core::ErrorKind::Unsupported);
    assert!(e.to_string().contains("AZURE") && e.hint().unwrap().contains("external"), "{e}");
    let not_upload = serde_json::json!({"command": "DOWNLOAD"});
    assert!(rt.block_on(put::upload(&reqwest::Client::new(), &not_upload, &local, "f.parquet")).is_err());
    let bad_material = serde_json::json!({"command": "UPLOAD", "encryptionMaterial": {"queryId": 1},
        "stageInfo": {"locationType": "GCS", "presignedUrl": "http://127.0.0.1:9/x"}});
    let e = rt.block_on(put::upload(&reqwest::Client::new(), &bad_material, &local, "f.parquet")).unwrap_err();
    assert!(e.to_string().contains("encryptionMaterial"), "{e}");
}
