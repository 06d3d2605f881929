//! Writing posts: each call appends to post content streams in one LMDB write transaction
//! (on the blocking pool).
//!
//! - `{:op "post/create" :title t :body b :author a [:tags (t...)]}` → the new post's slug:
//!   made from the title, unique, never a top-level path the apps use (their routes reserve
//!   them).
//! - `{:op "post/edit" :slug s :title t :body b [:tags (t...)]}`, `{:op "post/publish" :slug s}`
//!   → nil.
//! - `{:op "post/relate" :slug s :other o}`, `{:op "post/unrelate" ...}` → nil: the op goes to
//!   both streams in one transaction (both commit or neither does); relating a post to
//!   itself or to a missing post raises `store-error` and writes nothing.

use sx_kernel::error::type_error;
use sx_kernel::value::{kw_dict, kw_get, Dict};
use sx_kernel::Value;

use super::{blocking, now_ms, text, Context};

/// The optional `:tags` of an op: a list of strings, passed on as it is.
fn tags(d: &Dict, op: &str) -> Result<Option<Value>, Value> {
    match kw_get(d, "tags") {
        None | Some(Value::Nil) => Ok(None),
        Some(tags @ Value::List(l)) if l.iter().all(|t| matches!(t, Value::Str(_))) => {
            Ok(Some(tags.clone()))
        }
        Some(_) => Err(type_error(
            format!("{op} needs :tags to be a list of strings"),
            vec![],
        )),
    }
}

/// An op of `kind` at `at` with `fields` (built inside the blocking closure: only plain data
/// crosses threads).
fn change(kind: &str, at: i64, fields: Vec<(&str, Value)>) -> Value {
    let mut pairs = vec![("op", Value::str(kind)), ("at", Value::Int(at))];
    pairs.extend(fields);
    kw_dict(pairs)
}

/// The tags as plain strings, to cross to the blocking pool (values are not `Send`).
fn plain(tags: Option<Value>) -> Option<Vec<String>> {
    match tags {
        Some(Value::List(l)) => Some(l.iter().map(sx_kernel::printer::display).collect()),
        _ => None,
    }
}

fn tags_field(tags: &Option<Vec<String>>) -> Option<(&'static str, Value)> {
    tags.as_ref().map(|t| {
        (
            "tags",
            Value::list(t.iter().map(|s| Value::str(s)).collect()),
        )
    })
}

pub async fn create(d: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let op = "post/create";
    let title = text(d, op, "title")?;
    let body = text(d, op, "body")?;
    let author = text(d, op, "author")?;
    let tags = plain(tags(d, op)?);
    let at = now_ms();
    let app = cx.request.app.clone();
    let slug = blocking(&cx.services.store, move |store| {
        let mut fields = vec![
            ("title", Value::str(&title)),
            ("body", Value::str(&body)),
            ("author", Value::str(&author)),
        ];
        fields.extend(tags_field(&tags));
        let reserved: Vec<&str> = app.reserved.iter().map(String::as_str).collect();
        store.create_post(&title, &change("create", at, fields), &reserved)
    })
    .await?;
    Ok(Value::str(&slug))
}

pub async fn edit(d: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let op = "post/edit";
    let slug = text(d, op, "slug")?;
    let (title, body) = (text(d, op, "title")?, text(d, op, "body")?);
    let tags = plain(tags(d, op)?);
    let at = now_ms();
    blocking(&cx.services.store, move |store| {
        let mut fields = vec![("title", Value::str(&title)), ("body", Value::str(&body))];
        fields.extend(tags_field(&tags));
        store.append(&[(&slug, change("edit", at, fields))])
    })
    .await?;
    Ok(Value::Nil)
}

pub async fn publish(d: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let slug = text(d, "post/publish", "slug")?;
    let at = now_ms();
    blocking(&cx.services.store, move |store| {
        store.append(&[(&slug, change("publish", at, vec![]))])
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
        let naming = |s: &str| change(kind, at, vec![("other", Value::str(s))]);
        store.append(&[(&slug, naming(&other)), (&other, naming(&slug))])
    })
    .await?;
    Ok(Value::Nil)
}
