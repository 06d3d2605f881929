//! Writing posts: each call appends to a post's content stream in one LMDB write transaction
//! (on the blocking pool).
//!
//! - `{:op "post/create" :title t :body b :author a}` → the new post's slug: made from the
//!   title, unique, never a top-level path the apps use (their routes reserve them).
//! - `{:op "post/edit" :slug s :title t :body b}`, `{:op "post/publish" :slug s}` → nil.

use sx_kernel::value::{kw_dict, Dict};
use sx_kernel::Value;

use super::{blocking, now_ms, text, Context};

pub async fn create(d: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let op = "post/create";
    let title = text(d, op, "title")?;
    let body = text(d, op, "body")?;
    let author = text(d, op, "author")?;
    let at = now_ms();
    let app = cx.request.app.clone();
    let slug = blocking(&cx.services.store, move |store| {
        let create = kw_dict(vec![
            ("op", Value::str("create")),
            ("title", Value::str(&title)),
            ("body", Value::str(&body)),
            ("author", Value::str(&author)),
            ("at", Value::Int(at)),
        ]);
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
    blocking(&cx.services.store, move |store| {
        let change = kw_dict(vec![
            ("op", Value::str("edit")),
            ("title", Value::str(&title)),
            ("body", Value::str(&body)),
            ("at", Value::Int(at)),
        ]);
        store.append(&[(&slug, change)])
    })
    .await?;
    Ok(Value::Nil)
}

pub async fn publish(d: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let slug = text(d, "post/publish", "slug")?;
    let at = now_ms();
    blocking(&cx.services.store, move |store| {
        let change = kw_dict(vec![("op", Value::str("publish")), ("at", Value::Int(at))]);
        store.append(&[(&slug, change)])
    })
    .await?;
    Ok(Value::Nil)
}
