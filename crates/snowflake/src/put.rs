//! `PUT` to an internal stage, as Snowflake's drivers do it: the statement
//! answers with where the file goes (`stageInfo`: the cloud, the location,
//! short-lived credentials or a presigned URL) and, on real accounts, the
//! key material for client-side encryption (`encryptionMaterial`); the
//! client then uploads the file to that storage itself.
//!
//! Supported: `GCS` through a presigned URL (what fakesnow answers, and
//! what Snowflake on GCP answers for a single-file PUT), `S3` with the
//! temporary credentials (Snowflake on AWS), and `LOCAL_FS` (a server on
//! this machine). Files are encrypted when the answer carries key material.

use crate::client::Session;
use crate::encryption::{self, EncryptionMaterial};
use simplyload_core::{Error, ErrorKind, Result};
use std::path::Path;

/// A string literal for Snowflake SQL.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The PUT statement for one local file to a stage folder (`@STAGE/dir/`).
pub fn put_sql(local: &Path, stage_dir: &str) -> String {
    let url = format!("file://{}", local.display());
    format!("PUT {} {stage_dir} AUTO_COMPRESS=FALSE SOURCE_COMPRESSION=NONE OVERWRITE=TRUE", literal(&url))
}

/// Uploads one file to a stage folder. The file keeps its name.
pub async fn put_file(session: &Session, local: &Path, stage_dir: &str) -> Result<()> {
    let data = session.command(&put_sql(local, stage_dir)).await?;
    let name = local
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::internal(format!("PUT: {} has no file name", local.display())))?;
    upload(session.http(), &data, local, name).await
}

fn stage_field<'a>(data: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    data.get("stageInfo").and_then(|s| s.get(key)).and_then(|v| v.as_str())
}

/// The encryption material of a PUT answer, if any (an object, or a list of one).
pub fn material(data: &serde_json::Value) -> Result<Option<EncryptionMaterial>> {
    let m = match data.get("encryptionMaterial") {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::Array(list)) => match list.first() {
            None | Some(serde_json::Value::Null) => return Ok(None),
            Some(m) => m.clone(),
        },
        Some(m) => m.clone(),
    };
    serde_json::from_value(m)
        .map(Some)
        .map_err(|e| Error::data(format!("Snowflake PUT answer: bad encryptionMaterial: {e}")))
}

/// Uploads `local` as `name` where a PUT answer says.
pub async fn upload(http: &reqwest::Client, data: &serde_json::Value, local: &Path, name: &str) -> Result<()> {
    simplyload_core::install_tls_provider();
    if data.get("command").and_then(|c| c.as_str()) != Some("UPLOAD") {
        return Err(Error::data("Snowflake answered PUT without an UPLOAD command"));
    }
    let plain = tokio::fs::read(local)
        .await
        .map_err(|e| Error::from(e).context(format!("reading staged file {}", local.display())))?;
    let material = material(data)?;
    let location = stage_field(data, "location").unwrap_or_default().to_owned();
    match stage_field(data, "locationType").unwrap_or_default() {
        "GCS" => {
            let url = stage_field(data, "presignedUrl").filter(|u| !u.is_empty()).ok_or_else(|| {
                Error::new(ErrorKind::Unsupported, "Snowflake on GCS answered PUT without a presigned URL")
                    .with_hint("use an external S3 stage (destination `stage: <name>`) for this account")
            })?;
            let (body, headers) = match &material {
                Some(m) => {
                    let e = encryption::encrypt(m, &plain)?;
                    let headers = encryption::gcs_headers(&e);
                    (e.body, headers)
                }
                None => (plain.clone(), vec![("x-goog-meta-sfc-digest".to_owned(), encryption::digest_b64(&plain))]),
            };
            let mut req = http.put(url).header("Content-Type", "application/octet-stream");
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let resp = req.body(body).send().await.map_err(|e| {
                Error::new(
                    ErrorKind::Transient,
                    format!("uploading {name} to the Snowflake stage: {}", e.without_url()),
                )
            })?;
            let status = resp.status();
            if !status.is_success() {
                let text = resp.text().await.unwrap_or_default();
                let kind = if status.is_server_error() || status.as_u16() == 429 {
                    ErrorKind::Transient
                } else {
                    ErrorKind::Internal
                };
                return Err(Error::new(
                    kind,
                    format!(
                        "uploading {name} to the Snowflake stage: HTTP {status}: {}",
                        text.chars().take(300).collect::<String>()
                    ),
                ));
            }
            Ok(())
        }
        "S3" => upload_s3(data, &location, name, plain, material.as_ref()).await,
        "LOCAL_FS" => {
            let dir = Path::new(&location);
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| Error::from(e).context(format!("creating stage folder {location}")))?;
            tokio::fs::write(dir.join(name), &plain)
                .await
                .map_err(|e| Error::from(e).context(format!("writing {name} to stage folder {location}")))
        }
        other => Err(Error::new(
            ErrorKind::Unsupported,
            format!("Snowflake stage storage `{other}` is not supported for PUT yet"),
        )
        .with_hint("use an external S3 stage (destination `stage: <name>`)")),
    }
}

