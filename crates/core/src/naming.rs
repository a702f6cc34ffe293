//! Destination names (DESIGN.md §4).
//!
//! Names are normalised so analysts can type them unquoted: an `_` goes
//! between a lower-case letter or digit and an upper-case letter
//! (`createdAt` → `created_at`), everything is lower-cased, every run of other
//! characters becomes one `_`, the ends are trimmed, and a leading digit gets
//! a `_` in front. Generated SQL still quotes every identifier.

use std::collections::HashSet;
use std::fmt;

/// Normalises one identifier. Returns an empty string when nothing usable is
/// left (a name made only of punctuation or non-Latin letters); callers give
/// such names a positional fallback.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut prev_lower = false;
    let mut pending_sep = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() && prev_lower {
                pending_sep = true;
            }
            if pending_sep && !out.is_empty() {
                out.push('_');
            }
            pending_sep = false;
            out.push(c.to_ascii_lowercase());
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        } else {
            pending_sep = true;
            prev_lower = false;
        }
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A column name renamed to avoid a collision, reported to the user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rename {
    pub source: String,
    pub destination: String,
}

/// Destination column names for a table's source columns, in order.
///
/// Names that normalise to the same string get `_2`, `_3`… in column order;
/// names that normalise to nothing become `column_{n}` (n = 1-based
/// position). Returns the names and the renames that were forced.
pub fn column_names<'a>(source: impl IntoIterator<Item = &'a str>) -> (Vec<String>, Vec<Rename>) {
    let source: Vec<&str> = source.into_iter().collect();
    let mut names = Vec::with_capacity(source.len());
    let mut renames = Vec::new();
    let base: Vec<String> = source
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let n = normalize(s);
            if n.is_empty() { format!("column_{}", i + 1) } else { n }
        })
        .collect();
    let mut taken: HashSet<String> = HashSet::new();
    for (i, n) in base.iter().enumerate() {
        let mut candidate = n.clone();
        let mut k = 1;
        while taken.contains(&candidate) {
            k += 1;
            candidate = format!("{n}_{k}");
        }
        if candidate != normalize(source[i]) {
            renames.push(Rename { source: source[i].to_owned(), destination: candidate.clone() });
        }
        taken.insert(candidate.clone());
        names.push(candidate);
    }
    (names, renames)
}

/// The values a `table_name` template is filled with.
#[derive(Debug, Clone)]
pub struct TableNameParts<'a> {
    pub source: &'a str,
    pub database: &'a str,
    pub schema: &'a str,
    pub table: &'a str,
}

/// Renders a `table_name` template and normalises the result.
pub fn table_name(template: &str, parts: &TableNameParts<'_>) -> String {
    let rendered = template
        .replace("{source}", parts.source)
        .replace("{database}", parts.database)
        .replace("{schema}", parts.schema)
        .replace("{table}", parts.table);
    let n = normalize(&rendered);
    if n.is_empty() { "table".to_owned() } else { n }
}

/// A stream's name, exactly as the source spells it: a table in a schema
/// (`public.orders`), or an API object with no namespace (Stripe
/// `customers`, Salesforce `Account`).
///
/// A name written without a namespace stays without one; the source says
/// whether it has a default namespace to look it up in
/// ([`crate::Source::default_namespace`]: Postgres's `public`), and
/// [`StreamName::qualified`] applies it. Serialised as `{"schema", "table"}`,
/// the shape state files have always held.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct StreamName {
    #[serde(rename = "schema")]
    pub namespace: Option<String>,
    #[serde(rename = "table")]
    pub name: String,
}

impl StreamName {
    /// A name in a namespace (`public`, `orders`).
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        StreamName { namespace: Some(namespace.into()), name: name.into() }
    }

    /// A name without a namespace (`customers`).
    pub fn bare(name: impl Into<String>) -> Self {
        StreamName { namespace: None, name: name.into() }
    }

    /// This name in `default` when it has no namespace of its own.
    pub fn qualified(self, default: Option<&str>) -> StreamName {
        match (self.namespace, default) {
            (None, Some(d)) => StreamName { namespace: Some(d.to_owned()), name: self.name },
            (namespace, _) => StreamName { namespace, ..self },
        }
    }

    /// The namespace, or `""` when there is none (for templates and paths).
    pub fn namespace_or_empty(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }

    /// Parses `public.orders`, `orders` (no namespace), or quoted parts
    /// such as `"My Schema"."Order.Items"` (`""` inside quotes is a quote).
    /// Unquoted parts are taken as written: Postgres folds unquoted names to
    /// lower case, but config authors copy names from `discover`, which
    /// prints them exactly.
    pub fn parse(s: &str) -> Result<StreamName, String> {
        let mut parts = Vec::new();
        let mut cur = String::new();
        let mut chars = s.trim().chars().peekable();
        let mut quoted_part = false;
        while let Some(c) = chars.next() {
            match c {
                '"' if cur.is_empty() && !quoted_part => {
                    quoted_part = true;
                    loop {
                        match chars.next() {
                            Some('"') if chars.peek() == Some(&'"') => {
                                chars.next();
                                cur.push('"');
                            }
                            Some('"') => break,
                            Some(c) => cur.push(c),
                            None => return Err(format!("`{s}` has an unclosed quote")),
                        }
                    }
                }
                '.' => {
                    parts.push(std::mem::take(&mut cur));
                    quoted_part = false;
                }
                _ if quoted_part => return Err(format!("`{s}`: unexpected `{c}` after a quoted name")),
                _ => cur.push(c),
            }
        }
        parts.push(cur);
        match parts.as_slice() {
            [t] if !t.is_empty() => Ok(StreamName::bare(t.clone())),
            [sch, t] if !sch.is_empty() && !t.is_empty() => Ok(StreamName::new(sch.clone(), t.clone())),
            _ => Err(format!(
                "`{s}` is not a stream name like `public.orders`, `customers` or `\"My Schema\".\"My Table\"`"
            )),
        }
    }

    /// The form the config and the CLI use for a part of a namespaced
    /// name: quoted unless plain lower case, as Postgres prints identifiers
    /// (state files key streams by this form).
    pub fn display_part(part: &str) -> String {
        let plain = !part.is_empty()
            && !part.starts_with(|c: char| c.is_ascii_digit())
            && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if plain { part.to_owned() } else { quote_part(part) }
    }
}

