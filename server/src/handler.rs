//! SX handlers on worker threads. Kernel values are `Rc`-based (not `Send`), so each worker
//! owns a kernel image loaded from the bundle and runs handlers on its VM; axum's tasks send
//! requests over a channel and await the answer. A handler's `perform`s are served here
//! (store reads, clock); an unknown op raises `unknown-effect` at the `perform` site.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sx_kernel::engine::{unknown_effect, Limits};
use sx_kernel::value::{Dict, Key};
use sx_kernel::{Backend, Engine, Step, Value};
use tokio::sync::{mpsc, oneshot};

use crate::store::Store;

/// Steps a request may take before it is stopped with 503.
pub const REQUEST_FUEL: u64 = 5_000_000;

/// What axum hands a worker: plain data, `Send`.
pub struct Request {
    /// The request id (`x-request-id`), for log lines written on the worker.
    pub id: String,
    pub route: usize,
    pub method: String,
    pub path: String,
    pub params: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
}

/// What a handler produced.
pub enum Outcome {
    /// A page: its title, the `#content` tree, a status.
    Page {
        title: String,
        content: Value,
        status: u16,
    },
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    Failed {
        status: u16,
        log: String,
    },
}

/// The rendered answer a worker sends back.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

struct Job {
    request: Request,
    fragment: crate::render::Want,
    reply: oneshot::Sender<Reply>,
}

#[derive(Clone)]
pub struct Workers {
    senders: Arc<Vec<mpsc::UnboundedSender<Job>>>,
    next: Arc<AtomicUsize>,
}

/// Loads the bundle into a fresh VM engine.
pub fn load(bundle: &[u8]) -> Result<Engine, String> {
    let mut engine = Engine::with_backend(Backend::Vm);
    let programs = sx_kernel::sxbc::read_bundle(bundle, &mut engine.globals)
        .map_err(|e| format!("the app bundle: {e}"))?;
    for program in programs {
        let mut run = engine.start_compiled(program);
        loop {
            match run.step(&mut engine) {
                Step::Done(_) => break,
                Step::Error(e) => return Err(sx_kernel::error::describe(&e)),
                Step::Perform(req) => run.resume(Err(unknown_effect(&req))),
            }
        }
    }
    Ok(engine)
}

fn declared(engine: &Engine) -> Vec<(String, String, Value)> {
    let Some(Value::List(routes)) = engine.lookup("*routes*") else {
        return Vec::new();
    };
    let mut out: Vec<(String, String, Value)> = routes
        .iter()
        .filter_map(|r| match r {
            Value::List(parts) => match (parts.nth(0), parts.nth(1), parts.nth(2)) {
                (Some(Value::Str(m)), Some(Value::Str(p)), Some(h)) => {
                    Some((m.to_uppercase(), p.to_string(), h.clone()))
                }
                _ => None,
            },
            _ => None,
        })
        .collect();
    out.reverse();
    out
}

impl Workers {
    /// Starts `count` worker threads, each with its own image of the bundle. Also returns
    /// the routes the apps declared, in declaration order: (method, path).
    pub fn start(
        count: usize,
        bundle: Arc<Vec<u8>>,
        store: Arc<Store>,
    ) -> Result<(Workers, Vec<(String, String)>), String> {
        let mut senders = Vec::new();
        let mut routes = Vec::new();
        for i in 0..count.max(1) {
            let (tx, rx) = mpsc::unbounded_channel::<Job>();
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let bundle = bundle.clone();
            let store = store.clone();
            std::thread::Builder::new()
                .name(format!("sx-worker-{i}"))
                .stack_size(64 << 20)
                .spawn(move || worker(rx, &bundle, &store, ready_tx))
                .map_err(|e| format!("cannot start a worker: {e}"))?;
            routes = ready_rx
                .recv()
                .map_err(|_| "a worker died while loading".to_string())??;
            senders.push(tx);
        }
        let workers = Workers {
            senders: Arc::new(senders),
            next: Arc::new(AtomicUsize::new(0)),
        };
        Ok((workers, routes))
    }

    pub async fn handle(&self, request: Request, want: crate::render::Want) -> Reply {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        let (reply, answer) = oneshot::channel();
        let job = Job {
            request,
            fragment: want,
            reply,
        };
        if self.senders[i].send(job).is_err() {
            return crate::render::error_page(503, "The server is restarting.");
        }
        answer
            .await
            .unwrap_or_else(|_| crate::render::error_page(500, "Something went wrong."))
    }
}

