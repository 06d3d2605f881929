//! The effects a handler's `perform` reaches: one table from op name to the function that
//! serves it, one module per family. docs/apps.md lists the same ops (a test checks both
//! agree). An unknown op raises `unknown-effect` at the `perform` site.
//!
//! Effects run on the worker thread as local futures (kernel values are not `Send`); slow
//! work — LMDB writes, argon2, outgoing HTTP — is awaited, so the thread serves other
//! requests meanwhile.

mod auth;
mod clock;
mod data;
mod federation;
mod flows;
pub mod http;
mod markdown;
mod posts;
mod store;

use std::future::Future;
use std::pin::Pin;

use sx_kernel::engine::unknown_effect;
use sx_kernel::error::{type_error, ErrorValue};
use sx_kernel::value::{kw_get, Dict};
use sx_kernel::Value;

use crate::exchange::Request;
use crate::services::Services;
use crate::store::{DecodeCache, StoreError};

pub use clock::now_ms;

/// What an effect may use: the shared services, this worker's parsed-record memo, and the
/// request being served (who is asking, from where, on which version of the apps).
pub struct Context<'a> {
    pub services: &'a Services,
    pub cache: &'a DecodeCache,
    pub request: &'a Request,
    /// Whether every effect served so far read the posts (`Effect::reads_posts_only`) and
    /// succeeded: then what the code made depends on the request and the posts alone.
    pub read_posts_only: std::cell::Cell<bool>,
}

type Answer<'a> = Pin<Box<dyn Future<Output = Result<Value, Value>> + 'a>>;

/// An effect: its op name, what it takes and answers (as documented), and its function.
pub struct Effect {
    pub op: &'static str,
    pub family: &'static str,
    run: for<'a> fn(&'a Dict, &'a Context<'a>) -> Answer<'a>,
}

impl Effect {
    /// Whether its answer depends on nothing but the stored posts and what it is asked
    /// (the `store` reads and `markdown`). The store moves its change number with every
    /// write of a post, so an answer made with these alone is as fresh as that number
    /// (`pages.rs` keeps such pages).
    pub fn reads_posts_only(&self) -> bool {
        matches!(self.family, "store" | "markdown")
    }
}

/// Every effect the host serves.
pub static EFFECTS: &[Effect] = &[
    Effect {
        op: "now",
        family: "clock",
        run: |d, cx| Box::pin(clock::now(d, cx)),
    },
    Effect {
        op: "sleep",
        family: "clock",
        run: |d, cx| Box::pin(clock::sleep(d, cx)),
    },
    Effect {
        op: "store/post",
        family: "store",
        run: |d, cx| Box::pin(store::post(d, cx)),
    },
    Effect {
        op: "store/posts",
        family: "store",
        run: |d, cx| Box::pin(store::posts(d, cx)),
    },
    Effect {
        op: "store/changes",
        family: "store",
        run: |d, cx| Box::pin(store::changes(d, cx)),
    },
    Effect {
        op: "http/request",
        family: "http",
        run: |d, cx| Box::pin(http::request(d, cx)),
    },
    Effect {
        op: "auth/login",
        family: "auth",
        run: |d, cx| Box::pin(auth::login(d, cx)),
    },
    Effect {
        op: "auth/logout",
        family: "auth",
        run: |d, cx| Box::pin(auth::logout(d, cx)),
    },
    Effect {
        op: "post/create",
        family: "posts",
        run: |d, cx| Box::pin(posts::create(d, cx)),
    },
    Effect {
        op: "post/edit",
        family: "posts",
        run: |d, cx| Box::pin(posts::edit(d, cx)),
    },
    Effect {
        op: "post/autosave",
        family: "posts",
        run: |d, cx| Box::pin(posts::autosave(d, cx)),
    },
    Effect {
        op: "post/publish",
        family: "posts",
        run: |d, cx| Box::pin(posts::publish(d, cx)),
    },
    Effect {
        op: "post/relate",
        family: "posts",
        run: |d, cx| Box::pin(posts::relate(d, cx)),
    },
    Effect {
        op: "post/unrelate",
        family: "posts",
        run: |d, cx| Box::pin(posts::unrelate(d, cx)),
    },
    Effect {
        op: "flow/start",
        family: "flows",
        run: |d, cx| Box::pin(flows::start(d, cx)),
    },
    Effect {
        op: "flow/get",
        family: "flows",
        run: |d, cx| Box::pin(flows::get(d, cx)),
    },
    Effect {
        op: "flow/resume",
        family: "flows",
        run: |d, cx| Box::pin(flows::resume(d, cx)),
    },
    Effect {
        op: "flow/cancel",
        family: "flows",
        run: |d, cx| Box::pin(flows::cancel(d, cx)),
    },
    Effect {
        op: "flow/list",
        family: "flows",
        run: |d, cx| Box::pin(flows::list(d, cx)),
    },
    Effect {
        op: "flow/graph",
        family: "flows",
        run: |d, cx| Box::pin(flows::graph(d, cx)),
    },
    Effect {
        op: "fed/info",
        family: "federation",
        run: |d, cx| Box::pin(federation::info(d, cx)),
    },
    Effect {
        op: "fed/followers",
        family: "federation",
        run: |d, cx| Box::pin(federation::followers(d, cx)),
    },
    Effect {
        op: "fed/activities",
        family: "federation",
        run: |d, cx| Box::pin(federation::activities(d, cx)),
    },
    Effect {
        op: "fed/peers",
        family: "federation",
        run: |d, cx| Box::pin(federation::peers(d, cx)),
    },
    Effect {
        op: "fed/emit",
        family: "federation",
        run: |d, cx| Box::pin(federation::emit(d, cx)),
    },
    Effect {
        op: "fed/flush",
        family: "federation",
        run: |d, cx| Box::pin(federation::flush(d, cx)),
    },
    Effect {
        op: "data/get",
        family: "data",
        run: |d, cx| Box::pin(data::get(d, cx)),
    },
    Effect {
        op: "data/put",
        family: "data",
        run: |d, cx| Box::pin(data::put(d, cx)),
    },
    Effect {
        op: "data/push",
        family: "data",
        run: |d, cx| Box::pin(data::push(d, cx)),
    },
    Effect {
        op: "markdown",
        family: "markdown",
        run: |d, cx| Box::pin(markdown::render(d, cx)),
    },
];

