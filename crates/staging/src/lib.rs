//! Staging: Arrow record batches → zstd Parquet files in an object store.
//!
//! Layout (DESIGN.md §2): `{prefix}/{pipeline}/{stream}/{batch_id:012}/part-{n:05}.parquet`.
//!
//! Parquet encoding and compression are CPU work, so each batch writer runs
//! on its own blocking thread fed by a small bounded channel: the source
//! keeps decoding while the previous record batch is being compressed, and
//! memory stays bounded by the channel depth plus one open row group.
//!
//! A file is written under a temporary name, flushed to disk, and only then
//! given its final name (or uploaded, for a remote store), so a file that
//! has its final name is always complete.

use arrow_array::RecordBatch;
use arrow_schema::{DataType, SchemaRef};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use simplyload_core::batch::{batch_prefix, file_key};
use simplyload_core::staging::tempfile_guard::TempPath;
use simplyload_core::{BatchWriter, Error, ErrorKind, LocalFile, Result, StagedFile, StagingArea};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Connection details for S3 staging (`staging:` as a map).
#[derive(Clone, Default)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// `AES256` (SSE-S3, the default), `aws:kms`, or `none`.
    pub sse: Option<String>,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<redacted>"))
            .field("sse", &self.sse)
            .finish()
    }
}

/// HTTPS to S3 uses rustls with ring, like every other TLS connection here.
use simplyload_core::install_tls_provider;

/// Remote files are uploaded in parts of this size (multipart above it).
pub const UPLOAD_PART_BYTES: usize = 8 * 1024 * 1024;

/// Files roll over at this compressed size (Snowflake recommends 100–250 MB).
pub const DEFAULT_FILE_BYTES: u64 = 128 * 1024 * 1024;
/// Rows per Parquet row group: small enough that a row group of wide rows
/// stays a modest amount of memory, large enough for good compression.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;
/// A row group is also closed when its encoded size reaches this.
pub const ROW_GROUP_BYTES: usize = 64 * 1024 * 1024;

/// Where staged files live.
#[derive(Clone)]
pub struct Staging {
    store: Arc<dyn ObjectStore>,
    /// For a local folder: its absolute path. Files are then written in place.
    local_root: Option<PathBuf>,
    /// Key prefix inside the store (empty for a local folder).
    prefix: String,
    url: String,
    file_bytes: u64,
    zstd_level: i32,
}

impl std::fmt::Debug for Staging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staging").field("url", &self.url).finish()
    }
}

impl Staging {
    /// A local folder (created if missing).
    pub fn local(root: &Path) -> Result<Staging> {
        std::fs::create_dir_all(root)
            .map_err(|e| Error::from(e).context(format!("cannot create staging folder {}", root.display())))?;
        let root = root.canonicalize()?;
        let store = LocalFileSystem::new_with_prefix(&root)
            .map_err(|e| Error::internal(format!("staging folder {}: {e}", root.display())))?;
        Ok(Staging {
            store: Arc::new(store),
            url: format!("file://{}", root.display()),
            local_root: Some(root),
            prefix: String::new(),
            file_bytes: DEFAULT_FILE_BYTES,
            zstd_level: 1,
        })
    }

