//! The wire protocol Snowflake's drivers speak: `POST
//! /session/v1/login-request` for a session token, `POST
//! /queries/v1/query-request` per statement (positional bind parameters),
//! results as JSON rows or Arrow IPC (`rowsetBase64`) plus result chunks
//! fetched from their URLs, `/session/heartbeat` to keep a session alive.
//! Written from Snowflake's drivers' documented behaviour; works against
//! Snowflake and against the `fakesnow` server.

use crate::error::{classify, needs_login};
use arrow_array::RecordBatch;
use base64::Engine;
use simplyload_core::config::Secret;
use simplyload_core::{Error, ErrorKind, Result};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How a session logs in.
#[derive(Clone)]
pub enum Credentials {
    Password(Secret),
    /// An RSA private key in PEM (PKCS#8, optionally encrypted, or PKCS#1).
    KeyPair {
        private_key_pem: Secret,
        passphrase: Option<Secret>,
    },
}

/// Where and as whom to log in.
#[derive(Clone)]
pub struct LoginOptions {
    /// `https://{account}.snowflakecomputing.com` unless set (tests point it at fakesnow).
    pub base_url: String,
    pub account: String,
    pub user: String,
    pub role: Option<String>,
    pub warehouse: Option<String>,
    pub database: Option<String>,
    pub schema: Option<String>,
    pub credentials: Credentials,
    /// Sent as `SESSION_PARAMETERS` (QUERY_TAG, TIMEZONE, …).
    pub session_parameters: serde_json::Map<String, serde_json::Value>,
    pub timeout: Duration,
}

impl LoginOptions {
    pub fn default_base_url(account: &str) -> String {
        format!("https://{account}.snowflakecomputing.com")
    }
}

impl std::fmt::Debug for LoginOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginOptions")
            .field("base_url", &self.base_url)
            .field("account", &self.account)
            .field("user", &self.user)
            .field("role", &self.role)
            .field("warehouse", &self.warehouse)
            .field("database", &self.database)
            .field("schema", &self.schema)
            .field("credentials", &"***")
            .finish()
    }
}

/// A bind parameter (`?` in the statement, by position).
#[derive(Debug, Clone, PartialEq)]
pub enum Binding {
    Null,
    Fixed(i128),
    Real(f64),
    Text(String),
    Boolean(bool),
}

impl Binding {
    fn json(&self) -> serde_json::Value {
        let (t, v) = match self {
            Binding::Null => ("ANY", serde_json::Value::Null),
            Binding::Fixed(i) => ("FIXED", i.to_string().into()),
            Binding::Real(f) => ("REAL", f.to_string().into()),
            Binding::Text(s) => ("TEXT", s.clone().into()),
            Binding::Boolean(b) => ("BOOLEAN", b.to_string().into()),
        };
        serde_json::json!({"type": t, "value": v})
    }
}

/// A result column as Snowflake describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Column {
    pub name: String,
    /// `fixed`, `real`, `text`, `boolean`, `date`, `time`, `timestamp_ntz`,
    /// `timestamp_ltz`, `timestamp_tz`, `variant`, `object`, `array`, `binary`.
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(default)]
    pub precision: Option<i64>,
    #[serde(default)]
    pub scale: Option<i64>,
    #[serde(default)]
    pub nullable: bool,
}

/// Result rows: JSON text cells, or Arrow record batches.
#[derive(Debug)]
pub enum Rows {
    Json(Vec<Vec<Option<String>>>),
    Arrow(Vec<RecordBatch>),
}

/// One statement's result.
#[derive(Debug)]
pub struct QueryResult {
    pub query_id: String,
    pub columns: Vec<Column>,
    pub statement_type_id: i64,
    pub rows: Rows,
}

impl QueryResult {
    pub fn row_count(&self) -> usize {
        match &self.rows {
            Rows::Json(r) => r.len(),
            Rows::Arrow(b) => b.iter().map(|b| b.num_rows()).sum(),
        }
    }

    /// The first cell of a JSON result (DML answers with its affected-row counts this way).
    pub fn first_cell(&self) -> Option<&str> {
        match &self.rows {
            Rows::Json(r) => r.first().and_then(|row| row.first()).and_then(|c| c.as_deref()),
            Rows::Arrow(_) => None,
        }
    }
}

