//! S3 staging against a real S3 server (`moto`): multipart upload of a large
//! file, SSE-S3 on by default, download for loading, removal.

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use simplyload_core::{ErrorKind, StagingArea};
use simplyload_staging::{S3Options, Staging};
use simplyload_testkit::peers::Moto;
use std::sync::Arc;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("s", DataType::Utf8, true)]))
}

fn batch(start: i64, n: i64) -> RecordBatch {
    // Incompressible text, so the file is large enough for a multipart upload.
    let noise = |i: i64| {
        let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (0..64)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'a' + (x % 26) as u8)
            })
            .collect::<String>()
    };
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(start..start + n)),
            Arc::new(StringArray::from_iter_values((start..start + n).map(noise))),
        ],
    )
    .unwrap()
}

fn options(moto: &Moto) -> S3Options {
    S3Options {
        endpoint: Some(moto.endpoint()),
        region: Some("us-east-1".into()),
        access_key_id: Some("testing".into()),
        secret_access_key: Some("testing".into()),
        sse: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_go_up_in_parts_encrypted_and_come_back_whole() {
    let moto = Moto::start();
    moto.create_bucket("stage");
    let staging = Staging::open("s3://stage/customer_42/", std::path::Path::new("."), &options(&moto)).unwrap();
    let mut w = staging.writer("p", "public.t", 7, schema()).await.unwrap();
    let rows = 500_000;
    for i in 0..rows / 10_000 {
        w.write(batch(i * 10_000, 10_000)).await.unwrap();
    }
    let files = w.finish().await.unwrap();
    assert_eq!(files.iter().map(|f| f.row_count).sum::<u64>(), rows as u64);
    assert!(
        files[0].byte_count > 2 * simplyload_staging::UPLOAD_PART_BYTES as u64,
        "{} bytes: not multipart",
        files[0].byte_count
    );
    assert_eq!(files[0].key, "p/public.t/000000000007/part-00000.parquet");

    // Stored under the prefix, with SSE-S3.
    let (code, head) = moto.request("HEAD", &format!("/stage/customer_42/{}", files[0].key));
    assert_eq!(code, 200, "{head}");
    assert!(head.to_ascii_lowercase().contains("x-amz-server-side-encryption: aes256"), "{head}");

    // Fetched for a load: every row back.
    let local = staging.local_file(&files[0].key).await.unwrap();
    let reader =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&local.path).unwrap()).unwrap().build().unwrap();
    let mut ids = Vec::new();
    for b in reader {
        let b = b.unwrap();
        ids.extend(b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().iter().copied());
    }
    assert_eq!(ids, (0..rows).collect::<Vec<_>>());
    let tmp = local.path.clone();
    drop(local);
    assert!(!tmp.exists(), "the downloaded copy is removed when dropped");

    // Removed with its batch.
    staging.remove_batch("p", "public.t", 7).await.unwrap();
    let (code, _) = moto.request("HEAD", &format!("/stage/customer_42/{}", files[0].key));
    assert_eq!(code, 404);
    let e = staging.local_file(&files[0].key).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_named() {
    let moto = Moto::start();
    let staging = Staging::open("s3://nope/x", std::path::Path::new("."), &options(&moto)).unwrap();
    let mut w = staging.writer("p", "public.t", 1, schema()).await.unwrap();
    w.write(batch(0, 10)).await.unwrap();
    let e = w.finish().await.unwrap_err();
    assert!(e.to_string().contains("NoSuchBucket") || e.to_string().contains("nope"), "{e}");
}

/// A stream name with quotes and spaces is one percent-encoded key segment,
/// stored as it is (not encoded a second time), so an external stage that
/// reads the manifest's key finds the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_stream_names_are_encoded_once() {
    let moto = Moto::start();
    moto.create_bucket("stage");
    let staging = Staging::open("s3://stage/c1", std::path::Path::new("."), &options(&moto)).unwrap();
    let stream = "\"Sales\".\"Order Lines\"";
    let mut w = staging.writer("p", stream, 3, schema()).await.unwrap();
    w.write(batch(0, 10)).await.unwrap();
    let files = w.finish().await.unwrap();
    assert_eq!(files[0].key, "p/%22Sales%22.%22Order%20Lines%22/000000000003/part-00000.parquet");
    // The object's key is the manifest's key.
    let keys = || {
        let (_, listing) = moto.request("GET", "/stage?list-type=2&prefix=c1/");
        listing.split("<Key>").skip(1).filter_map(|k| k.split("</Key>").next()).map(str::to_owned).collect::<Vec<_>>()
    };
    assert_eq!(keys(), vec![format!("c1/{}", files[0].key)]);
    assert!(staging.local_file(&files[0].key).await.is_ok());
    staging.remove_batch("p", stream, 3).await.unwrap();
    assert_eq!(keys(), Vec::<String>::new());
}