/// Serves one `perform`.
pub async fn serve(request: &Value, cx: &Context<'_>) -> Result<Value, Value> {
    let Value::Dict(d) = request else {
        return Err(unknown_effect(request));
    };
    let Some(Value::Str(op)) = kw_get(d, "op") else {
        return Err(unknown_effect(request));
    };
    let Some(effect) = EFFECTS.iter().find(|e| e.op == &**op) else {
        cx.read_posts_only.set(false);
        return Err(unknown_effect(request));
    };
    let answer = (effect.run)(d, cx).await;
    // A failed read (caught by the handler, say) is no page of the posts as they are.
    if !effect.reads_posts_only() || answer.is_err() {
        cx.read_posts_only.set(false);
    }
    answer
}

/// A string field an effect needs.
fn text(d: &Dict, op: &str, name: &str) -> Result<String, Value> {
    match kw_get(d, name) {
        Some(Value::Str(s)) => Ok(s.to_string()),
        _ => Err(type_error(format!("{op} needs a :{name} string"), vec![])),
    }
}

/// The error type raised when the store is full; the host answers it with 507.
pub const STORE_FULL: &str = "store-full";

/// The error type raised when the database cannot be reached; the host answers it with 503.
pub const STORE_UNAVAILABLE: &str = "store-unavailable";

/// A read of the store from an effect (`Store::call_from_async`).
async fn read<T: Send + 'static>(
    store: &std::sync::Arc<crate::store::Store>,
    work: impl FnOnce(&crate::store::Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Value> {
    store.call_from_async(work).await.map_err(store_error)
}

/// Runs `work` with the store on the blocking pool (kernel values are not `Send`: only
/// plain data crosses).
async fn blocking<T: Send + 'static>(
    store: &std::sync::Arc<crate::store::Store>,
    work: impl FnOnce(&crate::store::Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Value> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || work(&store))
        .await
        .map_err(|e| ErrorValue::value("store-error", format!("a store task failed: {e}"), vec![]))?
        .map_err(store_error)
}

fn store_error(e: StoreError) -> Value {
    let kind = match e {
        StoreError::Full => STORE_FULL,
        StoreError::Unavailable(_) => STORE_UNAVAILABLE,
        _ => "store-error",
    };
    ErrorValue::value(kind, e.to_string(), vec![])
}

#[cfg(test)]
mod tests {
    use super::EFFECTS;

    /// docs/apps.md's effect table and this one name the same ops.
    #[test]
    fn the_documented_effects_are_the_served_ones() {
        let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/apps.md"))
            .unwrap();
        let start = docs
            .find("<!-- effects -->")
            .expect("docs/apps.md marks its effect table");
        let end = docs[start..]
            .find("<!-- /effects -->")
            .expect("the table ends")
            + start;
        let documented: Vec<&str> = docs[start..end]
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .collect();
        let served: Vec<&str> = EFFECTS.iter().map(|e| e.op).collect();
        assert_eq!(
            documented, served,
            "docs/apps.md's effect table and EFFECTS differ"
        );
    }
}
