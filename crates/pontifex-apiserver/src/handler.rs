//! The one generic REST handler: get, list, watch, create, update, patch and delete for every kind in
//! the registry. Kinds differ only through the registry's strategy; the single kind-specific step here
//! is Service admission (cluster IPs and node ports), which Kubernetes also does outside the strategy.

use std::sync::Arc;

use http::{HeaderMap, Method};
use jiff::Timestamp;
use pontifex_api::field::ErrorList;
use pontifex_api::registry::ResourceType;
use pontifex_api::status::ApiError;
use pontifex_store::{Compare, KeyValue, Op, TxnOutcome};
use serde_json::{Value, json};

use crate::Reply;
use crate::admission::{self, Allocation};
use crate::objects::{self, decode, encode};
use crate::request::{Query, ResourceRequest};
use crate::select::Selectors;
use crate::server::State;
use crate::table::{self, Include, TableOpts};
use crate::{binding, podlog, scale, watch};

/// Requests are bounded, as kube-apiserver bounds them (3 MiB).
pub(crate) const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// How many times a write retries after losing a race (a concurrent update, or an allocation taken).
const WRITE_RETRIES: usize = 8;

pub(crate) struct Request<'a> {
    pub(crate) state: &'a Arc<State>,
    pub(crate) target: ResourceRequest,
    pub(crate) query: Query,
    pub(crate) headers: &'a HeaderMap,
}

impl Request<'_> {
    pub(crate) fn r(&self) -> &'static ResourceType {
        self.target.resource
    }

    pub(crate) fn ns(&self) -> Option<&str> {
        self.target.namespace.as_deref()
    }

    fn accept(&self) -> &str {
        self.headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn dry_run(&self) -> bool {
        self.query.get("dryRun") == Some("All")
    }

    fn not_found(&self, name: &str) -> ApiError {
        ApiError::NotFound {
            group: self.r().group.into(),
            resource: self.r().plural.into(),
            name: name.into(),
        }
    }

    fn conflict(&self, name: &str, detail: &str) -> ApiError {
        ApiError::Conflict {
            group: self.r().group.into(),
            resource: self.r().plural.into(),
            name: name.into(),
            detail: detail.into(),
        }
    }

    fn invalid(&self, name: &str, errors: ErrorList) -> ApiError {
        ApiError::Invalid {
            group: self.r().group.into(),
            kind: self.r().kind.into(),
            name: name.into(),
            errors,
        }
    }

    fn key(&self, name: &str) -> String {
        objects::key(self.r(), self.ns(), name)
    }
}

pub(crate) async fn handle(
    req: Request<'_>,
    method: &Method,
    body: bytes::Bytes,
) -> Result<Reply, ApiError> {
    let name = req.target.name.clone();
    let watching = req.target.legacy_watch || req.query.flag("watch");
    if req.target.subresource.as_deref() == Some("scale") {
        let name = name.ok_or(ApiError::MethodNotAllowed)?;
        return scale::handle(&req, method, &name, &body).await;
    }
    if req.target.subresource.as_deref() == Some("binding") {
        let name = name.ok_or(ApiError::MethodNotAllowed)?;
        return binding::handle(&req, method, &name, &body).await;
    }
    if req.target.subresource.as_deref() == Some("log") {
        let name = name.ok_or(ApiError::MethodNotAllowed)?;
        return podlog::handle(&req, method, &name).await;
    }
    match (method, name) {
        (&Method::GET, Some(name)) if !watching => get(&req, &name).await,
        (&Method::GET, name) => {
            if watching {
                watch::serve(&req, name.as_deref()).await
            } else {
                list(&req).await
            }
        }
        (&Method::POST, None) => create(&req, &body).await,
        (&Method::PUT, Some(name)) => update(&req, &name, &body).await,
        (&Method::PATCH, Some(name)) => patch(&req, &name, &body).await,
        (&Method::DELETE, Some(name)) => delete(&req, &name, &body).await,
        (&Method::DELETE, None) => delete_collection(&req, &body).await,
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// Reply with one object, or with a one-row Table when the client asked for a Table.
fn object_reply(req: &Request<'_>, code: u16, obj: Value) -> Result<Reply, ApiError> {
    if let Some(api_version) = table::requested(req.accept()) {
        let rv = objects::resource_version(&obj).unwrap_or("").to_owned();
        let t = table::build(
            req.r(),
            &[obj],
            &TableOpts {
                api_version,
                include: Include::parse(req.query.get("includeObject")),
                resource_version: &rv,
                continue_token: None,
                now: Timestamp::now(),
                with_columns: true,
            },
        )?;
        return Ok(Reply::json(code, &t));
    }
    Ok(Reply::json(code, &objects::with_type(obj, req.r())))
}

async fn get(req: &Request<'_>, name: &str) -> Result<Reply, ApiError> {
    let kv = req
        .state
        .store
        .get(&req.key(name))
        .await
        .map_err(objects::store_error)?;
    let obj = decode(&kv.ok_or_else(|| req.not_found(name))?)?;
    object_reply(req, 200, obj)
}

/// A continue token: the revision the first page was read at and the last key returned.
#[derive(serde::Serialize, serde::Deserialize)]
struct Continue {
    rv: i64,
    start: String,
}

async fn list(req: &Request<'_>) -> Result<Reply, ApiError> {
    let selectors = Selectors::parse(&req.query, req.r())?;
    let limit: usize = req
        .query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let cont: Option<Continue> = match req.query.get("continue") {
        Some(token) => Some(decode_continue(token)?),
        None => None,
    };
    let prefix = objects::prefix(req.r(), selectors.narrow_namespace(req.ns()));
    let (items, rv, next) = read_matching(
        req,
        &prefix,
        &selectors,
        limit,
        cont.as_ref().map(|c| c.start.as_str()),
    )
    .await?;
    let rv = cont.map_or(rv, |c| c.rv);
    let continue_token = next.map(|start| encode_continue(&Continue { rv, start }));
    let rv_s = rv.to_string();
    if let Some(api_version) = table::requested(req.accept()) {
        let t = table::build(
            req.r(),
            &items,
            &TableOpts {
                api_version,
                include: Include::parse(req.query.get("includeObject")),
                resource_version: &rv_s,
                continue_token: continue_token.as_deref(),
                now: Timestamp::now(),
                with_columns: true,
            },
        )?;
        return Ok(Reply::json(200, &t));
    }
    let mut metadata = json!({"resourceVersion": rv_s});
    if let Some(c) = continue_token {
        metadata["continue"] = json!(c);
    }
    let head = json!({
        "kind": req.r().list_kind(),
        "apiVersion": req.r().api_version(),
        "metadata": metadata,
    });
    // The items are the stored bytes with their resourceVersion spliced in: no parse, no tree, no
    // re-serialisation (those were most of a 10k-item list's time; bench/RESULTS.md).
    let mut body = serde_json::to_vec(&head).map_err(|e| ApiError::Internal(e.to_string()))?;
    body.pop(); // the closing brace; the items follow
    body.extend_from_slice(b",\"items\":[");
    for (i, kv) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        objects::write_stamped(kv, &mut body)?;
    }
    body.extend_from_slice(b"]}");
    Ok(Reply::bytes(
        200,
        "application/json",
        bytes::Bytes::from(body),
    ))
}

fn encode_continue(c: &Continue) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(c).unwrap_or_default())
}

