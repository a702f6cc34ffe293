//! `simplyload discover SOURCE`.

use crate::progress::count;
use simplyload_core::{Result, Selection};
use std::path::Path;

pub async fn run(config: Option<&Path>, source_name: &str, json: bool) -> Result<u8> {
    let app = super::app(config)?;
    let source = app.source(source_name)?;
    let catalog = simplyload_core::plan::discover(source.as_ref(), &Selection::all()).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&catalog).expect("catalog serializes"));
        return Ok(0);
    }
    println!("source {source_name} (database {}): {} streams\n", catalog.database, catalog.tables.len());
    for t in &catalog.tables {
        let rows = t.estimated_rows.map(|r| format!("~{} rows", count(r))).unwrap_or_else(|| "rows unknown".into());
        let key = if t.primary_key.is_empty() {
            "no primary key (rows get _simplyload_id)".to_owned()
        } else {
            format!("primary key ({})", t.primary_key.join(", "))
        };
        println!("{}  [{}]  {rows}  {key}", t.name, t.kind);
        let rows: Vec<Vec<String>> = t
            .columns
            .iter()
            .map(|c| {
                vec![
                    format!("  {}", c.name),
                    c.type_name.clone(),
                    c.sql_type.name(),
                    if c.nullable { "null".into() } else { "not null".into() },
                ]
            })
            .collect();
        super::print_table(&["  column", "type", "staged as", "nullable"], &rows);
        println!();
    }
    Ok(0)
}