/// A logged-in session. Statements run one at a time, in order.
pub struct Session {
    http: reqwest::Client,
    opts: LoginOptions,
    token: Mutex<String>,
    sequence: AtomicU64,
    /// Statements sent and their elapsed times, for the sync report.
    log: Mutex<Vec<(String, Duration)>>,
    /// Between BEGIN and COMMIT/ROLLBACK: an expired session is not renewed.
    in_transaction: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("opts", &self.opts).field("token", &"***").finish()
    }
}

fn http_error(e: reqwest::Error, what: &str) -> Error {
    let kind = if e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() {
        ErrorKind::Transient
    } else {
        ErrorKind::Internal
    };
    // Without the URL: result chunk and stage URLs carry signatures.
    Error::new(kind, format!("Snowflake, {what}: {}", e.without_url()))
}

/// The `data` of a successful response, or the classified error.
fn unwrap_response(status: u16, body: &[u8]) -> Result<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        let e = Error::new(
            if status >= 500 || status == 429 { ErrorKind::Transient } else { ErrorKind::Data },
            format!("Snowflake answered HTTP {status} with a body that is not JSON: {text:?}"),
        );
        e.with_hint("check the destination's base_url / account")
    })?;
    if v.get("success").and_then(|s| s.as_bool()) == Some(true) {
        return Ok(v.get("data").cloned().unwrap_or(serde_json::Value::Null));
    }
    let code = v
        .get("code")
        .and_then(|c| c.as_str().map(str::to_owned).or_else(|| c.as_i64().map(|i| format!("{i:06}"))))
        .unwrap_or_default();
    let message = v.get("message").and_then(|m| m.as_str()).unwrap_or("no message");
    Err(with_code(classify(&code, message, Some(status)), &code))
}

/// Carries the Snowflake error code in the error's context for callers that
/// need it (re-login, query-in-progress).
fn with_code(e: Error, code: &str) -> Error {
    e.context(format!("code {code}"))
}

fn error_code(e: &Error) -> Option<String> {
    // The statement's text may say "code" too: take the six-digit code.
    let s = e.to_string();
    s.match_indices("code ").find_map(|(i, _)| {
        let digits: String = s[i + 5..].chars().take_while(|c| c.is_ascii_digit()).collect();
        (digits.len() == 6).then_some(digits)
    })
}

