//! OpenAPI documents as tools: each operation of an `openapi:` entry becomes an HTTP tool
//! (`tools[]` as if written by hand), so it is called by the same machinery, with the same
//! argument encoding and injection guards, policy, limits, audit and identity headers.
//!
//! An operation's arguments are its path, query and header parameters and, for a JSON request
//! body that is an object, that object's properties (sent as the JSON body). Its input schema
//! is built from theirs, with local `$ref`s resolved (a cycle becomes `{}`) and OpenAPI 3.0's
//! `nullable` and boolean `exclusiveMinimum`/`exclusiveMaximum` turned into JSON Schema 2020-12.
//! Its output schema is the first 2xx JSON response's (wrapped as `{"result": …}` when not an
//! object, as the call's `structuredContent` is). An operation Warden cannot call faithfully is
//! left out, and said why in the log: a required cookie parameter, a parameter on a header
//! Warden sets itself, a required body that is not a JSON object, two parameters with one name.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::config::{AuditArguments, HttpToolConfig, RestArgs, ToolConfig, default_cost};
use crate::config_error::ConfigError;

/// One `openapi:` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenApiConfig {
    /// Names the document: the default tool prefix and the `openapi` metadata of its tools.
    pub name: String,
    /// The document (JSON or YAML): a path relative to the config file, or an http(s) URL
    /// (fetched once at start-up, through the SSRF guard).
    pub spec: String,
    /// Overrides the document's `servers`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Operations to keep: operationIds, `tag:NAME`, or path globs (`/pet/*`, `/store/**`).
    /// Default: all.
    #[serde(default)]
    pub include: Vec<String>,
    /// Operations to leave out, in the same forms; applied after `include`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Tool name prefix. Default: `{name}_`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The `credentials[]` entry for operations with a security requirement, unless
    /// `credentials` maps their scheme.
    #[serde(default)]
    pub credential: Option<String>,
    /// Security scheme name → `credentials[]` entry.
    #[serde(default)]
    pub credentials: BTreeMap<String, String>,
    /// The `aud` of the signed identity assertion (`identity_headers.assertion`) sent to it.
    /// Default: the upstream's origin, `scheme://host[:port]`.
    #[serde(default)]
    pub audience: Option<String>,
    /// Scopes every tool of the document needs.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Tags every tool of the document gets (besides the operation's own valid tags).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Per operation (by operationId): another name, description, scopes or tags.
    #[serde(default)]
    pub operations: BTreeMap<String, OperationOverride>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    #[serde(default = "default_cost")]
    pub cost: u64,
    #[serde(default)]
    pub audit_arguments: AuditArguments,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationOverride {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];
/// Headers a parameter may not set: what Warden sets itself or never forwards.
const OWN_HEADERS: &[&str] =
    &["authorization", "cookie", "host", "content-type", "content-length", "accept", "traceparent", "x-request-id"];
/// Largest document read.
const MAX_DOCUMENT: usize = 16 << 20;

/// The tools of every `openapi:` entry.
pub fn expand_all(
    configs: &[OpenApiConfig],
    base_dir: &Path,
    upstream: &crate::upstream::config::UpstreamConfig,
) -> Result<Vec<ToolConfig>, ConfigError> {
    let mut names = BTreeSet::new();
    let mut tools = Vec::new();
    for (i, c) in configs.iter().enumerate() {
        let at = |field: &str| format!("openapi[{i}].{field}");
        if !names.insert(c.name.clone()) {
            return Err(ConfigError::new(at("name"), format!("duplicate name {:?}", c.name)));
        }
        let (doc, location) = load(&c.spec, base_dir, upstream).map_err(|m| ConfigError::new(at("spec"), m))?;
        tools.extend(expand(c, &doc, &location).map_err(|(field, m)| ConfigError::new(at(field), m))?);
    }
    Ok(tools)
}

/// Where a document came from: its URL (for relative `servers`), or none for a file.
type Location = Option<url::Url>;

