//! Reads of the store, in place (LMDB reads are memory-mapped and quick): `store/post`
//! (`:slug` → the post, or nil) and `store/posts` (every post, newest first). Parsed records
//! are memoised per worker by their stored text.

use sx_kernel::value::{kw_get, Dict};
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
        _ => Err(sx_kernel::error::type_error(
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