fn quote_part(part: &str) -> String {
    format!("\"{}\"", part.replace('"', "\"\""))
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}.{}", Self::display_part(ns), Self::display_part(&self.name)),
            // A bare name (an API object) is shown as it is spelled, quoted
            // only where it would not parse back (a dot, a quote, spaces at an end).
            None => {
                let needs_quotes =
                    self.name.is_empty() || self.name.contains(['.', '"']) || self.name.trim() != self.name;
                if needs_quotes { f.write_str(&quote_part(&self.name)) } else { f.write_str(&self.name) }
            }
        }
    }
}

/// `*` (any run of characters) and `?` (one character) glob matching.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Whether a stream matches a pattern like `public.*`, `sales.order_?` or
/// `charge*`: namespace and name each by [`glob_match`]; a pattern without a
/// namespace matches only names without one (qualify it first).
pub fn pattern_matches(pattern: &StreamName, stream: &StreamName) -> bool {
    let namespace = match (&pattern.namespace, &stream.namespace) {
        (Some(p), Some(s)) => glob_match(p, s),
        (None, None) => true,
        _ => false,
    };
    namespace && glob_match(&pattern.name, &stream.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_the_design_says() {
        assert_eq!(normalize("Order ID"), "order_id");
        assert_eq!(normalize("createdAt"), "created_at");
        assert_eq!(normalize("already_snake"), "already_snake");
        assert_eq!(normalize("  --weird__Name!! "), "weird_name");
        assert_eq!(normalize("2fa_enabled"), "_2fa_enabled");
        assert_eq!(normalize("HTTPStatus"), "httpstatus");
        assert_eq!(normalize("userID2Name"), "user_id2_name");
        assert_eq!(normalize("Ünïcödé"), "n_c_d");
        assert_eq!(normalize("日本"), "");
        assert_eq!(normalize("a.b"), "a_b");
    }

    #[test]
    fn colliding_columns_get_suffixes_in_order() {
        let (names, renames) = column_names(["id", "ID", "Id", "id_2", "日本"]);
        assert_eq!(names, vec!["id", "id_2", "id_3", "id_2_2", "column_5"]);
        assert_eq!(
            renames,
            vec![
                Rename { source: "ID".into(), destination: "id_2".into() },
                Rename { source: "Id".into(), destination: "id_3".into() },
                Rename { source: "id_2".into(), destination: "id_2_2".into() },
                Rename { source: "日本".into(), destination: "column_5".into() },
            ]
        );
    }

    #[test]
    fn table_names_render_and_normalise() {
        let parts = TableNameParts { source: "app", database: "Shop-DB", schema: "public", table: "OrderItems" };
        assert_eq!(table_name("{source}_{database}_{table}", &parts), "app_shop_db_order_items");
        assert_eq!(table_name("{schema}__{table}", &parts), "public_order_items");
    }

    #[test]
    fn parses_stream_names() {
        assert_eq!(StreamName::parse("public.orders").unwrap(), StreamName::new("public", "orders"));
        assert_eq!(StreamName::parse("orders").unwrap(), StreamName::bare("orders"));
        assert_eq!(StreamName::parse("orders").unwrap().qualified(Some("public")), StreamName::new("public", "orders"));
        assert_eq!(StreamName::parse("s.t").unwrap().qualified(Some("public")), StreamName::new("s", "t"));
        for bare in ["Account", "customers", "a.b", "\"q\"", " x"] {
            let n = StreamName::bare(bare);
            assert_eq!(StreamName::parse(&n.to_string()).unwrap(), n, "{n}");
        }
        assert_eq!(StreamName::bare("Account").to_string(), "Account");
        assert_eq!(
            serde_json::to_string(&StreamName::new("public", "t")).unwrap(),
            r#"{"schema":"public","table":"t"}"#
        );
        assert_eq!(
            StreamName::parse(r#""My Schema"."Order.Items""#).unwrap(),
            StreamName::new("My Schema", "Order.Items")
        );
        assert_eq!(StreamName::parse(r#"s."a""b""#).unwrap(), StreamName::new("s", "a\"b"));
        assert!(StreamName::parse("a.b.c").is_err());
        assert!(StreamName::parse("\"open").is_err());
        assert!(StreamName::parse("").is_err());
        let n = StreamName::new("My Schema", "a\"b");
        assert_eq!(n.to_string(), r#""My Schema"."a""b""#);
        assert_eq!(StreamName::parse(&n.to_string()).unwrap(), n);
    }
}
