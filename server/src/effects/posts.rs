//! Writing posts: each call appends to a post's content stream in one LMDB write transaction
//! (on the blocking pool).
//!
//! - `{:op "post/create" :title t :body b :author a}` → the new post's slug: made from the
//!   title, unique, never a top-level path the apps use (their routes reserve them).
//! - `{:op "post/edit" :slug s :title t :body b}`, `{:op "post/publish" :slug s}` → nil.
//!
//! Create and edit also take `:tags` (strings), `:category` (a string) and `:publish-at`
//! (milliseconds, or nil to drop the schedule); the post's fold checks them.
//! - `{:op "post/relate" :slug s :other o}`, `{:op "post/unrelate" ...}` → nil: the op goes to
//!   both streams in one transaction (both commit or neither does); relating a post to
//!   itself or to a missing post raises `store-error` and writes nothing.

use sx_kernel::value::{kw_dict, kw_get, Dict};
use sx_kernel::Value;

use super::{blocking, now_ms, text, Context};

/// The optional fields of a create or edit, as SX text (values are not `Send`).
fn optional_fields(d: &Dict) -> Vec<(&'static str, String)> {
    ["tags", "category", "publish-at"]
        .into_iter()
        .filter_map(|name| kw_get(d, name).map(|v| (name, sx_kernel::printer::repr(v))))
        .collect()
}

/// An op: the given fields, then the optional ones read back from their text.
fn op_with(fields: Vec<(&str, Value)>, optional: &[(&str, String)]) -> Value {
    let mut all = fields;
    for (name, text) in optional {
        if let Ok(v) = sx_kernel::reader::read_one(text) {
            all.push((name, v));
        }
    }
    kw_dict(all)
}

/// The activity a change of a published post announces to followers: `publish` when it
/// becomes published, `update` when a published post is edited; nothing for drafts.
fn announce(
    fed: &crate::federation::Federation,
    changes: &[(Option<Value>, Value)],
) -> Option<Value> {
    let [(before, after)] = changes else {
        return None;
    };
    let status = |post: &Value| match post {
        Value::Dict(d) => kw_get(d, "status").map(sx_kernel::printer::display),
        _ => None,
    };
    let was_published = before.as_ref().and_then(status).as_deref() == Some("published");
    let kind = match (was_published, status(after).as_deref()) {
        (false, Some("published")) => "publish",
        (true, Some("published")) => "update",
        _ => return None,
    };
    let Value::Dict(post) = after else {
        return None;
    };
    let get = |name: &str| kw_get(post, name).cloned().unwrap_or(Value::Nil);
    let slug = sx_kernel::printer::display(&get("slug"));
    let summary: String = sx_kernel::printer::display(&get("body"))
        .chars()
        .take(280)
        .collect();
    let object = kw_dict([
        ("slug", Value::str(&slug)),
        ("title", get("title")),
        ("url", Value::str(&format!("{}/{slug}/", fed.actor))),
        ("summary", Value::str(&summary)),
        ("category", get("category")),
    ]);
    Some(crate::federation::activity(fed, kind, object, None))
}

/// Appends one op; with federation on, the activity it announces is queued in the same
/// transaction.
async fn append_announced(
    cx: &Context<'_>,
    slug: String,
    op: impl FnOnce() -> Value + Send + 'static,
) -> Result<(), Value> {
    let fed = cx.services.federation.clone();
    let at = now_ms();
    blocking(&cx.services.store, move |store| {
        let op = op();
        if fed.enabled() {
            store.append_announcing(&[(&slug, op)], at, |changes| announce(&fed, changes))
        } else {
            store.append(&[(&slug, op)])
        }
    })
    .await?;
    if cx.services.federation.enabled() {
        cx.services.federation.wake.notify_one();
    }
    Ok(())
}