    /// Opens a staging location from the config's `staging:` value: a path
    /// (relative to `base_dir`), a `file://` URL, or an `s3://bucket/prefix`
    /// URL (with `s3` options; credentials otherwise from the usual `AWS_*`
    /// environment variables).
    pub fn open(url: &str, base_dir: &Path, s3: &S3Options) -> Result<Staging> {
        if let Some(rest) = url.strip_prefix("file://") {
            return Self::local(Path::new(rest));
        }
        if url.starts_with("s3://") {
            return Self::s3(url, s3);
        }
        if let Some((scheme, _)) = url.split_once("://") {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("staging `{url}`: `{scheme}://` staging is not supported"),
            )
            .with_hint("use a local folder or an s3://bucket/prefix URL for `staging:`"));
        }
        let p = Path::new(url);
        Self::local(&if p.is_absolute() { p.to_path_buf() } else { base_dir.join(p) })
    }

    /// An S3 bucket (or an S3-compatible server at `endpoint`), with
    /// server-side encryption SSE-S3 unless `sse` says otherwise.
    pub fn s3(url: &str, opts: &S3Options) -> Result<Staging> {
        use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
        install_tls_provider();
        let rest = url.trim_start_matches("s3://");
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::config(format!("staging `{url}`: no bucket; write s3://bucket/prefix")));
        }
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(r) = &opts.region {
            b = b.with_region(r);
        }
        if let Some(e) = &opts.endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        if let Some(k) = &opts.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(k) = &opts.secret_access_key {
            b = b.with_secret_access_key(k);
        }
        match opts.sse.as_deref().unwrap_or("AES256") {
            "none" => {}
            sse => {
                let key: AmazonS3ConfigKey =
                    "aws_server_side_encryption".parse().map_err(|e| Error::internal(format!("S3 option: {e}")))?;
                b = b.with_config(key, sse);
            }
        }
        let store = b.build().map_err(|e| {
            Error::config(format!("staging `{url}`: {e}"))
                .with_hint("set staging.region (and staging.endpoint for an S3-compatible server), or AWS_REGION")
        })?;
        Ok(Staging {
            store: Arc::new(store),
            local_root: None,
            prefix: prefix.trim_matches('/').to_owned(),
            url: url.to_owned(),
            file_bytes: DEFAULT_FILE_BYTES,
            zstd_level: 1,
        })
    }

    /// Sets the size at which files roll over.
    pub fn with_file_bytes(mut self, bytes: u64) -> Self {
        self.file_bytes = bytes.max(1);
        self
    }

    pub fn local_root(&self) -> Option<&Path> {
        self.local_root.as_deref()
    }

    /// The object of a staging key. Keys are already safe for every store
    /// (each segment made by [`simplyload_core::batch::path_part`]), so they
    /// are taken as they are: `Path::from` would percent-encode their `%`
    /// again (`%22Sales%22` stored as `%2522Sales%2522`, which an external
    /// stage reading the key would not find).
    fn object_path(&self, key: &str) -> ObjectPath {
        let full = if self.prefix.is_empty() { key.to_owned() } else { format!("{}/{key}", self.prefix) };
        ObjectPath::parse(&full).unwrap_or_else(|_| ObjectPath::from(full.as_str()))
    }

    /// Where releases before 0.2 put a key (encoded twice), to find files
    /// they staged and did not load.
    fn legacy_object_path(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() { ObjectPath::from(key) } else { ObjectPath::from(format!("{}/{key}", self.prefix)) }
    }

    /// Chosen by measurement (`simplyload bench snapshot`, docs/benchmarks.md):
    /// zstd level 1; statistics per column chunk only (loads read every
    /// row, so page statistics buy nothing); a dictionary only for text
    /// columns. A dictionary costs a hash of every value; for numbers,
    /// times, UUIDs and JSON documents (mostly distinct, or small enough
    /// that zstd finds the repeats anyway) it was a sixth of the staging
    /// CPU and made the files no smaller.
    fn writer_properties(&self, schema: &SchemaRef) -> Result<WriterProperties> {
        let level = ZstdLevel::try_new(self.zstd_level).map_err(|e| Error::internal(format!("zstd level: {e}")))?;
        let mut builder = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_dictionary_enabled(false);
        for field in schema.fields() {
            let path = || ColumnPath::from(field.name().as_str());
            if field.metadata().get("simplyload.type").map(String::as_str) == Some("text") {
                builder = builder.set_column_dictionary_enabled(path(), true);
            }
            // A decimal column's minimum and maximum would each keep alive
            // the whole buffer the writer converted its batch into (parquet
            // slices one allocation per batch), until the file closes: 6
            // bytes per row of `numeric(12,2)` alone, the one part of
            // staging memory that grew with the table (10M rows: 60 MB).
            if matches!(field.data_type(), DataType::Decimal128(..) | DataType::Decimal256(..)) {
                builder = builder.set_column_statistics_enabled(path(), EnabledStatistics::None);
            }
        }
        Ok(builder.build())
    }
}

#[async_trait::async_trait]
impl StagingArea for Staging {
    fn describe(&self) -> String {
        self.url.clone()
    }