fn decode_continue(token: &str) -> Result<Continue, ApiError> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| ApiError::BadRequest("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into()))
}

/// Read objects under `prefix` that match the selectors, at most `limit` (0 = all). Returns the stored
/// items (decoded only when a selector needs to look inside), the revision read at, and the key to
/// continue after when the limit cut the list short.
pub(crate) async fn read_matching(
    req: &Request<'_>,
    prefix: &str,
    selectors: &Selectors,
    limit: usize,
    start_after: Option<&str>,
) -> Result<(Vec<KeyValue>, i64, Option<String>), ApiError> {
    let mut items = Vec::new();
    let mut cursor = start_after.map(str::to_owned);
    // Selectors filter after the read, so pages are read in chunks until enough items match.
    let chunk = if limit == 0 { 0 } else { limit.max(64) };
    let mut first_rev = None;
    loop {
        let page = req
            .state
            .store
            .range(prefix, cursor.as_deref(), chunk)
            .await
            .map_err(objects::store_error)?;
        first_rev.get_or_insert(page.revision);
        for kv in &page.kvs {
            if selectors.is_empty() || selectors.matches(req.r(), &decode(kv)?)? {
                items.push(kv.clone());
                if limit > 0 && items.len() == limit {
                    let more = page.more
                        || kv.key != page.kvs.last().map(|l| l.key.clone()).unwrap_or_default();
                    let next = more.then(|| kv.key.clone());
                    return Ok((items, first_rev.unwrap_or_default(), next));
                }
            }
        }
        match (page.more, page.kvs.last()) {
            (true, Some(last)) => cursor = Some(last.key.clone()),
            _ => return Ok((items, first_rev.unwrap_or_default(), None)),
        }
    }
}

/// How strictly to treat unknown fields (`fieldValidation`; the server default is Warn).
#[derive(Clone, Copy, PartialEq, Eq)]
enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

fn field_validation(q: &Query) -> Result<FieldValidation, ApiError> {
    match q.get("fieldValidation") {
        None | Some("Warn") => Ok(FieldValidation::Warn),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some(other) => Err(ApiError::BadRequest(format!(
            "fieldValidation parameter unsupported: {other}, valid values are: Ignore, Warn, Strict"
        ))),
    }
}

/// Parse a request body: JSON, YAML for the content types that allow it, or Kubernetes protobuf (which
/// kubectl's typed clients send for `create`), decoded into the same JSON object.
fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if pontifex_api::protobuf::is_protobuf_media_type(ct) {
        return pontifex_api::protobuf::decode(body).map_err(|e| {
            ApiError::BadRequest(format!("failed to decode the protobuf request body: {e}"))
        });
    }
    if ct.starts_with("application/yaml") || ct.starts_with("application/apply-patch+yaml") {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::BadRequest("body is not UTF-8".into()))?;
        return serde_saphyr::from_str(text)
            .map_err(|e| ApiError::BadRequest(format!("error converting YAML to JSON: {e}")));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!("couldn't get version/kind; json parse error: {e}"))
    })
}