impl Session {
    /// Logs in.
    pub async fn login(opts: LoginOptions) -> Result<Session> {
        simplyload_core::install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(Duration::from_secs(30))
            .user_agent(concat!("SimplyLoad/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::internal(format!("HTTP client: {e}")))?;
        let token = Self::login_token(&http, &opts).await?;
        Ok(Session {
            http,
            opts,
            token: Mutex::new(token),
            sequence: AtomicU64::new(1),
            log: Mutex::new(Vec::new()),
            in_transaction: std::sync::atomic::AtomicBool::new(false),
        })
    }

    async fn login_token(http: &reqwest::Client, opts: &LoginOptions) -> Result<String> {
        let mut data = serde_json::json!({
            "CLIENT_APP_ID": "SimplyLoad",
            "CLIENT_APP_VERSION": env!("CARGO_PKG_VERSION"),
            "ACCOUNT_NAME": crate::jwt::account_name(&opts.account),
            "LOGIN_NAME": opts.user,
            "CLIENT_ENVIRONMENT": {"APPLICATION": "SimplyLoad", "OS": std::env::consts::OS},
            "SESSION_PARAMETERS": opts.session_parameters,
        });
        match &opts.credentials {
            Credentials::Password(p) => data["PASSWORD"] = p.expose().into(),
            Credentials::KeyPair { private_key_pem, passphrase } => {
                let key = crate::jwt::read_key(private_key_pem.expose(), passphrase.as_ref().map(|p| p.expose()))?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                data["AUTHENTICATOR"] = "SNOWFLAKE_JWT".into();
                data["TOKEN"] = crate::jwt::token(&opts.account, &opts.user, &key, now)?.into();
            }
        }
        let mut query: Vec<(&str, String)> = vec![("request_id", uuid::Uuid::new_v4().to_string())];
        for (k, v) in [
            ("databaseName", &opts.database),
            ("schemaName", &opts.schema),
            ("warehouse", &opts.warehouse),
            ("roleName", &opts.role),
        ] {
            if let Some(v) = v {
                query.push((k, v.clone()));
            }
        }
        let url = format!("{}/session/v1/login-request", opts.base_url.trim_end_matches('/'));
        let resp = http
            .post(&url)
            .query(&query)
            .header("Accept", "application/json")
            .header("Content-Type", "application/json")
            .body(serde_json::json!({"data": data}).to_string())
            .send()
            .await
            .map_err(|e| {
                http_error(e, "logging in").with_hint(format!(
                    "check that {} is reachable (the destination's account or base_url)",
                    opts.base_url
                ))
            })?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| http_error(e, "reading the login answer"))?;
        let data = unwrap_response(status, &body)
            .map_err(|e| e.context(format!("logging in to Snowflake as {}", opts.user)))?;
        data.get("token")
            .and_then(|t| t.as_str())
            .map(str::to_owned)
            .ok_or_else(|| Error::data("Snowflake login answer has no session token"))
    }

    fn auth(&self) -> String {
        format!("Snowflake Token=\"{}\"", self.token.lock().expect("token lock"))
    }

    /// Runs one statement. A session that expired logs in again once.
    pub async fn query(&self, sql: &str, bindings: &[Binding]) -> Result<QueryResult> {
        let data = self.execute(sql, bindings).await?;
        self.parse_result(data).await
    }

    /// Runs a file command (`PUT`, `GET`) and returns the answer's `data`
    /// as sent: the stage location, credentials and encryption material
    /// the client then uploads with (see [`crate::put`]).
    pub async fn command(&self, sql: &str) -> Result<serde_json::Value> {
        self.execute(sql, &[]).await
    }

    /// Sends one statement, logging in again once if the session expired,
    /// and logs it with its elapsed time.
    async fn execute(&self, sql: &str, bindings: &[Binding]) -> Result<serde_json::Value> {
        let started = std::time::Instant::now();
        let result = match self.query_once(sql, bindings).await {
            // A new session would not carry the open transaction on: the
            // statements after it would commit on their own. Fail instead;
            // the caller rolls back and retries the whole load.
            Err(e) if error_code(&e).is_some_and(|c| needs_login(&c)) && self.in_transaction.load(Ordering::SeqCst) => {
                Err(Error::new(
                    ErrorKind::Transient,
                    format!("the Snowflake session expired inside a transaction: {e}"),
                ))
            }
            Err(e) if error_code(&e).is_some_and(|c| needs_login(&c)) => {
                tracing::info!("Snowflake session expired; logging in again");
                let token = Self::login_token(&self.http, &self.opts).await?;
                *self.token.lock().expect("token lock") = token;
                self.query_once(sql, bindings).await
            }
            other => other,
        };
        self.log.lock().expect("log lock").push((sql.to_owned(), started.elapsed()));
        let verb = sql.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "BEGIN" if result.is_ok() => self.in_transaction.store(true, Ordering::SeqCst),
            "COMMIT" | "ROLLBACK" => self.in_transaction.store(false, Ordering::SeqCst),
            _ => {}
        }
        result
    }

    async fn query_once(&self, sql: &str, bindings: &[Binding]) -> Result<serde_json::Value> {
        let mut body = serde_json::json!({
            "sqlText": sql,
            "asyncExec": false,
            "sequenceId": self.sequence.fetch_add(1, Ordering::SeqCst),
            "querySubmissionTime": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
        });
        if !bindings.is_empty() {
            let map: serde_json::Map<String, serde_json::Value> =
                bindings.iter().enumerate().map(|(i, b)| ((i + 1).to_string(), b.json())).collect();
            body["bindings"] = serde_json::Value::Object(map);
        }
        let req = self
            .http
            .post(self.url("/queries/v1/query-request"))
            .query(&[("requestId", uuid::Uuid::new_v4().to_string())])
            .header("Content-Type", "application/json")
            .body(body.to_string());
        let mut data = self.send(req, "sending a statement").await.map_err(|e| e.context(statement_for_error(sql)))?;
        // Still running: poll the result URL.
        while let Some(url) =
            data.get("getResultUrl").and_then(|u| u.as_str()).filter(|_| data.get("rowtype").is_none())
        {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let req = self.http.get(self.url(url));
            data = self.send(req, "polling a result").await.map_err(|e| e.context(statement_for_error(sql)))?;
        }
        Ok(data)
    }

