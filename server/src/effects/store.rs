//! Reads of the store, in place (LMDB reads are memory-mapped and quick): `store/post`
//! (`:slug` → the post, or nil), `store/posts` (every post, newest first) and
//! `store/changes` (the posts written since a sequence number, for data an app derives from
//! posts and keeps per worker). Parsed records are memoised per worker by their stored text.

use sx_kernel::error::type_error;
use sx_kernel::value::{kw_dict, kw_get, Dict};
use sx_kernel::Value;

use super::{store_error, Context};

pub async fn post(d: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    match kw_get(d, "slug") {
        Some(Value::Str(slug)) => Ok(cx
            .services
            .store
            .post_cached(slug, cx.cache)
            .map_err(store_error)?
            .unwrap_or(Value::Nil)),
        _ => Err(type_error(
            "store/post needs a :slug string",
            vec![Value::Dict(d.clone())],
        )),
    }
}

pub async fn posts(_: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    Ok(Value::list(
        cx.services
            .store
            .posts_cached(cx.cache)
            .map_err(store_error)?,
    ))
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
    let store = &cx.services.store;
    let changes = store.changes_since(since);
    let posts = match &changes.slugs {
        None => store.posts_cached(cx.cache).map_err(store_error)?,
        Some(slugs) => {
            let mut posts = Vec::with_capacity(slugs.len());
            for slug in slugs {
                posts.extend(store.post_cached(slug, cx.cache).map_err(store_error)?);
            }
            posts
        }
    };
    Ok(kw_dict([
        ("seq", Value::Int(changes.seq as i64)),
        ("all", Value::Bool(changes.slugs.is_none())),
        ("posts", Value::list(posts)),
    ]))
}