    async fn writer(
        &self,
        pipeline: &str,
        stream: &str,
        batch_id: u64,
        schema: SchemaRef,
    ) -> Result<Box<dyn BatchWriter>> {
        let job = WriteJob {
            staging: self.clone(),
            pipeline: pipeline.to_owned(),
            stream: stream.to_owned(),
            batch_id,
            props: self.writer_properties(&schema)?,
            schema,
            runtime: tokio::runtime::Handle::current(),
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<RecordBatch>(2);
        let handle = tokio::task::spawn_blocking(move || job.run(rx));
        Ok(Box::new(ParquetBatchWriter { tx: Some(tx), handle }))
    }

    async fn local_file(&self, key: &str) -> Result<LocalFile> {
        if let Some(root) = &self.local_root {
            let path = root.join(key);
            if !path.is_file() {
                return Err(Error::not_found(format!(
                    "staged file {} is missing; it is named in a batch manifest, so it was removed by hand or by retention",
                    path.display()
                )));
            }
            return Ok(LocalFile { path, temp: None });
        }
        // Streamed to a local temporary file, chunk by chunk.
        use futures::StreamExt;
        use std::io::Write;
        let got = match self.store.get(&self.object_path(key)).await {
            Err(object_store::Error::NotFound { .. }) if self.legacy_object_path(key) != self.object_path(key) => {
                self.store.get(&self.legacy_object_path(key)).await
            }
            other => other,
        };
        let mut chunks = got.map_err(|e| store_error(e, key))?.into_stream();
        let mut tmp = tempfile::Builder::new().suffix(".parquet").tempfile()?;
        while let Some(chunk) = chunks.next().await {
            tmp.write_all(&chunk.map_err(|e| store_error(e, key))?)?;
        }
        tmp.flush()?;
        let (_, path) = tmp.keep().map_err(|e| Error::from(e.error))?;
        Ok(LocalFile { temp: Some(TempPath(path.clone())), path })
    }

    async fn remove_batch(&self, pipeline: &str, stream: &str, batch_id: u64) -> Result<()> {
        let prefix = batch_prefix(pipeline, stream, batch_id);
        if let Some(root) = &self.local_root {
            let dir = root.join(&prefix);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::from(e).context(format!("removing {}", dir.display()))),
            }
            return Ok(());
        }
        use futures::TryStreamExt;
        let mut places = vec![self.object_path(&prefix)];
        if self.legacy_object_path(&prefix) != places[0] {
            places.push(self.legacy_object_path(&prefix));
        }
        for place in places {
            let listed: Vec<_> =
                self.store.list(Some(&place)).try_collect().await.map_err(|e| store_error(e, &prefix))?;
            for meta in listed {
                self.store.delete(&meta.location).await.map_err(|e| store_error(e, meta.location.as_ref()))?;
            }
        }
        Ok(())
    }
}

fn store_error(e: object_store::Error, key: &str) -> Error {
    let kind = match &e {
        object_store::Error::NotFound { .. } => ErrorKind::NotFound,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            ErrorKind::Permission
        }
        _ => ErrorKind::Transient,
    };
    Error::new(kind, format!("staging object {key}: {e}"))
}

struct ParquetBatchWriter {
    tx: Option<tokio::sync::mpsc::Sender<RecordBatch>>,
    handle: tokio::task::JoinHandle<Result<Vec<StagedFile>>>,
}