/// Decode a body into the kind: type and kind checks, then strict field validation. Returns the object and
/// any warnings to send back.
fn decode_body(req: &Request<'_>, mut body: Value) -> Result<(Value, Vec<String>), ApiError> {
    let r = req.r();
    if !body.is_object() {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        ));
    }
    for (field, want) in [("apiVersion", r.api_version()), ("kind", r.kind.to_owned())] {
        match body.get(field).and_then(Value::as_str) {
            None | Some("") => body[field] = json!(want),
            Some(got) if got == want => {}
            Some(got) => {
                return Err(ApiError::BadRequest(format!(
                    "the API version in the data ({}) does not match the expected API version ({})",
                    if field == "kind" {
                        format!("{}, Kind={got}", r.api_version())
                    } else {
                        got.to_owned()
                    },
                    if field == "kind" {
                        format!("{}, Kind={want}", r.api_version())
                    } else {
                        want
                    },
                )));
            }
        }
    }
    let decoded = r.strategy.decode(&body)?;
    let mode = field_validation(&req.query)?;
    let mut warnings = Vec::new();
    if !decoded.unknown_fields.is_empty() {
        match mode {
            FieldValidation::Strict => {
                let list: Vec<String> = decoded
                    .unknown_fields
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect();
                return Err(ApiError::BadRequest(format!(
                    "{kind} in version \"{v}\" cannot be handled as a {kind}: strict decoding error: {}",
                    list.join(", "),
                    kind = r.kind,
                    v = r.version
                )));
            }
            FieldValidation::Warn => {
                warnings.extend(
                    decoded
                        .unknown_fields
                        .iter()
                        .map(|f| format!("unknown field \"{f}\"")),
                );
            }
            FieldValidation::Ignore => {}
        }
    }
    Ok((decoded.object, warnings))
}

/// Default and validate a decoded object; on update `old` is the stored version.
fn default_and_validate(
    req: &Request<'_>,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let r = req.r();
    r.strategy.default(obj)?;
    if r.kind == "Service" && req.target.subresource.is_none() {
        // The IP family fields depend on the cluster's ranges; upstream sets them before validating.
        req.state
            .allocator
            .init_ip_families(obj, old)
            .map_err(|errors| req.invalid(objects::name(obj).unwrap_or(""), errors))?;
    }
    let errors = r.strategy.validate(obj, old)?;
    if !errors.is_empty() {
        return Err(req.invalid(objects::name(obj).unwrap_or(""), errors));
    }
    Ok(())
}

/// The namespace of a namespaced write must exist and not be terminating (NamespaceLifecycle admission).
async fn check_namespace(req: &Request<'_>, ns: &str) -> Result<(), ApiError> {
    let ns_type =
        pontifex_api::registry::lookup("", "v1", "namespaces").expect("namespaces are registered");
    let kv = req
        .state
        .store
        .get(&objects::key(ns_type, None, ns))
        .await
        .map_err(objects::store_error)?;
    let Some(kv) = kv else {
        return Err(ApiError::NotFound {
            group: String::new(),
            resource: "namespaces".into(),
            name: ns.into(),
        });
    };
    let obj = decode(&kv)?;
    if obj["status"]["phase"] == "Terminating"
        || !objects::meta(&obj)["deletionTimestamp"].is_null()
    {
        // The caller words the message, which names the object being created.
        return Err(ApiError::Forbidden(String::new()));
    }
    Ok(())
}

/// Server-owned metadata on create.
fn prepare_create(req: &Request<'_>, obj: &mut Value) -> Result<String, ApiError> {
    let r = req.r();
    let ns = req.ns().map(str::to_owned);
    let meta = objects::meta_mut(obj);
    if let Some(ns) = &ns {
        match meta.get("namespace").and_then(Value::as_str) {
            Some(given) if !given.is_empty() && given != ns => {
                return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request".into(),
                ));
            }
            _ => {
                meta.insert("namespace".into(), json!(ns));
            }
        }
    } else if !r.namespaced {
        meta.remove("namespace");
    }
    let name = match meta
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        Some(n) => n.to_owned(),
        None => match meta
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            Some(prefix) => {
                let name = format!("{prefix}{}", random_suffix());
                meta.insert("name".into(), json!(name));
                name
            }
            None => String::new(), // validation reports the missing name
        },
    };
    if meta
        .get("resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        return Err(ApiError::BadRequest(
            "resourceVersion should not be set on objects to be created".into(),
        ));
    }
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert(
        "creationTimestamp".into(),
        json!(objects::timestamp(Timestamp::now())),
    );
    for f in [
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
    ] {
        meta.remove(f);
    }
    if r.tracks_generation {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    if r.reset_status_on_create {
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
        if r.kind == "Pod" {
            obj["status"] = json!({"phase": "Pending"});
        }
    }
    Ok(name)
}