    async fn parse_result(&self, data: serde_json::Value) -> Result<QueryResult> {
        let columns: Vec<Column> = serde_json::from_value(data.get("rowtype").cloned().unwrap_or_default())
            .map_err(|e| Error::data(format!("Snowflake result: bad rowtype: {e}")))?;
        let query_id = data.get("queryId").and_then(|q| q.as_str()).unwrap_or_default().to_owned();
        let statement_type_id = data.get("statementTypeId").and_then(|t| t.as_i64()).unwrap_or(0);
        let format = data.get("queryResultFormat").and_then(|f| f.as_str()).unwrap_or("json");
        let chunks = data.get("chunks").and_then(|c| c.as_array()).cloned().unwrap_or_default();
        let rows = if format == "arrow" {
            let mut batches = decode_arrow(data.get("rowsetBase64").and_then(|r| r.as_str()).unwrap_or(""))?;
            for c in &chunks {
                batches.extend(arrow_ipc(&self.fetch_chunk(&data, c).await?)?);
            }
            Rows::Arrow(batches)
        } else {
            let mut rows = json_rows(data.get("rowset").cloned().unwrap_or(serde_json::Value::Array(vec![])))?;
            for c in &chunks {
                rows.extend(json_chunk(&self.fetch_chunk(&data, c).await?)?);
            }
            Rows::Json(rows)
        };
        Ok(QueryResult { query_id, columns, statement_type_id, rows })
    }

    /// Downloads one result chunk (from cloud storage), with the headers the
    /// result names (`chunkHeaders`, or the `qrmk` SSE-C key).
    async fn fetch_chunk(&self, data: &serde_json::Value, chunk: &serde_json::Value) -> Result<Vec<u8>> {
        let url = chunk.get("url").and_then(|u| u.as_str()).ok_or_else(|| Error::data("result chunk without url"))?;
        let mut req = self.http.get(url);
        if let Some(headers) = data.get("chunkHeaders").and_then(|h| h.as_object()) {
            for (k, v) in headers {
                if let Some(v) = v.as_str() {
                    req = req.header(k, v);
                }
            }
        } else if let Some(qrmk) = data.get("qrmk").and_then(|q| q.as_str()) {
            req = req
                .header("x-amz-server-side-encryption-customer-algorithm", "AES256")
                .header("x-amz-server-side-encryption-customer-key", qrmk);
        }
        let resp = req.send().await.map_err(|e| http_error(e, "downloading a result chunk"))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(classify("", &format!("result chunk download failed with HTTP {status}"), Some(status)));
        }
        let bytes = resp.bytes().await.map_err(|e| http_error(e, "downloading a result chunk"))?;
        gunzip_if_needed(bytes.to_vec())
    }

    /// Keeps the session alive while it is idle.
    pub async fn heartbeat(&self) -> Result<()> {
        let req =
            self.http.post(self.url("/session/heartbeat")).query(&[("requestId", uuid::Uuid::new_v4().to_string())]);
        self.send(req, "heartbeat").await.map(|_| ())
    }

    /// This session's token, to end it from another process if this one
    /// dies inside a transaction (see [`Session::end`]). A secret.
    pub fn token(&self) -> Secret {
        Secret::new(self.token.lock().expect("token lock").clone())
    }

    /// Ends the session a token belongs to — one an earlier process left,
    /// perhaps inside a transaction, which Snowflake then rolls back and
    /// whose locks it releases. An expired or unknown token is not an error.
    pub async fn end(base_url: &str, token: &Secret, timeout: Duration) -> Result<()> {
        simplyload_core::install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| Error::internal(format!("HTTP client: {e}")))?;
        let resp = http
            .post(format!("{}/session", base_url.trim_end_matches('/')))
            .query(&[("delete", "true"), ("requestId", &uuid::Uuid::new_v4().to_string())])
            .header("Accept", "application/snowflake")
            .header("Authorization", format!("Snowflake Token=\"{}\"", token.expose()))
            .send()
            .await
            .map_err(|e| http_error(e, "ending an earlier session"))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| http_error(e, "ending an earlier session"))?;
        match unwrap_response(status, &body) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::Transient && status < 500 => Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::Auth | ErrorKind::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Ends the session.
    pub async fn close(&self) -> Result<()> {
        let req = self
            .http
            .post(self.url("/session"))
            .query(&[("delete", "true"), ("requestId", &uuid::Uuid::new_v4().to_string())]);
        self.send(req, "closing the session").await.map(|_| ())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.opts.base_url.trim_end_matches('/'))
    }

    /// Sends a request of this session (its token, Snowflake's media type)
    /// and returns the answer's `data`, or the classified error.
    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> Result<serde_json::Value> {
        let resp = req
            .header("Accept", "application/snowflake")
            .header("Authorization", self.auth())
            .send()
            .await
            .map_err(|e| http_error(e, what))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| http_error(e, what))?;
        unwrap_response(status, &bytes)
    }

    /// The statements sent so far and how long each took.
    pub fn statements(&self) -> Vec<(String, Duration)> {
        self.log.lock().expect("log lock").clone()
    }

    /// The HTTP client, for uploads to the stage's cloud storage.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