/// S3: the answer's temporary credentials, the object at `location/name`,
/// the encryption metadata as user metadata.
async fn upload_s3(
    data: &serde_json::Value,
    location: &str,
    name: &str,
    plain: Vec<u8>,
    material: Option<&EncryptionMaterial>,
) -> Result<()> {
    use object_store::aws::AmazonS3Builder;
    use object_store::{Attribute, Attributes, ObjectStore, PutOptions, PutPayload};
    let creds = data.get("stageInfo").and_then(|s| s.get("creds")).cloned().unwrap_or_default();
    let cred = |k: &str| creds.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
    let mut b = AmazonS3Builder::new().with_bucket_name(bucket);
    if let Some(r) = stage_field(data, "region") {
        b = b.with_region(r);
    }
    if let Some(e) = stage_field(data, "endPoint").filter(|e| !e.is_empty()) {
        let e = if e.contains("://") { e.to_owned() } else { format!("https://{e}") };
        b = b.with_allow_http(e.starts_with("http://")).with_endpoint(e);
    }
    if let (Some(k), Some(s)) = (cred("AWS_KEY_ID"), cred("AWS_SECRET_KEY")) {
        b = b.with_access_key_id(k).with_secret_access_key(s);
    }
    if let Some(t) = cred("AWS_TOKEN").filter(|t| !t.is_empty()) {
        b = b.with_token(t);
    }
    let store = b.build().map_err(|e| Error::data(format!("Snowflake PUT answer: bad S3 stage info: {e}")))?;
    let (body, metadata) = match material {
        Some(m) => {
            let e = encryption::encrypt(m, &plain)?;
            let md = encryption::s3_metadata(&e);
            (e.body, md)
        }
        None => (plain.clone(), vec![("sfc-digest".to_owned(), encryption::digest_b64(&plain))]),
    };
    let mut attributes = Attributes::new();
    for (k, v) in metadata {
        attributes.insert(Attribute::Metadata(k.into()), v.into());
    }
    let key = format!("{}{}{name}", prefix, if prefix.is_empty() || prefix.ends_with('/') { "" } else { "/" });
    let opts = PutOptions { attributes, ..Default::default() };
    store
        .put_opts(&object_store::path::Path::from(key.as_str()), PutPayload::from(body), opts)
        .await
        .map_err(|e| Error::new(ErrorKind::Transient, format!("uploading {name} to the Snowflake stage on S3: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_statements_quote_the_path() {
        assert_eq!(
            put_sql(Path::new("/tmp/a b/it's.parquet"), "@_SIMPLYLOAD_STAGE/x/1/"),
            "PUT 'file:///tmp/a b/it''s.parquet' @_SIMPLYLOAD_STAGE/x/1/ AUTO_COMPRESS=FALSE SOURCE_COMPRESSION=NONE OVERWRITE=TRUE"
        );
    }
}