/// Five lowercase alphanumerics without vowels, as `generateName` gets from the real server.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random::<u32>() as usize % ALPHABET.len()] as char)
        .collect()
}

async fn create(req: &Request<'_>, body: &[u8]) -> Result<Reply, ApiError> {
    let value = parse_body(req.headers, body)?;
    let (obj, warnings) = decode_body(req, value)?;
    let (code, obj) = create_object(req, obj).await?;
    Ok(object_reply(req, code, obj)?.with_warnings(warnings))
}

/// Create a decoded object: metadata, defaults, validation, admission, then one store transaction.
async fn create_object(req: &Request<'_>, mut obj: Value) -> Result<(u16, Value), ApiError> {
    let name = prepare_create(req, &mut obj)?;
    default_and_validate(req, &mut obj, None)?;
    if let Some(ns) = req.ns() {
        check_namespace(req, ns).await.map_err(|e| match e {
            ApiError::Forbidden(_) => ApiError::Forbidden(format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                req.r().plural
            )),
            other => other,
        })?;
    }
    let key = req.key(&name);
    for _ in 0..WRITE_RETRIES {
        let mut candidate = obj.clone();
        let alloc = admit(req, &name, &mut candidate, None)?;
        if req.dry_run() {
            return Ok((201, candidate));
        }
        match commit(
            req,
            &key,
            Compare::Absent(key.clone()),
            Some(&candidate),
            &alloc,
        )
        .await?
        {
            Committed::Done(rev) => {
                objects::set_resource_version(&mut candidate, rev);
                return Ok((201, candidate));
            }
            Committed::ObjectChanged(_) => {
                return Err(ApiError::AlreadyExists {
                    group: req.r().group.into(),
                    resource: req.r().plural.into(),
                    name,
                });
            }
            Committed::Retry => continue,
        }
    }
    Err(ApiError::Unavailable(
        "too many conflicting allocations; try again".into(),
    ))
}

/// Service admission; other kinds allocate nothing.
fn admit(
    req: &Request<'_>,
    name: &str,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<Allocation, ApiError> {
    if req.r().kind != "Service" || req.target.subresource.is_some() {
        return Ok(Allocation::default());
    }
    req.state
        .allocator
        .allocate(obj, old)
        .map_err(|errors| req.invalid(name, errors))
}

enum Committed {
    Done(i64),
    /// The object's own comparison failed: it exists (create) or changed (update).
    ObjectChanged(Option<KeyValue>),
    /// An automatically chosen allocation was taken meanwhile: pick again.
    Retry,
}

/// Write (or delete, when `obj` is None) one object with its allocation keys in one transaction.
async fn commit(
    req: &Request<'_>,
    key: &str,
    guard: Compare,
    obj: Option<&Value>,
    alloc: &Allocation,
) -> Result<Committed, ApiError> {
    let mut compares = vec![guard];
    compares.extend(alloc.compares());
    let mut ops = vec![match obj {
        Some(o) => Op::Put {
            key: key.to_owned(),
            value: encode(o),
        },
        None => Op::Delete {
            key: key.to_owned(),
        },
    }];
    let owner = format!(
        "{}/{}",
        req.ns().unwrap_or(""),
        key.rsplit('/').next().unwrap_or("")
    );
    ops.extend(alloc.ops(&owner));
    match req
        .state
        .store
        .txn(compares, ops)
        .await
        .map_err(objects::store_error)?
    {
        TxnOutcome::Committed { revision } => {
            for c in &alloc.claims {
                req.state.allocator.observe(&c.key, true);
            }
            for k in &alloc.releases {
                req.state.allocator.observe(k, false);
            }
            Ok(Committed::Done(revision))
        }
        TxnOutcome::Failed { failed: 0, current } => Ok(Committed::ObjectChanged(current)),
        TxnOutcome::Failed { failed, .. } => {
            let claim = &alloc.claims[failed - 1];
            req.state.allocator.observe(&claim.key, true);
            if claim.chosen {
                let name = objects::name(obj.unwrap_or(&Value::Null))
                    .unwrap_or("")
                    .to_owned();
                Err(req.invalid(&name, vec![claim.error.clone()]))
            } else {
                Ok(Committed::Retry)
            }
        }
    }
}

async fn update(req: &Request<'_>, name: &str, body: &[u8]) -> Result<Reply, ApiError> {
    let value = parse_body(req.headers, body)?;
    let (obj, warnings) = decode_body(req, value)?;
    if objects::name(&obj).is_some_and(|n| n != name) {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            objects::name(&obj).unwrap_or("")
        )));
    }
    let (code, out) = update_object(req, name, |_current| Ok(obj.clone())).await?;
    Ok(object_reply(req, code, out)?.with_warnings(warnings))
}

/// The stored object at `key`, raw and decoded; 404 when it is absent.
pub(crate) async fn read_current(
    req: &Request<'_>,
    key: &str,
    name: &str,
) -> Result<(KeyValue, Value), ApiError> {
    let kv = req
        .state
        .store
        .get(key)
        .await
        .map_err(objects::store_error)?
        .ok_or_else(|| req.not_found(name))?;
    let current = decode(&kv)?;
    Ok((kv, current))
}