pub async fn create(d: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let op = "post/create";
    let title = text(d, op, "title")?;
    let body = text(d, op, "body")?;
    let author = text(d, op, "author")?;
    let at = now_ms();
    let app = cx.request.app.clone();
    let optional = optional_fields(d);
    let slug = blocking(&cx.services.store, move |store| {
        let create = op_with(
            vec![
                ("op", Value::str("create")),
                ("title", Value::str(&title)),
                ("body", Value::str(&body)),
                ("author", Value::str(&author)),
                ("at", Value::Int(at)),
            ],
            &optional,
        );
        let reserved: Vec<&str> = app.reserved.iter().map(String::as_str).collect();
        store.create_post(&title, &create, &reserved)
    })
    .await?;
    Ok(Value::str(&slug))
}

pub async fn edit(d: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let op = "post/edit";
    let slug = text(d, op, "slug")?;
    let (title, body) = (text(d, op, "title")?, text(d, op, "body")?);
    let at = now_ms();
    let optional = optional_fields(d);
    append_announced(cx, slug, move || {
        op_with(
            vec![
                ("op", Value::str("edit")),
                ("title", Value::str(&title)),
                ("body", Value::str(&body)),
                ("at", Value::Int(at)),
            ],
            &optional,
        )
    })
    .await?;
    Ok(Value::Nil)
}

/// `{:op "post/autosave" :slug s :title t :body b :rev n}` → `{:saved true :rev m}` when the
/// draft was still at revision `n` (its op count) and now is at `m`, else `{:saved false :post
/// p}` with the post as stored (nil when there is none): it moved on (another editor saved)
/// or was published. The check and the write are one transaction. Drafts are never
/// announced, so no federation here.
pub async fn autosave(d: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let op = "post/autosave";
    let slug = text(d, op, "slug")?;
    let (title, body) = (text(d, op, "title")?, text(d, op, "body")?);
    let rev = match kw_get(d, "rev") {
        Some(Value::Int(n)) => *n,
        _ => {
            return Err(sx_kernel::error::type_error(
                "post/autosave needs a :rev integer",
                vec![],
            ))
        }
    };
    let at = now_ms();
    let outcome = blocking(&cx.services.store, move |store| {
        let edit = kw_dict(vec![
            ("op", Value::str("edit")),
            ("title", Value::str(&title)),
            ("body", Value::str(&body)),
            ("at", Value::Int(at)),
        ]);
        // Values are not `Send`: the stored post crosses as SX text.
        store
            .append_if_draft_at(&slug, &edit, rev)
            .map(|r| r.map_err(|post| post.map(|p| sx_kernel::printer::repr(&p))))
    })
    .await?;
    Ok(match outcome {
        Ok(rev) => kw_dict([("saved", Value::Bool(true)), ("rev", Value::Int(rev))]),
        Err(post) => kw_dict([
            ("saved", Value::Bool(false)),
            (
                "post",
                post.and_then(|text| sx_kernel::reader::read_one(&text).ok())
                    .unwrap_or(Value::Nil),
            ),
        ]),
    })
}

pub async fn publish(d: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let slug = text(d, "post/publish", "slug")?;
    let at = now_ms();
    append_announced(cx, slug, move || {
        kw_dict(vec![("op", Value::str("publish")), ("at", Value::Int(at))])
    })
    .await?;
    Ok(Value::Nil)
}

pub async fn relate(d: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    relation(d, cx, "relate").await
}

pub async fn unrelate(d: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    relation(d, cx, "unrelate").await
}

/// Appends `kind` to both posts' streams, each naming the other.
async fn relation(d: &Dict, cx: &Context<'_>, kind: &'static str) -> Result<Value, Value> {
    let op = format!("post/{kind}");
    let (slug, other) = (text(d, &op, "slug")?, text(d, &op, "other")?);
    let at = now_ms();
    blocking(&cx.services.store, move |store| {
        let naming = |s: &str| {
            kw_dict([
                ("op", Value::str(kind)),
                ("at", Value::Int(at)),
                ("other", Value::str(s)),
            ])
        };
        store.append(&[(&slug, naming(&other)), (&other, naming(&slug))])
    })
    .await?;
    Ok(Value::Nil)
}
