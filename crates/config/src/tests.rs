use super::*;

fn env(k: &str) -> Option<String> {
    match k {
        "PGPASSWORD" => Some("s3cr#t:x".into()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_yaml_with_env(text, env)
}

const FULL: &str = r#"
state: .simplyload/state.db
staging: .simplyload/staging
sources:
  app:
    type: postgres
    url: postgres://user:${PGPASSWORD}@localhost:5432/app
destinations:
  local:
    type: duckdb
    path: warehouse.duckdb
pipelines:
  app_to_local:
    source: app
    destination: local
    mode: full_refresh
    schedule: 15m
    table_name: "{source}_{database}_{table}"
    on_unrepresentable: report
    streams:
      - public.users
      - name: public.orders
        cursor: updated_at
        lookback: 5m
        soft_delete: deleted_at
        exclude_columns: [internal_notes]
        primary_key: [id]
"#;

#[test]
fn parses_the_documented_shape() {
    let cfg = parse(FULL).unwrap();
    let SourceConfig::Postgres(pg) = &cfg.sources["app"] else { panic!("app is a postgres source") };
    assert_eq!(pg.url.expose(), "postgres://user:s3cr#t:x@localhost:5432/app");
    let p = &cfg.pipelines["app_to_local"];
    assert_eq!(p.mode, SyncMode::FullRefresh);
    assert_eq!(p.schedule, Some(std::time::Duration::from_secs(900)));
    assert_eq!(p.streams.len(), 2);
    assert_eq!(p.streams[0].name, "public.users");
    let orders = &p.streams[1];
    assert_eq!(orders.cursor.as_deref(), Some("updated_at"));
    assert_eq!(orders.lookback, Some(Lookback::Duration(std::time::Duration::from_secs(300))));
    assert_eq!(orders.exclude_columns, vec!["internal_notes".to_string()]);
    assert_eq!(orders.primary_key, Some(vec!["id".to_string()]));
    assert_eq!(p.on_unrepresentable, OnUnrepresentable::Report);
}

#[test]
fn secrets_do_not_appear_in_debug_output() {
    let cfg = parse(FULL).unwrap();
    let dbg = format!("{cfg:?}");
    assert!(!dbg.contains("s3cr#t"), "{dbg}");
}

#[test]
fn unknown_top_level_key_is_named() {
    let e = parse("sourcez: {}\n").unwrap_err();
    assert!(e.message.contains("unknown field `sourcez`"), "{}", e.message);
}

#[test]
fn unknown_stream_key_is_named_with_its_path() {
    let text = FULL.replace("cursor: updated_at", "cursr: updated_at");
    let e = parse(&text).unwrap_err();
    assert!(e.message.contains("pipelines.app_to_local.streams[1]"), "{}", e.message);
    assert!(e.message.contains("unknown field `cursr`"), "{}", e.message);
}

#[test]
fn unknown_pipeline_key_is_named() {
    let text = FULL.replace("on_unrepresentable: report", "on_unrepresentible: report");
    let e = parse(&text).unwrap_err();
    assert!(e.message.contains("pipelines.app_to_local"), "{}", e.message);
    assert!(e.message.contains("on_unrepresentible"), "{}", e.message);
}

#[test]
fn unknown_source_key_is_named() {
    let text = FULL.replace("    url: postgres", "    urll: postgres");
    let e = parse(&text).unwrap_err();
    assert!(e.message.contains("sources.app"), "{}", e.message);
    assert!(e.message.contains("urll"), "{}", e.message);
}

#[test]
fn unknown_source_type_is_named() {
    let text = FULL.replace("type: postgres", "type: mysql");
    let e = parse(&text).unwrap_err();
    assert!(e.message.contains("sources.app"), "{}", e.message);
    assert!(e.message.contains("mysql"), "{}", e.message);
}

#[test]
fn missing_reference_is_named() {
    let text = FULL.replace("source: app\n", "source: ap\n");
    let e = parse(&text).unwrap_err();
    assert!(e.message.contains("pipelines.app_to_local.source"), "{}", e.message);
    assert!(e.message.contains("`ap`"), "{}", e.message);
    assert_eq!(e.hint.as_deref(), Some("defined sources: app"));
}

#[test]
fn missing_environment_variable_is_named_with_its_key() {
    let e = Config::from_yaml_with_env(FULL, |_| None).unwrap_err();
    assert!(e.message.contains("sources.app.url"), "{}", e.message);
    assert!(e.message.contains("PGPASSWORD is not set"), "{}", e.message);
}

#[test]
fn bad_template_is_rejected() {
    let text = FULL.replace("{source}_{database}_{table}", "{source}_{tabel}");
    let e = parse(&text).unwrap_err();
    assert!(e.message.contains("pipelines.app_to_local.table_name"), "{}", e.message);
    assert!(e.message.contains("{tabel}"), "{}", e.message);
    let text = FULL.replace("{source}_{database}_{table}", "{source}_all");
    assert!(parse(&text).unwrap_err().message.contains("must contain {table}"));
}

#[test]
fn bad_mode_and_schedule_are_named() {
    let e = parse(&FULL.replace("mode: full_refresh", "mode: fullrefresh")).unwrap_err();
    assert!(e.message.contains("pipelines.app_to_local.mode"), "{}", e.message);
    let e = parse(&FULL.replace("schedule: 15m", "schedule: soon")).unwrap_err();
    assert!(e.message.contains("pipelines.app_to_local.schedule"), "{}", e.message);
}

#[test]
fn duplicate_stream_is_rejected() {
    let text = FULL.replace("      - public.users\n", "      - public.users\n      - public.users\n");
    let e = parse(&text).unwrap_err();
    assert!(e.message.contains("listed twice"), "{}", e.message);
}

#[test]
fn relative_paths_resolve_against_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("conf");
    std::fs::create_dir(&sub).unwrap();
    let file = sub.join("simplyload.yaml");
    std::fs::write(&file, FULL.replace("${PGPASSWORD}", "pw")).unwrap();
    let cfg = Config::load(&file).unwrap();
    assert_eq!(cfg.state_path(), std::path::absolute(&sub).unwrap().join(".simplyload/state.db"));
    assert_eq!(cfg.resolve_path("/abs/x.duckdb"), PathBuf::from("/abs/x.duckdb"));
}

#[test]
fn missing_file_has_a_hint() {
    let e = Config::load(Path::new("/nonexistent/simplyload.yaml")).unwrap_err();
    assert!(e.message.contains("/nonexistent/simplyload.yaml"));
    assert!(e.hint.unwrap().contains("SIMPLYLOAD_CONFIG"));
}

#[test]
fn empty_file_is_an_empty_config() {
    let cfg = parse("").unwrap();
    assert!(cfg.pipelines.is_empty());
}

#[test]
fn a_stripe_source_has_defaults_and_refuses_what_cannot_work() {
    let yaml = |extra: &str| {
        format!(
            "sources:\n  pay:\n    type: stripe\n    api_key: rk_test_abc\n{extra}\
             destinations:\n  d:\n    type: duckdb\n    path: x.duckdb\n\
             pipelines:\n  p:\n    source: pay\n    destination: d\n    mode: cdc\n    streams: [customers]\n"
        )
    };
    let cfg = parse(&yaml("")).unwrap();
    let SourceConfig::Stripe(stripe) = &cfg.sources["pay"] else { panic!("pay is a stripe source") };
    assert_eq!(stripe.api_version(), DEFAULT_STRIPE_API_VERSION);
    assert_eq!((stripe.page_size(), stripe.events_overlap_secs(), stripe.settle_lag_secs()), (100, 300, 60));
    assert!(!format!("{stripe:?}").contains("rk_test_abc"), "the key never shows in Debug");
    let e = parse(&yaml("    page_size: 101\n")).unwrap_err().to_string();
    assert!(e.contains("sources.pay.page_size") && e.contains("100"), "{e}");
    let e = parse(&yaml("    api_kye: x\n")).unwrap_err().to_string();
    assert!(e.contains("api_kye"), "{e}");
    let e = parse(&yaml("    settle_lag: soon\n")).unwrap_err().to_string();
    assert!(e.contains("soon"), "{e}");
}