/// Read-modify-write with optimistic concurrency: `change` turns the stored object into the desired one;
/// a desired object carrying a resourceVersion must match the stored one (409 otherwise), and a
/// concurrent writer makes us re-read and retry (patches) or fail (PUT with a resourceVersion).
pub(crate) async fn update_object(
    req: &Request<'_>,
    name: &str,
    change: impl Fn(&Value) -> Result<Value, ApiError>,
) -> Result<(u16, Value), ApiError> {
    let key = req.key(name);
    for _ in 0..WRITE_RETRIES {
        let (kv, current) = read_current(req, &key, name).await?;
        let mut desired = change(&current)?;
        if let Some(rv) = objects::resource_version(&desired)
            && rv != kv.mod_revision.to_string()
        {
            return Err(req.conflict(
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        prepare_update(req, &mut desired, &current)?;
        if req.r().kind == "Service" && req.target.subresource.is_none() {
            admission::prepare_service_update(&mut desired, &current);
        }
        default_and_validate(req, &mut desired, Some(&current))?;
        let alloc = admit(req, name, &mut desired, Some(&current))?;
        bump_generation(req.r(), &mut desired, &current);
        let finished = deletion_finished(req.r().kind, &desired);
        if objects::same(&desired, &current) && !finished {
            // No change: no write, no new resourceVersion (kubectl apply relies on this being cheap).
            return Ok((200, current));
        }
        if req.dry_run() {
            return Ok((200, desired));
        }
        let guard = Compare::ModRevision(key.clone(), kv.mod_revision);
        let outcome = if finished {
            let release = release_all(req, &current);
            commit(req, &key, guard, None, &release).await?
        } else {
            commit(req, &key, guard, Some(&desired), &alloc).await?
        };
        match outcome {
            Committed::Done(rev) => {
                objects::set_resource_version(&mut desired, rev);
                return Ok((200, desired));
            }
            Committed::ObjectChanged(_)
                if objects::resource_version(&change(&current)?).is_some() =>
            {
                return Err(req.conflict(
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
            Committed::ObjectChanged(None) => return Err(req.not_found(name)),
            Committed::ObjectChanged(Some(_)) | Committed::Retry => continue,
        }
    }
    Err(req.conflict(name, "the object has been modified; please apply your changes to the latest version and try again"))
}

/// Keep what an update may not change: identity, creation, deletion state; and split main resource and
/// status subresource writes.
fn prepare_update(req: &Request<'_>, desired: &mut Value, current: &Value) -> Result<(), ApiError> {
    let r = req.r();
    let cur_meta = objects::meta(current).clone();
    if req.target.subresource.as_deref() == Some("status") {
        // The status subresource changes status only.
        let status = desired.get("status").cloned();
        *desired = current.clone();
        match status {
            Some(s) => desired["status"] = s,
            None => {
                if let Some(o) = desired.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        return Ok(());
    }
    if req.target.subresource.as_deref() == Some("binding") {
        // The binding is computed from the stored pod: spec.nodeName, annotations, PodScheduled.
        return Ok(());
    }
    if req.target.subresource.as_deref() == Some("finalize") {
        *desired = finalized(current, desired);
        return Ok(());
    }
    let meta = objects::meta_mut(desired);
    for f in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
    ] {
        match cur_meta.get(f) {
            Some(v) => {
                meta.insert(f.into(), v.clone());
            }
            None => {
                meta.remove(f);
            }
        }
    }
    meta.insert("name".into(), cur_meta["name"].clone());
    meta.remove("managedFields");
    if r.status_subresource {
        match current.get("status") {
            Some(s) => desired["status"] = s.clone(),
            None => {
                if let Some(o) = desired.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    Ok(())
}

/// Whether an update leaves a marked object with nothing holding it, so the write is its deletion: no
/// `metadata.finalizers`, and for a Namespace no `spec.finalizers` either (the namespace controller
/// empties those through `finalize` once the namespace's content is gone).
fn deletion_finished(kind: &str, desired: &Value) -> bool {
    let empty = |v: &Value| v.as_array().is_none_or(Vec::is_empty);
    !objects::meta(desired)["deletionTimestamp"].is_null()
        && empty(&objects::meta(desired)["finalizers"])
        && (kind != "Namespace" || empty(&desired["spec"]["finalizers"]))
}

/// The `finalize` subresource of a Namespace changes `spec.finalizers` only. An omitted list means
/// none left: it is kept as an empty list, or create-time defaulting would put `kubernetes` back.
fn finalized(current: &Value, desired: &Value) -> Value {
    let finalizers = match &desired["spec"]["finalizers"] {
        Value::Null => json!([]),
        f => f.clone(),
    };
    let mut out = current.clone();
    out["spec"]["finalizers"] = finalizers;
    out
}

/// `metadata.generation` counts changes outside metadata and status.
fn bump_generation(r: &ResourceType, desired: &mut Value, current: &Value) {
    if !r.tracks_generation {
        return;
    }
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("metadata");
            o.remove("status");
        }
        v
    };
    let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
    let next = if strip(desired) != strip(current) {
        generation + 1
    } else {
        generation
    };
    objects::meta_mut(desired).insert("generation".into(), json!(next));
}

/// The allocation keys to release with a stored object.
fn release_all(req: &Request<'_>, current: &Value) -> Allocation {
    if req.r().kind != "Service" {
        return Allocation::default();
    }
    Allocation {
        claims: Vec::new(),
        releases: admission::owned_keys(current),
    }
}

/// The media type of a request body, without parameters.
pub(crate) fn content_type(req: &Request<'_>) -> String {
    let ct = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    ct.split(';').next().unwrap_or("").trim().to_owned()
}

/// Apply a patch document of media type `ct` to `base`, with the merge keys of `schema`.
pub(crate) fn apply_patch(
    ct: &str,
    base: &Value,
    patch_doc: &Value,
    schema: &pontifex_api::patch::PatchSchema,
) -> Result<Value, ApiError> {
    match ct {
        "application/strategic-merge-patch+json" => {
            pontifex_api::patch::strategic_merge(base, patch_doc, schema).map_err(patch_error)
        }
        "application/merge-patch+json" => Ok(pontifex_api::patch::merge_patch(base, patch_doc)),
        "application/json-patch+json" => pontifex_api::patch::json_patch(base, patch_doc).map_err(patch_error),
        _ => Err(ApiError::UnsupportedMediaType {
            accepted: "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml".into(),
        }),
    }
}

/// A patch body: JSON for every patch type but apply.
pub(crate) fn parse_patch(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))
}

async fn patch(req: &Request<'_>, name: &str, body: &[u8]) -> Result<Reply, ApiError> {
    let ct = content_type(req);
    if ct == "application/apply-patch+yaml" {
        return apply(req, name, body).await;
    }
    let patch_doc = parse_patch(body)?;
    let schema = pontifex_api::patch::schema_for(req.r().group, req.r().kind);
    let warnings = std::sync::Mutex::new(Vec::new());
    let (code, out) = update_object(req, name, |current| {
        let mut base = objects::with_type(current.clone(), req.r());
        // A patch may carry a resourceVersion precondition; the stored one is only a default.
        if let Some(m) = base.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        let patched = apply_patch(&ct, &base, &patch_doc, schema)?;
        let (obj, w) = decode_body(req, patched)?;
        *warnings.lock().expect("warnings lock") = w;
        Ok(obj)
    })
    .await?;
    let warnings = warnings.into_inner().unwrap_or_default();
    Ok(object_reply(req, code, out)?.with_warnings(warnings))
}

/// A patch that cannot be applied answers with the status the real server gives for it.
fn patch_error(e: pontifex_api::patch::PatchError) -> ApiError {
    match e.http_status() {
        400 => ApiError::BadRequest(e.to_string()),
        422 => ApiError::Unprocessable(e.to_string()),
        413 => ApiError::TooLarge {
            limit: pontifex_api::patch::MAX_JSON_PATCH_OPERATIONS,
        },
        _ => ApiError::Internal(e.to_string()),
    }
}

/// Server-side apply, as an upsert: create when absent, otherwise merge the applied configuration into
/// the live object. Field ownership (managedFields, conflicts) is not tracked.
async fn apply(req: &Request<'_>, name: &str, body: &[u8]) -> Result<Reply, ApiError> {
    if req.query.get("fieldManager").is_none() {
        return Err(ApiError::BadRequest(
            "PATCH requests using apply-patch+yaml require a fieldManager".into(),
        ));
    }
    let applied = parse_body(req.headers, body)?;
    let (applied, warnings) = decode_body(req, applied)?;
    let (code, out) = apply_decoded(req, name, applied).await?;
    Ok(object_reply(req, code, out)?.with_warnings(warnings))
}

/// Apply a decoded object: 201 when it was created, 200 when it was updated (or unchanged).
async fn apply_decoded(
    req: &Request<'_>,
    name: &str,
    applied: Value,
) -> Result<(u16, Value), ApiError> {
    if objects::name(&applied).is_some_and(|n| n != name) {
        return Err(ApiError::BadRequest(
            "the name of the object does not match the name on the URL".into(),
        ));
    }
    let exists = req
        .state
        .store
        .get(&req.key(name))
        .await
        .map_err(objects::store_error)?
        .is_some();
    if !exists {
        let mut obj = applied.clone();
        objects::meta_mut(&mut obj).insert("name".into(), json!(name));
        match create_object(req, obj).await {
            // Lost a race with another creator: fall through to the update path.
            Err(ApiError::AlreadyExists { .. }) => {}
            other => return other,
        }
    }
    let schema = pontifex_api::patch::schema_for(req.r().group, req.r().kind);
    update_object(req, name, |current| {
        let mut base = objects::with_type(current.clone(), req.r());
        if let Some(m) = base.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        Ok(pontifex_api::patch::apply_merge(&base, &applied, schema))
    })
    .await
}

/// What applying one manifest did, in kubectl's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Created,
    Configured,
    Unchanged,
}

/// Apply one manifest in-process (for `pontifex up -f`), with strict field validation. Returns the
/// resource's plural name, the object's name and what happened.
pub(crate) async fn apply_manifest(
    state: &Arc<State>,
    manifest: Value,
) -> Result<(String, String, Applied), ApiError> {
    let api_version = manifest
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = manifest.get("kind").and_then(Value::as_str).unwrap_or("");
    let r = pontifex_api::registry::by_kind(api_version, kind).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "no matches for kind \"{kind}\" in version \"{api_version}\""
        ))
    })?;
    let name = objects::name(&manifest).unwrap_or("").to_owned();
    let namespace = r.namespaced.then(|| {
        objects::namespace(&manifest)
            .unwrap_or("default")
            .to_owned()
    });
    let headers = HeaderMap::new();
    let req = Request {
        state,
        target: ResourceRequest {
            resource: r,
            namespace,
            name: Some(name.clone()),
            subresource: None,
            legacy_watch: false,
        },
        query: Query::from_pairs(&[
            ("fieldManager", "pontifex-up"),
            ("fieldValidation", "Strict"),
        ]),
        headers: &headers,
    };
    let before = state
        .store
        .get(&req.key(&name))
        .await
        .map_err(objects::store_error)?;
    let (decoded, _) = decode_body(&req, manifest)?;
    let (code, out) = apply_decoded(&req, &name, decoded).await?;
    let outcome = match (code, before) {
        (201, _) => Applied::Created,
        (_, Some(kv))
            if objects::resource_version(&out) == Some(kv.mod_revision.to_string().as_str()) =>
        {
            Applied::Unchanged
        }
        _ => Applied::Configured,
    };
    // kubectl's way of naming it: `service/nginx`, `deployment.apps/nginx`.
    let kind = if r.group.is_empty() {
        r.singular.to_owned()
    } else {
        format!("{}.{}", r.singular, r.group)
    };
    Ok((kind, name, outcome))
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DeleteOptions {
    #[serde(default)]
    preconditions: Option<Preconditions>,
    #[serde(default)]
    grace_period_seconds: Option<i64>,
    #[serde(default)]
    dry_run: Option<Vec<String>>,
    #[serde(default)]
    propagation_policy: Option<String>,
    #[serde(default)]
    orphan_dependents: Option<bool>,
}

/// The garbage-collector finalizers a delete asks for (`deletionFinalizersForGarbageCollection`):
/// `Foreground` puts `foregroundDeletion` on the object, `Orphan` (or the older `orphanDependents:
/// true`) puts `orphan`, each replacing the other; `Background` (the default) removes both.
/// Returns the new finalizer list, or `None` when it is unchanged.
fn gc_finalizers(opts: &DeleteOptions, current: &[String]) -> Option<Vec<String>> {
    const ORPHAN: &str = "orphan";
    const FOREGROUND: &str = "foregroundDeletion";
    let (add, remove): (Option<&str>, &[&str]) = match opts.propagation_policy.as_deref() {
        Some("Foreground") => (Some(FOREGROUND), &[ORPHAN]),
        Some("Orphan") => (Some(ORPHAN), &[FOREGROUND]),
        Some(_) => (None, &[ORPHAN, FOREGROUND]),
        None => match opts.orphan_dependents {
            Some(true) => (Some(ORPHAN), &[FOREGROUND]),
            Some(false) => (None, &[ORPHAN]),
            // No preference: leave what the object already asks for.
            None => return None,
        },
    };
    let mut next: Vec<String> = current
        .iter()
        .filter(|f| !remove.contains(&f.as_str()))
        .cloned()
        .collect();
    if let Some(a) = add
        && !next.iter().any(|f| f == a)
    {
        next.push(a.to_owned());
    }
    (next != current).then_some(next)
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Preconditions {
    uid: Option<String>,
    resource_version: Option<String>,
}

fn delete_options(req: &Request<'_>, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let mut opts: DeleteOptions = if body.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("invalid DeleteOptions: {e}")))?
    };
    if let Some(g) = req
        .query
        .get("gracePeriodSeconds")
        .and_then(|g| g.parse().ok())
    {
        opts.grace_period_seconds = Some(g);
    }
    if let Some(p) = req.query.get("propagationPolicy") {
        opts.propagation_policy = Some(p.to_owned());
    }
    if let Some(o) = req
        .query
        .get("orphanDependents")
        .and_then(|o| o.parse().ok())
    {
        opts.orphan_dependents = Some(o);
    }
    match opts.propagation_policy.as_deref() {
        None | Some("Orphan" | "Background" | "Foreground") => Ok(opts),
        Some(p) => Err(ApiError::BadRequest(format!(
            "propagationPolicy: Unsupported value: \"{p}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
        ))),
    }
}

async fn delete(req: &Request<'_>, name: &str, body: &[u8]) -> Result<Reply, ApiError> {
    let opts = delete_options(req, body)?;
    let dry_run = req.dry_run()
        || opts
            .dry_run
            .as_ref()
            .is_some_and(|d| d.iter().any(|x| x == "All"));
    let key = req.key(name);
    for _ in 0..WRITE_RETRIES {
        let (kv, current) = read_current(req, &key, name).await?;
        if let Some(p) = &opts.preconditions {
            let uid = objects::meta(&current)["uid"].as_str().unwrap_or("");
            if p.uid.as_deref().is_some_and(|u| u != uid) {
                return Err(req.conflict(
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {}, UID in object meta: {uid}",
                        p.uid.as_deref().unwrap_or("")
                    ),
                ));
            }
            if p.resource_version
                .as_deref()
                .is_some_and(|rv| rv != kv.mod_revision.to_string())
            {
                return Err(req.conflict(
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {}, ResourceVersion in object meta: {}",
                        p.resource_version.as_deref().unwrap_or(""),
                        kv.mod_revision
                    ),
                ));
            }
        }
        let current_finalizers: Vec<String> =
            serde_json::from_value(objects::meta(&current)["finalizers"].clone())
                .unwrap_or_default();
        let new_finalizers = gc_finalizers(&opts, &current_finalizers);
        let has_finalizers = !new_finalizers
            .as_ref()
            .unwrap_or(&current_finalizers)
            .is_empty();
        let graceful = req.r().kind == "Pod"
            && !current["spec"]["nodeName"]
                .as_str()
                .unwrap_or("")
                .is_empty()
            && opts
                .grace_period_seconds
                .or(current["spec"]["terminationGracePeriodSeconds"].as_i64())
                .unwrap_or(30)
                > 0;
        let namespace_spec_finalizers = req.r().kind == "Namespace"
            && current["spec"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty());
        if has_finalizers || graceful || namespace_spec_finalizers {
            // Mark for deletion; finalizers (or the node agent, for pods) finish it.
            if !objects::meta(&current)["deletionTimestamp"].is_null() {
                return Ok(Reply::json(202, &objects::with_type(current, req.r())));
            }
            let mut marked = current.clone();
            let grace = if graceful {
                opts.grace_period_seconds
                    .or(current["spec"]["terminationGracePeriodSeconds"].as_i64())
                    .unwrap_or(30)
            } else {
                0
            };
            let when = Timestamp::now() + jiff::SignedDuration::from_secs(grace);
            let meta = objects::meta_mut(&mut marked);
            meta.insert("deletionTimestamp".into(), json!(objects::timestamp(when)));
            meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            if let Some(f) = new_finalizers {
                meta.insert("finalizers".into(), json!(f));
            }
            if req.r().kind == "Namespace" {
                marked["status"]["phase"] = json!("Terminating");
            }
            if dry_run {
                return Ok(Reply::json(202, &objects::with_type(marked, req.r())));
            }
            let guard = Compare::ModRevision(key.clone(), kv.mod_revision);
            match commit(req, &key, guard, Some(&marked), &Allocation::default()).await? {
                Committed::Done(rev) => {
                    objects::set_resource_version(&mut marked, rev);
                    return Ok(Reply::json(202, &objects::with_type(marked, req.r())));
                }
                _ => continue,
            }
        }
        if dry_run {
            return Ok(Reply::json(200, &objects::with_type(current, req.r())));
        }
        let guard = Compare::ModRevision(key.clone(), kv.mod_revision);
        match commit(req, &key, guard, None, &release_all(req, &current)).await? {
            Committed::Done(_) => {
                return Ok(Reply::json(200, &objects::with_type(current, req.r())));
            }
            Committed::ObjectChanged(None) => return Err(req.not_found(name)),
            _ => continue,
        }
    }
    Err(req.conflict(name, "the object is being modified concurrently; try again"))
}