fn worker(
    mut jobs: mpsc::UnboundedReceiver<Job>,
    bundle: &[u8],
    store: &Store,
    ready: std::sync::mpsc::Sender<Result<Vec<(String, String)>, String>>,
) {
    let mut engine = match load(bundle) {
        Ok(engine) => engine,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    engine.limits = Limits {
        fuel: Some(REQUEST_FUEL),
        ..Limits::default()
    };
    let (routes, handlers): (Vec<_>, Vec<Value>) = declared(&engine)
        .into_iter()
        .map(|(method, path, handler)| ((method, path), handler))
        .unzip();
    let cache = crate::store::DecodeCache::default();
    let _ = ready.send(Ok(routes));
    while let Some(job) = jobs.blocking_recv() {
        let outcome = match handlers.get(job.request.route) {
            Some(handler) => run(&mut engine, handler, &job.request, store, &cache),
            None => Outcome::Failed {
                status: 500,
                log: format!("no handler for route {}", job.request.route),
            },
        };
        let _ = job
            .reply
            .send(crate::render::reply(&mut engine, outcome, job.fragment));
    }
}

fn dict(pairs: &[(String, String)], keyword_keys: bool) -> Value {
    let mut d = Dict::new();
    for (k, v) in pairs {
        let key = if keyword_keys {
            Value::kw(k)
        } else {
            Value::str(k)
        };
        d.insert(Key(key), Value::str(v));
    }
    Value::Dict(d)
}

fn request_value(request: &Request) -> Value {
    let mut d = Dict::new();
    d.insert(Key(Value::kw("method")), Value::str(&request.method));
    d.insert(Key(Value::kw("path")), Value::str(&request.path));
    d.insert(Key(Value::kw("params")), dict(&request.params, true));
    d.insert(Key(Value::kw("query")), dict(&request.query, false));
    d.insert(Key(Value::kw("headers")), dict(&request.headers, false));
    Value::Dict(d)
}

/// Serves one effect of a handler.
fn effect(
    request: &Value,
    store: &Store,
    cache: &crate::store::DecodeCache,
) -> Result<Value, Value> {
    let Value::Dict(d) = request else {
        return Err(unknown_effect(request));
    };
    let field = |name: &str| d.get(&Key(Value::kw(name))).cloned();
    let failed = |e: crate::store::StoreError| {
        sx_kernel::error::ErrorValue::value("store-error", e.to_string(), vec![])
    };
    match field("op") {
        Some(Value::Str(op)) if &*op == "store/post" => match field("slug") {
            Some(Value::Str(slug)) => Ok(store
                .post_cached(&slug, cache)
                .map_err(failed)?
                .unwrap_or(Value::Nil)),
            _ => Err(sx_kernel::error::type_error(
                "store/post needs a :slug string",
                vec![request.clone()],
            )),
        },
        Some(Value::Str(op)) if &*op == "store/posts" => {
            Ok(Value::list(store.posts_cached(cache).map_err(failed)?))
        }
        Some(Value::Str(op)) if &*op == "now" => Ok(Value::Int(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        )),
        _ => Err(unknown_effect(request)),
    }
}

fn run(
    engine: &mut Engine,
    handler: &Value,
    request: &Request,
    store: &Store,
    cache: &crate::store::DecodeCache,
) -> Outcome {
    let mut machine = engine.apply_machine(handler.clone(), vec![request_value(request)]);
    let result = loop {
        match machine.run(engine) {
            Step::Done(v) => break Ok(v),
            Step::Error(e) => break Err(e),
            Step::Perform(req) => machine.resume(effect(&req, store, cache)),
        }
    };
    match result {
        Ok(value) => outcome_of(value),
        Err(err) => {
            let out_of_fuel = matches!(&err, Value::Error(e) if &*e.error_type == "out-of-fuel");
            Outcome::Failed {
                status: if out_of_fuel { 503 } else { 500 },
                log: format!(
                    "{} {}: {}",
                    request.method,
                    request.path,
                    sx_kernel::error::describe(&err)
                ),
            }
        }
    }
}

/// Reads what a handler returned: a page dict, a response dict, or an element tree.
fn outcome_of(value: Value) -> Outcome {
    let Value::Dict(d) = &value else {
        return Outcome::Page {
            title: String::new(),
            content: value,
            status: 200,
        };
    };
    let field = |name: &str| d.get(&Key(Value::kw(name))).cloned();
    let status = match field("status") {
        Some(Value::Int(s)) if (100..=599).contains(&s) => s as u16,
        None => 200,
        Some(other) => {
            return Outcome::Failed {
                status: 500,
                log: format!(
                    "handler returned a bad :status {}",
                    sx_kernel::printer::repr(&other)
                ),
            }
        }
    };
    if let Some(content) = field("content") {
        let title = field("title")
            .map(|t| sx_kernel::printer::display(&t))
            .unwrap_or_default();
        return Outcome::Page {
            title,
            content,
            status,
        };
    }
    let headers: Vec<(String, String)> = match field("headers") {
        Some(Value::Dict(h)) => h
            .iter()
            .map(|(k, v)| {
                (
                    sx_kernel::printer::display(&k.0),
                    sx_kernel::printer::display(v),
                )
            })
            .collect(),
        _ => Vec::new(),
    };
    let body = field("body")
        .map(|b| sx_kernel::printer::display(&b))
        .unwrap_or_default();
    Outcome::Response {
        status,
        headers,
        body: body.into_bytes(),
    }
}
