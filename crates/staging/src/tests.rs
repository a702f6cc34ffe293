use super::*;
use arrow_array::{Int64Array, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("s", DataType::Utf8, true)]))
}

fn batch(start: i64, n: i64) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(start..start + n)),
            Arc::new(StringArray::from_iter_values((start..start + n).map(|i| format!("row {i} {}", "x".repeat(200))))),
        ],
    )
    .unwrap()
}

fn read_ids(path: &Path) -> Vec<i64> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap().build().unwrap();
    let mut out = Vec::new();
    for b in reader {
        let b = b.unwrap();
        let ids = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        out.extend(ids.values().iter().copied());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_rolls_and_reads_back_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let staging = Staging::local(dir.path()).unwrap().with_file_bytes(64 * 1024);
    let mut w = staging.writer("p", "public.t", 3, schema()).await.unwrap();
    for i in 0..20 {
        w.write(batch(i * 500, 500)).await.unwrap();
    }
    let files = w.finish().await.unwrap();
    assert!(files.len() > 1, "files should roll over at the target size: {files:?}");
    assert_eq!(files[0].key, "p/public.t/000000000003/part-00000.parquet");
    assert_eq!(files.iter().map(|f| f.row_count).sum::<u64>(), 10_000);
    let mut ids = Vec::new();
    for f in &files {
        let local = staging.local_file(&f.key).await.unwrap();
        assert_eq!(std::fs::metadata(&local.path).unwrap().len(), f.byte_count);
        ids.extend(read_ids(&local.path));
    }
    assert_eq!(ids, (0..10_000).collect::<Vec<_>>());
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("p/public.t/000000000003"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    staging.remove_batch("p", "public.t", 3).await.unwrap();
    assert!(!dir.path().join("p/public.t/000000000003").exists());
    staging.remove_batch("p", "public.t", 3).await.unwrap();
    let missing = staging.local_file(&files[0].key).await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_batch_has_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let staging = Staging::local(dir.path()).unwrap();
    let w = staging.writer("p", "s", 1, schema()).await.unwrap();
    assert!(w.finish().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_zstd_compressed() {
    let dir = tempfile::tempdir().unwrap();
    let staging = Staging::local(dir.path()).unwrap();
    let mut w = staging.writer("p", "s", 1, schema()).await.unwrap();
    w.write(batch(0, 100)).await.unwrap();
    let files = w.finish().await.unwrap();
    let meta = ParquetRecordBatchReaderBuilder::try_new(File::open(dir.path().join(&files[0].key)).unwrap())
        .unwrap()
        .metadata()
        .clone();
    let col = meta.row_group(0).column(1);
    assert!(matches!(col.compression(), Compression::ZSTD(_)), "{:?}", col.compression());
}

#[test]
fn unknown_schemes_are_refused_with_the_fix() {
    let e = Staging::open("gs://bucket/prefix", Path::new("."), &S3Options::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.to_string().contains("`gs://` staging is not supported"), "{e}");
    assert!(e.hint().unwrap().contains("s3://"), "{e}");
    let e = Staging::open("s3:///nobucket", Path::new("."), &S3Options::default()).unwrap_err();
    assert!(e.to_string().contains("no bucket"), "{e}");
}

#[test]
fn s3_options_never_show_the_secret() {
    let o = S3Options { secret_access_key: Some("hunter2-secret".into()), ..Default::default() };
    assert!(!format!("{o:?}").contains("hunter2"));
}

mod decimal_statistics {
    use super::*;
    use arrow_array::{Decimal128Array, Int64Array};
    use arrow_schema::{Field, Schema};
    use parquet::file::reader::{FileReader, SerializedFileReader};

    /// Decimal columns carry no statistics (their min and max would keep
    /// every batch's converted buffer alive until the file closes); other
    /// columns keep theirs per column chunk.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn decimal_columns_are_written_without_statistics() {
        let dir = tempfile::tempdir().unwrap();
        let staging = Staging::local(dir.path()).unwrap();
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("amount", DataType::Decimal128(12, 2), true),
        ]));
        let mut w = staging.writer("p", "public.t", 1, schema.clone()).await.unwrap();
        for b in 0..3i64 {
            let ids = Int64Array::from_iter_values(b * 1000..(b + 1) * 1000);
            let amounts = Decimal128Array::from_iter_values((b * 1000..(b + 1) * 1000).map(|i| i as i128 * 7))
                .with_precision_and_scale(12, 2)
                .unwrap();
            w.write(RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(amounts)]).unwrap())
                .await
                .unwrap();
        }
        let files = w.finish().await.unwrap();
        let file = std::fs::File::open(dir.path().join(&files[0].key)).unwrap();
        let reader = SerializedFileReader::new(file).unwrap();
        let rg = reader.metadata().row_group(0);
        assert_eq!(rg.num_rows(), 3000);
        assert!(rg.column(0).statistics().is_some(), "the integer column keeps its statistics");
        assert!(rg.column(1).statistics().is_none(), "the decimal column has none");
    }
}