async fn delete_collection(req: &Request<'_>, body: &[u8]) -> Result<Reply, ApiError> {
    let selectors = Selectors::parse(&req.query, req.r())?;
    let prefix = objects::prefix(req.r(), req.ns());
    let (items, _, _) = read_matching(req, &prefix, &selectors, 0, None).await?;
    let mut deleted = Vec::new();
    for obj in items.iter().map(decode) {
        let obj = obj?;
        let Some(name) = objects::name(&obj).map(str::to_owned) else {
            continue;
        };
        match delete(req, &name, body).await {
            Ok(_) | Err(ApiError::NotFound { .. }) => deleted.push(obj),
            Err(e) => return Err(e),
        }
    }
    let list = json!({
        "kind": req.r().list_kind(),
        "apiVersion": req.r().api_version(),
        "metadata": {},
        "items": deleted,
    });
    Ok(Reply::json(200, &list))
}

/// Internal writes (start-up objects) go through the same path as a user's create, minus HTTP.
pub(crate) async fn ensure_object(
    state: &Arc<State>,
    r: &'static ResourceType,
    obj: Value,
) -> Result<(), ApiError> {
    let name = objects::name(&obj).unwrap_or("").to_owned();
    let ns = objects::namespace(&obj).map(str::to_owned);
    let headers = HeaderMap::new();
    let req = Request {
        state,
        target: ResourceRequest {
            resource: r,
            namespace: ns,
            name: Some(name),
            subresource: None,
            legacy_watch: false,
        },
        query: Query::default(),
        headers: &headers,
    };
    match create_object(&req, obj).await {
        Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