fn load(spec: &str, base_dir: &Path, upstream: &crate::upstream::config::UpstreamConfig) -> Result<(Value, Location), String> {
    let (text, location) = if spec.starts_with("http://") || spec.starts_with("https://") {
        let url = url::Url::parse(spec).map_err(|_| "not a valid URL".to_owned())?;
        (fetch(&url, upstream)?, Some(url))
    } else {
        let path = base_dir.join(spec);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        (text, None)
    };
    // Parsing time grows faster than the depth of nested brackets: bounded before parsing.
    let depth = nesting_depth(&text);
    if depth > MAX_NESTING {
        return Err(format!("nested {depth} levels deep (at most {MAX_NESTING})"));
    }
    let doc: Value = serde_norway::from_str(&text).map_err(|e| format!("not a JSON or YAML document: {e}"))?;
    let version = doc.get("openapi").and_then(Value::as_str).unwrap_or_default();
    if !(version.starts_with("3.0.") || version.starts_with("3.1.")) {
        return Err(format!("OpenAPI 3.0 or 3.1 expected, found openapi: {version:?}"));
    }
    Ok((doc, location))
}

/// The document at `url`, through the SSRF guard (the upstream address policy), bounded in
/// size and time. Start-up is synchronous: the fetch runs on a thread with its own runtime.
fn fetch(url: &url::Url, upstream: &crate::upstream::config::UpstreamConfig) -> Result<String, String> {
    let policy = crate::upstream::AddressPolicy::of(upstream);
    if !policy.permits_literal(url) {
        return Err("an internal address the SSRF guard does not allow (see upstream.allow_cidrs)".into());
    }
    let url = url.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let client = crate::upstream::guarded_client(&policy).map_err(|e| e.to_string())?;
            let response =
                client.get(url.clone()).timeout(Duration::from_secs(15)).send().await.map_err(|e| {
                    if e.is_timeout() { "timed out".to_owned() } else { format!("cannot fetch {url}: {}", e.without_url()) }
                })?;
            if !response.status().is_success() {
                return Err(format!("fetching {url} answered HTTP {}", response.status().as_u16()));
            }
            let body = crate::body::read_limited(response, MAX_DOCUMENT)
                .await
                .map_err(|_| "the document is too large or unreadable".to_owned())?;
            String::from_utf8(body.to_vec()).map_err(|_| "the document is not UTF-8".to_owned())
        })
    })
    .join()
    .map_err(|_| "the fetch failed".to_owned())?
}