/// The statement, shortened, for an error message.
fn statement_for_error(sql: &str) -> String {
    let one_line: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    let short: String = one_line.chars().take(200).collect();
    format!("running `{short}{}`", if one_line.chars().count() > 200 { "…" } else { "" })
}

fn gunzip_if_needed(bytes: Vec<u8>) -> Result<Vec<u8>> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| Error::data(format!("result chunk: bad gzip: {e}")))?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

/// Arrow IPC stream bytes → record batches.
///
/// Snowflake's timestamp structs declare their children non-nullable, and
/// a NULL timestamp may arrive as NULL children under a struct without a
/// validity buffer (fakesnow sends exactly that). arrow-rs's reader would
/// refuse the batch, so the stream is decoded message by message with the
/// schema relaxed: every nested field nullable. Nothing else is loosened;
/// buffers are still fully validated.
pub fn arrow_ipc(bytes: &[u8]) -> Result<Vec<RecordBatch>> {
    use arrow_ipc::MessageHeader;
    let bad = |what: &str| Error::data(format!("Snowflake Arrow result: {what}"));
    let mut out = Vec::new();
    let mut schema: Option<arrow_schema::SchemaRef> = None;
    let dictionaries = std::collections::HashMap::new();
    let mut pos = 0usize;
    let read_i32 =
        |pos: usize| -> Option<i32> { bytes.get(pos..pos + 4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])) };
    while pos < bytes.len() {
        let Some(mut len) = read_i32(pos) else { break };
        pos += 4;
        if len == -1 {
            len = read_i32(pos).ok_or_else(|| bad("truncated message length"))?;
            pos += 4;
        }
        if len == 0 {
            break;
        }
        let len = usize::try_from(len).map_err(|_| bad("negative message length"))?;
        let meta = bytes.get(pos..pos + len).ok_or_else(|| bad("truncated message"))?;
        pos += len;
        let message = arrow_ipc::root_as_message(meta).map_err(|e| bad(&format!("bad message: {e}")))?;
        let body_len = usize::try_from(message.bodyLength()).map_err(|_| bad("negative body length"))?;
        let body = bytes.get(pos..pos + body_len).ok_or_else(|| bad("truncated body"))?;
        pos += body_len;
        match message.header_type() {
            MessageHeader::Schema => {
                let fb = message.header_as_schema().ok_or_else(|| bad("schema message without a schema"))?;
                let parsed = arrow_ipc::convert::try_fb_to_schema(fb).map_err(|e| bad(&format!("bad schema: {e}")))?;
                schema = Some(std::sync::Arc::new(relax(parsed)));
            }
            MessageHeader::RecordBatch => {
                let batch = message.header_as_record_batch().ok_or_else(|| bad("batch message without a batch"))?;
                let schema = schema.clone().ok_or_else(|| bad("a record batch before the schema"))?;
                let buf = arrow_buffer::Buffer::from(body);
                out.push(
                    arrow_ipc::reader::read_record_batch(&buf, batch, schema, &dictionaries, None, &message.version())
                        .map_err(|e| bad(&e.to_string()))?,
                );
            }
            MessageHeader::DictionaryBatch => return Err(bad("dictionary-encoded results are not supported")),
            _ => {}
        }
    }
    Ok(out)
}

/// The schema with every nested field nullable (see [`arrow_ipc`]).
fn relax(schema: arrow_schema::Schema) -> arrow_schema::Schema {
    use arrow_schema::{DataType, Field};
    fn field(f: &Field) -> Field {
        let dt = match f.data_type() {
            DataType::Struct(children) => {
                DataType::Struct(children.iter().map(|c| std::sync::Arc::new(field(c).with_nullable(true))).collect())
            }
            other => other.clone(),
        };
        f.clone().with_data_type(dt)
    }
    arrow_schema::Schema::new_with_metadata(
        schema.fields().iter().map(|f| field(f)).collect::<Vec<_>>(),
        schema.metadata().clone(),
    )
}

