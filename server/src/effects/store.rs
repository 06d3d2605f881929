//! Reads of the store (in place on LMDB, off the worker on PostgreSQL: `effects::read`):
//! `store/post`
//! (`:slug` → the post, or nil), `store/posts` (every post, newest first) and
//! `store/changes` (the posts written since a sequence number, for data an app derives from
//! posts and keeps per worker). Parsed records are memoised per worker by their stored text.

use sx_kernel::error::type_error;
use sx_kernel::value::{kw_dict, kw_get, Dict};
use sx_kernel::Value;

use super::{read, store_error, Context};

pub async fn post(d: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let Some(Value::Str(slug)) = kw_get(d, "slug") else {
        return Err(type_error(
            "store/post needs a :slug string",
            vec![Value::Dict(d.clone())],
        ));
    };
    let key = slug.to_string();
    match read(&cx.services.store, move |store| store.post_text(&key)).await? {
        Some(text) => cx.cache.decode(slug, &text).map_err(store_error),
        None => Ok(Value::Nil),
    }
}

pub async fn posts(_: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let records = read(&cx.services.store, |store| store.posts_text()).await?;
    Ok(Value::list(cx.cache.posts(&records).map_err(store_error)?))
}

/// `{:op "store/changes" :since n}` → `{:seq m :all false :posts (...)}`: the current
/// version of each post written after change `n` (none when nothing changed: no read at
/// all). With `:since nil`, or one older than the store remembers, every post (newest
/// first) and `:all true`: the caller rebuilds what it derives.
pub async fn changes(d: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let since = match kw_get(d, "since") {
        None | Some(Value::Nil) => None,
        Some(Value::Int(n)) if *n >= 0 => Some(*n as u64),
        _ => {
            return Err(type_error(
                "store/changes needs :since, a change number or nil",
                vec![Value::Dict(d.clone())],
            ))
        }
    };
    let (seq, all, records) = read(&cx.services.store, move |store| {
        let changes = store.changes_since(since)?;
        let records = match &changes.slugs {
            None => store.posts_text()?,
            Some(slugs) => {
                let mut records = Vec::with_capacity(slugs.len());
                for slug in slugs {
                    if let Some(text) = store.post_text(slug)? {
                        records.push((slug.clone(), text));
                    }
                }
                records
            }
        };
        Ok((changes.seq, changes.slugs.is_none(), records))
    })
    .await?;
    let posts = if all {
        cx.cache.posts(&records).map_err(store_error)?
    } else {
        records
            .iter()
            .map(|(slug, text)| cx.cache.decode(slug, text))
            .collect::<Result<Vec<_>, _>>()
            .map_err(store_error)?
    };
    Ok(kw_dict([
        ("seq", Value::Int(seq as i64)),
        ("all", Value::Bool(all)),
        ("posts", Value::list(posts)),
    ]))
}