type Failure = (&'static str, String);

fn expand(c: &OpenApiConfig, doc: &Value, location: &Location) -> Result<Vec<ToolConfig>, Failure> {
    expansion_within_bounds(doc).map_err(|m| ("spec", m))?;
    let v30 = doc.get("openapi").and_then(Value::as_str).is_some_and(|v| v.starts_with("3.0."));
    let base = base_url(c, doc, location)?;
    let prefix = c.prefix.clone().unwrap_or_else(|| format!("{}_", c.name));
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else { return Ok(Vec::new()) };
    let mut tools = Vec::new();
    let mut seen_ids = BTreeSet::new();
    for (path, item) in paths {
        let item = resolve(doc, item, v30, &mut Vec::new());
        let shared = item.get("parameters").and_then(Value::as_array).cloned().unwrap_or_default();
        for method in METHODS {
            let Some(op) = item.get(*method) else { continue };
            let id = op.get("operationId").and_then(Value::as_str).map_or_else(|| derived_id(method, path), str::to_owned);
            if !seen_ids.insert(id.clone()) {
                tracing::warn!(document = %c.name, operation = %id, "an operationId repeats; the second is left out");
                continue;
            }
            let tags: Vec<String> =
                op.get("tags").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect();
            if !selected(c, &id, path, &tags) {
                continue;
            }
            match operation(c, doc, v30, (&base, path, method), (&id, op, &shared, &tags), &prefix) {
                Ok(tool) => tools.push(tool),
                Err(why) => tracing::warn!(document = %c.name, operation = %id, reason = %why, "an OpenAPI operation is left out"),
            }
        }
    }
    for id in c.operations.keys() {
        if !seen_ids.contains(id) {
            return Err(("operations", format!("no operation {id:?} in the document")));
        }
    }
    Ok(tools)
}

/// `base_url`, or the document's first server (its variables at their defaults), made
/// absolute against the document's URL.
fn base_url(c: &OpenApiConfig, doc: &Value, location: &Location) -> Result<String, Failure> {
    if let Some(base) = &c.base_url {
        return Ok(base.trim_end_matches('/').to_owned());
    }
    let server = doc
        .get("servers")
        .and_then(Value::as_array)
        .and_then(|s| s.first())
        .ok_or(("base_url", "the document names no servers: give base_url".to_owned()))?;
    let mut url = server.get("url").and_then(Value::as_str).unwrap_or("/").to_owned();
    if let Some(vars) = server.get("variables").and_then(Value::as_object) {
        for (name, var) in vars {
            let default = var.get("default").and_then(Value::as_str).unwrap_or_default();
            url = url.replace(&format!("{{{name}}}"), default);
        }
    }
    if url::Url::parse(&url).is_ok() {
        return Ok(url.trim_end_matches('/').to_owned());
    }
    match location {
        Some(at) => at
            .join(&url)
            .map(|u| u.as_str().trim_end_matches('/').to_owned())
            .map_err(|_| ("base_url", format!("cannot resolve the server URL {url:?}"))),
        None => Err(("base_url", format!("the document's server URL {url:?} is relative: give base_url"))),
    }
}

fn derived_id(method: &str, path: &str) -> String {
    let slug: String = path.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("{method}{}", slug.trim_end_matches('_'))
}

/// Whether `include` keeps and `exclude` does not drop an operation.
fn selected(c: &OpenApiConfig, id: &str, path: &str, tags: &[String]) -> bool {
    let matches = |pattern: &str| match pattern.strip_prefix("tag:") {
        Some(tag) => tags.iter().any(|t| t == tag),
        None if pattern.starts_with('/') => glob(pattern, path),
        None => pattern == id,
    };
    (c.include.is_empty() || c.include.iter().any(|p| matches(p))) && !c.exclude.iter().any(|p| matches(p))
}

/// `*` is any text within a path segment, `**` any text.
fn glob(pattern: &str, text: &str) -> bool {
    if let Some(rest) = pattern.strip_prefix("**") {
        return (0..=text.len()).filter(|i| text.is_char_boundary(*i)).any(|i| glob(rest, &text[i..]));
    }
    if let Some(rest) = pattern.strip_prefix('*') {
        let segment = text.find('/').unwrap_or(text.len());
        return (0..=segment).any(|i| glob(rest, &text[i..]));
    }
    match (pattern.chars().next(), text.chars().next()) {
        (None, None) => true,
        (Some(p), Some(t)) if p == t => glob(&pattern[p.len_utf8()..], &text[t.len_utf8()..]),
        _ => false,
    }
}

/// One operation as a tool.
fn operation(
    c: &OpenApiConfig,
    doc: &Value,
    v30: bool,
    (base, path, method): (&str, &str, &str),
    (id, op, shared, tags): (&str, &Value, &[Value], &[String]),
    prefix: &str,
) -> Result<ToolConfig, String> {
    let over = c.operations.get(id).cloned().unwrap_or_default();
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut query = BTreeMap::new();
    let mut headers = BTreeMap::new();
    // Operation parameters override the path item's of the same name and location.
    let mut params: BTreeMap<(String, String), Value> = BTreeMap::new();
    for p in shared.iter().chain(op.get("parameters").and_then(Value::as_array).into_iter().flatten()) {
        let p = resolve(doc, p, v30, &mut Vec::new());
        let (Some(name), Some(place)) = (p.get("name").and_then(Value::as_str), p.get("in").and_then(Value::as_str)) else { continue };
        params.insert((place.to_owned(), name.to_owned()), p.clone());
    }
    // An apiKey scheme's header or query parameter is the credential's to set (a tool may not
    // map an argument onto its credential's place).
    let security = op.get("security").or_else(|| doc.get("security")).and_then(Value::as_array).cloned().unwrap_or_default();
    let schemes: Vec<String> = security.iter().filter_map(Value::as_object).flat_map(|r| r.keys().cloned()).collect();
    let key_places: Vec<(String, String)> = schemes
        .iter()
        .filter_map(|s| doc.pointer(&format!("/components/securitySchemes/{s}")))
        .filter(|s| s.get("type").and_then(Value::as_str) == Some("apiKey"))
        .filter_map(|s| Some((s.get("in")?.as_str()?.to_owned(), s.get("name")?.as_str()?.to_ascii_lowercase())))
        .collect();
    for ((place, name), p) in &params {
        if key_places.iter().any(|(i, n)| i == place && *n == name.to_ascii_lowercase()) {
            continue;
        }
        let is_required = place == "path" || p.get("required").and_then(Value::as_bool).unwrap_or(false);
        match place.as_str() {
            "cookie" if is_required => return Err(format!("cookie parameter {name:?} is required (cookies are not sent)")),
            "cookie" => continue,
            "header" if OWN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) => {
                if is_required {
                    return Err(format!("header parameter {name:?} is one Warden sets itself"));
                }
                continue;
            }
            _ => {}
        }
        if properties.contains_key(name) {
            return Err(format!("two parameters are named {name:?}"));
        }
        let mut schema = p.get("schema").cloned().unwrap_or_else(|| json!({}));
        if let (Some(description), Value::Object(s)) = (p.get("description").and_then(Value::as_str), &mut schema) {
            s.entry("description").or_insert_with(|| Value::String(description.to_owned()));
        }
        properties.insert(name.clone(), schema);
        if is_required {
            required.push(Value::String(name.clone()));
        }
        match place.as_str() {
            "query" => {
                query.insert(name.clone(), name.clone());
            }
            "header" => {
                headers.insert(name.clone(), name.clone());
            }
            _ => {}
        }
    }
    let mut rest = RestArgs::None;
    let mut body_arg = None;
    if let Some(body) = op.get("requestBody").map(|b| resolve(doc, b, v30, &mut Vec::new())) {
        let body_required = body.get("required").and_then(Value::as_bool).unwrap_or(false);
        let schema = body.get("content").and_then(Value::as_object).and_then(|content| {
            content
                .iter()
                .find(|(media, _)| media.starts_with("application/json") || media.ends_with("+json"))
                .and_then(|(_, m)| m.get("schema").cloned())
        });
        let flat = schema
            .as_ref()
            .and_then(|s| s.get("properties"))
            .and_then(Value::as_object)
            .filter(|p| p.keys().all(|k| !properties.contains_key(k)));
        match (schema.clone(), flat.cloned()) {
            // An object body whose properties are arguments of their own.
            (Some(schema), Some(flat)) => {
                properties.extend(flat);
                if body_required {
                    required.extend(schema.get("required").and_then(Value::as_array).cloned().unwrap_or_default());
                }
                rest = RestArgs::Json;
            }
            // Any other JSON body (an array, or properties named like parameters): one argument.
            (Some(schema), None) => {
                let name = ["body", "request_body", "_body"]
                    .into_iter()
                    .find(|n| !properties.contains_key(*n))
                    .ok_or("no free name for the body")?;
                properties.insert(name.to_owned(), schema);
                if body_required {
                    required.push(Value::String(name.to_owned()));
                }
                body_arg = Some(name.to_owned());
            }
            (None, _) if body_required => return Err("its request body is not JSON (form and file bodies are not sent)".into()),
            (None, _) => {}
        }
    }
    let mut input = Map::new();
    input.insert("type".into(), json!("object"));
    input.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        input.insert("required".into(), Value::Array(required));
    }
    input.insert("additionalProperties".into(), json!(false));

    let summary = op.get("summary").and_then(Value::as_str).unwrap_or_default().trim();
    let long = op.get("description").and_then(Value::as_str).unwrap_or_default().trim();
    let description = over.description.clone().unwrap_or_else(|| match (summary.is_empty(), long.is_empty()) {
        (false, false) => format!("{summary}\n\n{long}"),
        (false, true) => summary.to_owned(),
        (true, false) => long.to_owned(),
        (true, true) => format!("{} {path}", method.to_ascii_uppercase()),
    });
    let name = tool_name(&format!("{prefix}{}", over.name.as_deref().unwrap_or(id)));
    let mut tool_tags: Vec<String> = c.tags.iter().chain(&over.tags).cloned().collect();
    tool_tags.extend(
        tags.iter()
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':')))
            .cloned(),
    );
    let credential = schemes
        .iter()
        .find_map(|s| c.credentials.get(s).cloned())
        .or_else(|| (!schemes.is_empty()).then(|| c.credential.clone()).flatten());
    let mut metadata = Map::new();
    metadata.insert("openapi".into(), json!({"document": c.name, "operationId": id, "method": method.to_ascii_uppercase(), "path": path}));
    Ok(ToolConfig {
        name,
        title: (!summary.is_empty()).then(|| summary.to_owned()),
        description,
        input_schema: Value::Object(input),
        output_schema: output_schema(doc, v30, op),
        scopes: c.scopes.iter().chain(&over.scopes).cloned().collect(),
        tags: tool_tags,
        metadata,
        credential,
        audience: c.audience.clone(),
        cost: c.cost,
        audit_arguments: c.audit_arguments,
        http: HttpToolConfig {
            method: method.to_ascii_uppercase(),
            url: format!("{base}{path}"),
            query,
            headers,
            rest: Some(rest),
            body: body_arg,
            timeout: c.timeout,
        },
    })
}