/// `rowsetBase64` → record batches.
pub fn decode_arrow(b64: &str) -> Result<Vec<RecordBatch>> {
    if b64.is_empty() {
        return Ok(Vec::new());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| Error::data(format!("Snowflake result: bad rowsetBase64: {e}")))?;
    arrow_ipc(&bytes)
}

fn json_rows(v: serde_json::Value) -> Result<Vec<Vec<Option<String>>>> {
    let rows = v.as_array().ok_or_else(|| Error::data("Snowflake result: rowset is not an array"))?;
    rows.iter()
        .map(|r| {
            r.as_array().ok_or_else(|| Error::data("Snowflake result: a row is not an array")).map(|cells| {
                cells
                    .iter()
                    .map(|c| match c {
                        serde_json::Value::Null => None,
                        serde_json::Value::String(s) => Some(s.clone()),
                        other => Some(other.to_string()),
                    })
                    .collect()
            })
        })
        .collect()
}

/// A JSON result chunk is the rows without the enclosing brackets: `[..],[..]`.
pub fn json_chunk(bytes: &[u8]) -> Result<Vec<Vec<Option<String>>>> {
    let mut text = Vec::with_capacity(bytes.len() + 2);
    text.push(b'[');
    text.extend_from_slice(bytes);
    text.push(b']');
    let v: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| Error::data(format!("Snowflake JSON result chunk: {e}")))?;
    json_rows(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn failures_are_classified_from_the_documented_body() {
        let body = br#"{"data":{"errorCode":"002003","sqlState":"42S02"},"code":"002003","message":"SQL compilation error:\nObject 'RAW_DATA.SIMPLYLOAD.X' does not exist or not authorized.","success":false}"#;
        let e = unwrap_response(200, body).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(error_code(&e).as_deref(), Some("002003"));
        let e = e.context("running `UPDATE t SET code = 1`");
        assert_eq!(error_code(&e).as_deref(), Some("002003"), "{e}");
        let e = unwrap_response(502, b"<html>Bad Gateway</html>").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Transient);
        let ok = unwrap_response(200, br#"{"data":{"token":"t"},"success":true}"#).unwrap();
        assert_eq!(ok["token"], "t");
        let e = unwrap_response(
            200,
            br#"{"data":null,"code":390100,"message":"Incorrect username or password was specified.","success":false}"#,
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Auth);
    }

    #[test]
    fn json_chunks_and_arrow_rowsets_decode() {
        let rows = json_chunk(br#"["1","a\"b"],[null,"2024-01-01"]"#).unwrap();
        assert_eq!(rows, vec![vec![Some("1".into()), Some("a\"b".into())], vec![None, Some("2024-01-01".into())]]);
        let batch = RecordBatch::try_from_iter(vec![
            ("ID", Arc::new(Int64Array::from(vec![1, 2])) as arrow_array::ArrayRef),
            ("S", Arc::new(StringArray::from(vec![Some("x"), None])) as arrow_array::ArrayRef),
        ])
        .unwrap();
        let mut buf = Vec::new();
        {
            let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut buf, &batch.schema()).unwrap();
            w.write(&batch).unwrap();
            w.finish().unwrap();
        }
        let b64 = base64::engine::general_purpose::STANDARD.encode(&buf);
        assert_eq!(decode_arrow(&b64).unwrap(), vec![batch.clone()]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &buf).unwrap();
        assert_eq!(arrow_ipc(&gunzip_if_needed(gz.finish().unwrap()).unwrap()).unwrap(), vec![batch]);
        assert!(decode_arrow("").unwrap().is_empty());
        assert!(decode_arrow("!!!").is_err());
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let o = LoginOptions {
            base_url: "http://x".into(),
            account: "a".into(),
            user: "u".into(),
            role: None,
            warehouse: None,
            database: None,
            schema: None,
            credentials: Credentials::Password(Secret::new("hunter2")),
            session_parameters: Default::default(),
            timeout: Duration::from_secs(1),
        };
        assert!(!format!("{o:?}").contains("hunter2"));
        assert_eq!(Binding::Fixed(-5).json(), serde_json::json!({"type": "FIXED", "value": "-5"}));
        assert!(statement_for_error(&"SELECT 1 ".repeat(100)).ends_with("…`"));
    }
}
