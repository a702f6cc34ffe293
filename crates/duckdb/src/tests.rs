use super::*;
use simplyload_core::StreamName;

fn spec(key: &[&str]) -> TableSpec {
    let col = |n: &str, t: SqlType| Column {
        source_name: n.to_string(),
        name: n.to_string(),
        sql_type: t,
        source_type: String::new(),
        nullable: true,
    };
    TableSpec {
        stream: StreamName::new("public", "t"),
        name: "app_db_t".into(),
        columns: vec![col("id", SqlType::Int64), col("we\"ird", SqlType::Decimal { precision: 12, scale: 2 })],
        key: key.iter().map(|s| s.to_string()).collect(),
        hashed: Vec::new(),
    }
}

#[test]
fn create_table_quotes_every_identifier() {
    assert_eq!(
        create_table_sql(DEFAULT_SCHEMA, &spec(&["id"])),
        "CREATE TABLE IF NOT EXISTS \"simplyload\".\"app_db_t\" (\n  \"id\" BIGINT,\n  \"we\"\"ird\" DECIMAL(12,2),\n  \
         \"_simplyload_synced_at\" TIMESTAMPTZ,\n  \"_simplyload_deleted\" BOOLEAN,\n  \"_simplyload_version\" DECIMAL(38,0)\n)"
    );
}

#[test]
fn keyless_tables_get_id_and_index() {
    let sql = create_table_sql(DEFAULT_SCHEMA, &spec(&[]));
    assert!(sql.contains("\"_simplyload_id\" VARCHAR"));
    assert!(sql.contains("\"_simplyload_index\" BIGINT"));
}

#[test]
fn literals_are_escaped() {
    assert_eq!(literal("/tmp/it's.parquet"), "'/tmp/it''s.parquet'");
}