/// 1 to 128 of `A-Z a-z 0-9 _ - .`; anything else becomes `_`.
fn tool_name(raw: &str) -> String {
    raw.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') { c } else { '_' }).take(128).collect()
}

/// The first 2xx JSON response's schema, as the call's `structuredContent` will be.
fn output_schema(doc: &Value, v30: bool, op: &Value) -> Option<Value> {
    let responses = op.get("responses")?.as_object()?;
    let (_, response) = responses.iter().find(|(code, _)| code.starts_with('2'))?;
    let response = resolve(doc, response, v30, &mut Vec::new());
    let content = response.get("content")?.as_object()?;
    let (_, media) = content.iter().find(|(media, _)| media.starts_with("application/json") || media.ends_with("+json"))?;
    let schema = media.get("schema")?.clone();
    let is_object = schema.get("type").and_then(Value::as_str) == Some("object");
    Some(if is_object { schema } else { json!({"type": "object", "properties": {"result": schema}, "required": ["result"]}) })
}

/// Brackets (`[`, `{`) nested deeper than this in a document are refused before it is parsed.
const MAX_NESTING: usize = 256;
/// Schema nodes all operations of one document may expand to, `$ref`s resolved: a document whose
/// shared subtrees are referenced many times (each level twice: 2^levels nodes) would otherwise
/// take memory exponential in its size.
const MAX_EXPANDED: usize = 1_000_000;