#[async_trait::async_trait]
impl BatchWriter for ParquetBatchWriter {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let tx = self.tx.as_ref().ok_or_else(|| Error::internal("write after finish"))?;
        if tx.send(batch).await.is_err() {
            // The writer thread stopped: its error is the real one.
            let tx = self.tx.take();
            drop(tx);
            let handle = std::mem::replace(&mut self.handle, tokio::task::spawn_blocking(|| Ok(Vec::new())));
            return match handle.await {
                Ok(Err(e)) => Err(e),
                Ok(Ok(_)) => Err(Error::internal("parquet writer stopped early")),
                Err(e) => Err(Error::internal(format!("parquet writer panicked: {e}"))),
            };
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<Vec<StagedFile>> {
        drop(self.tx.take());
        match (&mut self.handle).await {
            Ok(r) => r,
            Err(e) => Err(Error::internal(format!("parquet writer panicked: {e}"))),
        }
    }
}

struct WriteJob {
    staging: Staging,
    pipeline: String,
    stream: String,
    batch_id: u64,
    schema: SchemaRef,
    props: WriterProperties,
    runtime: tokio::runtime::Handle,
}

struct OpenFile {
    writer: ArrowWriter<File>,
    tmp_path: PathBuf,
    key: String,
    rows: u64,
}

impl WriteJob {
    fn run(self, mut rx: tokio::sync::mpsc::Receiver<RecordBatch>) -> Result<Vec<StagedFile>> {
        let mut files = Vec::new();
        let mut open: Option<OpenFile> = None;
        let spool = match &self.staging.local_root {
            Some(root) => root.join(batch_prefix(&self.pipeline, &self.stream, self.batch_id)),
            None => std::env::temp_dir().join(format!("simplyload-spool-{}", std::process::id())),
        };
        std::fs::create_dir_all(&spool)
            .map_err(|e| Error::from(e).context(format!("creating staging folder {}", spool.display())))?;
        while let Some(batch) = rx.blocking_recv() {
            if batch.num_rows() == 0 {
                continue;
            }
            if open.is_none() {
                let n = files.len() as u32;
                let key = file_key(&self.pipeline, &self.stream, self.batch_id, n);
                let tmp_path = spool.join(format!(".part-{n:05}.parquet.tmp"));
                let file = File::create(&tmp_path)
                    .map_err(|e| Error::from(e).context(format!("creating {}", tmp_path.display())))?;
                let writer =
                    ArrowWriter::try_new(file, self.schema.clone(), Some(self.props.clone())).map_err(parquet_error)?;
                open = Some(OpenFile { writer, tmp_path, key, rows: 0 });
            }
            let f = open.as_mut().expect("opened above");
            f.writer.write(&batch).map_err(parquet_error)?;
            f.rows += batch.num_rows() as u64;
            if f.writer.in_progress_size() >= ROW_GROUP_BYTES {
                f.writer.flush().map_err(parquet_error)?;
            }
            let size = f.writer.bytes_written() as u64 + f.writer.in_progress_size() as u64;
            if size >= self.staging.file_bytes {
                files.push(self.close(open.take().expect("open"))?);
            }
        }
        if let Some(f) = open.take() {
            files.push(self.close(f)?);
        }
        if self.staging.local_root.is_some() {
            sync_dir(&spool)?;
        }
        Ok(files)
    }

    fn close(&self, f: OpenFile) -> Result<StagedFile> {
        let file = f.writer.into_inner().map_err(parquet_error)?;
        file.sync_all()?;
        drop(file);
        let byte_count = std::fs::metadata(&f.tmp_path)?.len();
        match &self.staging.local_root {
            Some(root) => {
                let dest = root.join(&f.key);
                std::fs::rename(&f.tmp_path, &dest).map_err(|e| {
                    Error::from(e).context(format!("renaming {} to {}", f.tmp_path.display(), dest.display()))
                })?;
            }
            None => {
                // Streamed from the spooled file; files above one part go up
                // as a multipart upload, so memory stays at one part.
                let path = self.staging.object_path(&f.key);
                let store = self.staging.store.clone();
                let tmp = f.tmp_path.clone();
                self.runtime
                    .block_on(async move {
                        use tokio::io::AsyncWriteExt;
                        let mut src = tokio::fs::File::open(&tmp).await?;
                        let mut dst = object_store::buffered::BufWriter::with_capacity(store, path, UPLOAD_PART_BYTES);
                        tokio::io::copy(&mut src, &mut dst).await?;
                        dst.shutdown().await
                    })
                    .map_err(|e| Error::new(ErrorKind::Transient, format!("uploading staged file {}: {e}", f.key)))?;
                let _ = std::fs::remove_file(&f.tmp_path);
            }
        }
        tracing::debug!(key = %f.key, rows = f.rows, bytes = byte_count, "staged file written");
        Ok(StagedFile { key: f.key, row_count: f.rows, byte_count })
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    if let Some(parent) = dir.parent() {
        let _ = File::open(parent).and_then(|f| f.sync_all());
    }
    Ok(())
}

fn parquet_error(e: parquet::errors::ParquetError) -> Error {
    Error::internal(format!("parquet: {e}"))
}

#[cfg(test)]
mod tests;