/// The deepest nesting of `[` and `{` outside quoted strings (an upper bound on the parse's
/// depth for JSON and YAML flow collections; block collections cannot nest deeply in a bounded
/// document).
fn nesting_depth(text: &str) -> usize {
    let (mut depth, mut max, mut quote, mut escaped) = (0usize, 0usize, None::<u8>, false);
    for b in text.bytes() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if b == b'\\' && q == b'"' {
                    escaped = true;
                } else if b == q {
                    quote = None;
                }
            }
            None => match b {
                b'"' | b'\'' => quote = Some(b),
                b'[' | b'{' => {
                    depth += 1;
                    max = max.max(depth);
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    max
}

/// Refuses a document whose operations would expand past [`MAX_EXPANDED`] schema nodes, naming
/// the path whose `$ref`s explode. Sizes are counted without expanding: each reference's size
/// is computed once (a reference back into one being counted counts 1, as [`resolve`] makes it
/// `{}`).
fn expansion_within_bounds(doc: &Value) -> Result<(), String> {
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else { return Ok(()) };
    let mut memo = HashMap::new();
    let mut total = 0usize;
    for (path, item) in paths {
        let size = expanded_size(doc, item, &mut memo, &mut Vec::new());
        total = total.saturating_add(size);
        if total > MAX_EXPANDED {
            return Err(format!(
                "paths.{path}: its $refs expand to more than {MAX_EXPANDED} schema nodes with those before it (shared schemas referenced many times over); leave such operations out of the document"
            ));
        }
    }
    Ok(())
}

fn expanded_size(doc: &Value, value: &Value, memo: &mut HashMap<String, usize>, stack: &mut Vec<String>) -> usize {
    match value {
        Value::Object(map) => {
            if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
                if let Some(size) = memo.get(reference) {
                    return *size;
                }
                if stack.iter().any(|r| r == reference) || stack.len() > 64 {
                    return 1;
                }
                let Some(target) = reference.strip_prefix('#').and_then(|pointer| doc.pointer(pointer)) else { return 1 };
                stack.push(reference.to_owned());
                let size = expanded_size(doc, target, memo, stack);
                stack.pop();
                memo.insert(reference.to_owned(), size);
                return size;
            }
            map.values().fold(1usize, |n, v| n.saturating_add(expanded_size(doc, v, memo, stack)))
        }
        Value::Array(items) => items.iter().fold(1usize, |n, v| n.saturating_add(expanded_size(doc, v, memo, stack))),
        _ => 1,
    }
}

/// `value` with every local `$ref` replaced by its target (recursively; a reference back into
/// one being resolved becomes `{}`, any value), and 3.0 schema forms made 2020-12.
fn resolve(doc: &Value, value: &Value, v30: bool, stack: &mut Vec<String>) -> Value {
    match value {
        Value::Object(map) => {
            if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
                if stack.iter().any(|r| r == reference) || stack.len() > 64 {
                    return json!({});
                }
                let target = reference.strip_prefix('#').and_then(|pointer| doc.pointer(pointer));
                let Some(target) = target else { return json!({}) };
                stack.push(reference.to_owned());
                let resolved = resolve(doc, target, v30, stack);
                stack.pop();
                return resolved;
            }
            let mut out = Map::new();
            for (k, v) in map {
                out.insert(k.clone(), resolve(doc, v, v30, stack));
            }
            if v30 {
                upgrade_30(&mut out);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| resolve(doc, v, v30, stack)).collect()),
        other => other.clone(),
    }
}

/// OpenAPI 3.0's schema dialect to JSON Schema 2020-12: `nullable`, boolean exclusive bounds,
/// and `example` (not a keyword) dropped.
fn upgrade_30(schema: &mut Map<String, Value>) {
    if schema.remove("nullable") == Some(Value::Bool(true))
        && let Some(t) = schema.get("type").cloned()
    {
        schema.insert(
            "type".into(),
            match t {
                Value::String(s) => json!([s, "null"]),
                other => other,
            },
        );
    }
    for (flag, bound) in [("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")] {
        match schema.get(flag) {
            Some(Value::Bool(true)) => {
                if let Some(b) = schema.remove(bound) {
                    schema.insert(flag.into(), b);
                } else {
                    schema.remove(flag);
                }
            }
            Some(Value::Bool(false)) => {
                schema.remove(flag);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_document_whose_refs_fan_out_is_refused_with_the_path() {
        // 40 levels, each referencing the next twice: 2^40 nodes if expanded.
        let mut schemas = serde_json::Map::new();
        for i in 0..40 {
            let next = serde_json::json!({"$ref": format!("#/components/schemas/L{}", i + 1)});
            schemas.insert(format!("L{i}"), serde_json::json!({"type": "object", "properties": {"a": next, "b": next}}));
        }
        schemas.insert("L40".into(), serde_json::json!({"type": "string"}));
        let doc = serde_json::json!({
            "openapi": "3.1.0",
            "paths": {"/boom": {"post": {"operationId": "boom", "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/L0"}}}}}}},
            "components": {"schemas": schemas},
        });
        let started = std::time::Instant::now();
        let refused = super::expansion_within_bounds(&doc).unwrap_err();
        assert!(refused.starts_with("paths./boom:"), "{refused}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "counted without expanding");
        // A shared schema referenced a few times is fine.
        let small = serde_json::json!({"openapi": "3.1.0", "paths": {"/a": {"get": {"responses": {"200": {"$ref": "#/r"}}}}}, "r": {"description": "x"}});
        assert!(super::expansion_within_bounds(&small).is_ok());
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let deep = format!("{{\"openapi\": \"3.1.0\", \"x\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(super::nesting_depth(&deep), 100_001);
        assert_eq!(super::nesting_depth(r#"{"a": "[[[[", 'b': '{{', "c": [1, {"d": []}]}"#), 4);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("deep.json"), &deep).unwrap();
        let refused = super::load("deep.json", dir.path(), &crate::upstream::config::UpstreamConfig::default()).unwrap_err();
        assert!(refused.contains("nested 100001 levels deep"), "{refused}");
    }
}

#[cfg(test)]
mod more_tests {
    use super::*;

    #[test]
    fn globs_match_within_and_across_segments() {
        assert!(glob("/pet/*", "/pet/{petId}"));
        assert!(!glob("/pet/*", "/pet/{petId}/uploadImage"));
        assert!(glob("/pet/**", "/pet/{petId}/uploadImage"));
        assert!(glob("/store/order", "/store/order"));
        assert!(!glob("/store", "/store/order"));
    }

    #[test]
    fn refs_resolve_cycles_stop_and_30_schemas_become_2020_12() {
        let doc = json!({"components": {"schemas": {
            "Node": {"type": "object", "properties": {"next": {"$ref": "#/components/schemas/Node"}, "n": {"type": "integer", "nullable": true, "minimum": 0, "exclusiveMinimum": true}}}
        }}});
        let node = resolve(&doc, &json!({"$ref": "#/components/schemas/Node"}), true, &mut Vec::new());
        assert_eq!(node["properties"]["next"], json!({}), "a reference back into itself is any value");
        assert_eq!(node["properties"]["n"], json!({"type": ["integer", "null"], "exclusiveMinimum": 0}));
        jsonschema::validator_for(&node).unwrap_or_else(|e| panic!("{e}"));
    }
}
