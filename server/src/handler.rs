//! SX handlers. Kernel values are `Rc`-based (not `Send`), so each worker thread owns a kernel
//! image loaded from the apps' bundle and a `LocalSet`; the HTTP layer hands it requests
//! through a same-thread channel (`dispatch`), and each request runs as a local task on the
//! VM. When the apps are recompiled (dev mode), the next request loads a new image; requests
//! in flight finish on the one they started on. A handler's `perform`s are served by
//! `effects` and awaited: the VM is resumed when the answer is ready, and the thread serves
//! other requests meanwhile. A new image first runs the apps' start functions (`defstart`),
//! the same way, before it takes a request.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use sx_kernel::engine::Limits;
use sx_kernel::value::{kw_dict, kw_get, Dict, Key};
use sx_kernel::{Backend, Engine, Value};
use tokio::sync::{mpsc, oneshot};

use crate::exchange::{Outcome, Reply, Request, Want};
use crate::services::Services;
use crate::store::DecodeCache;

/// The route id of the apps' 404 page (`host/not-found`), for paths no route matches.
pub const NOT_FOUND: usize = usize::MAX;

/// Steps a request may take before it is stopped with 503.
pub const REQUEST_FUEL: u64 = 5_000_000;

struct Job {
    request: Request,
    want: Want,
    reply: oneshot::Sender<Answered>,
}

/// A worker's answer to a request: the reply, and whether the handler performed nothing but
/// reads of the posts (so the reply may be kept for the route's `{:cache true}`).
pub struct Answered {
    pub reply: Reply,
    pub read_posts_only: bool,
}

impl Answered {
    /// A reply the handler did not make (the server's own error pages): never kept.
    fn from_host(reply: Reply) -> Answered {
        Answered {
            reply,
            read_posts_only: false,
        }
    }
}

thread_local! {
    /// This worker thread's queue into its dispatcher (set by `install`).
    static JOBS: RefCell<Option<mpsc::UnboundedSender<Job>>> = const { RefCell::new(None) };
}

/// One worker thread's kernel image of one version of the apps: the engine with the bundle
/// loaded, the handlers in route order, the apps' start functions (`defstart`), and parsed
/// posts memoised by their stored text.
pub struct Image {
    app: Arc<crate::apps::App>,
    engine: Engine,
    handlers: Vec<Value>,
    not_found: Option<Value>,
    starts: Vec<Value>,
    cache: Rc<DecodeCache>,
    shells: crate::render::ShellCache,
}

impl Image {
    /// Loads a version of the apps into a fresh VM engine.
    pub fn load(app: &Arc<crate::apps::App>) -> Result<Image, String> {
        let mut engine = Engine::with_backend(Backend::Vm);
        engine
            .load_bundle(&app.bundle)
            .map_err(|e| format!("the app bundle: {e}"))?;
        engine.limits = Limits {
            fuel: Some(REQUEST_FUEL),
            ..Limits::default()
        };
        let handlers = crate::apps::declared(&engine)
            .into_iter()
            .map(|route| route.handler)
            .collect();
        let not_found = engine.lookup("host/not-found");
        // `defstart` conses: the list is newest first.
        let mut starts: Vec<Value> = match engine.lookup("*starts*") {
            Some(Value::List(starts)) => starts.iter().cloned().collect(),
            _ => Vec::new(),
        };
        starts.reverse();
        Ok(Image {
            app: app.clone(),
            engine,
            handlers,
            not_found,
            starts,
            cache: Rc::default(),
            shells: Default::default(),
        })
    }

    /// The version of the apps this image runs.
    pub fn app(&self) -> &Arc<crate::apps::App> {
        &self.app
    }

    /// Evaluates SX source in this image (a flow node's function, say).
    pub fn eval(&mut self, source: &str, file: &str) -> Result<Value, Value> {
        self.engine.eval_source(source, Some(file))
    }
}

/// Runs the apps' start functions on a new image, in declaration order, before it serves a
/// request (requests wait in the queue meanwhile). A failure is logged; the image serves
/// anyway (an app must cope with what a start function did not do).
async fn start(image: &RefCell<Image>, services: &Services) {
    let starts = image.borrow().starts.clone();
    if starts.is_empty() {
        return;
    }
    let request = Request::internal("start".into(), image.borrow().app.clone(), String::new());
    for function in starts {
        if let Err(err) = call(image, function, Vec::new(), &request, services).await {
            tracing::error!(
                "a start function (defstart) failed: {}",
                sx_kernel::error::describe(&err)
            );
        }
    }
}

/// Makes `image` the one that serves `dispatch` calls on the current thread; the returned
/// future (to be run with `spawn_local`) runs each request as a local task, so requests
/// suspended at a `perform` interleave.
pub fn install(image: Image, services: Arc<Services>) -> impl std::future::Future<Output = ()> {
    let (sender, mut jobs) = mpsc::unbounded_channel::<Job>();
    JOBS.with(|j| *j.borrow_mut() = Some(sender));
    let mut image = Rc::new(RefCell::new(image));
    async move {
        start(&image, &services).await;
        while let Some(job) = jobs.recv().await {
            // A new version of the apps: this and later requests run on its image.
            if image.borrow().app.generation != job.request.app.generation {
                match Image::load(&job.request.app) {
                    Ok(fresh) => {
                        image = Rc::new(RefCell::new(fresh));
                        start(&image, &services).await;
                    }
                    Err(e) => {
                        tracing::error!("loading the new version of the app: {e}");
                        let _ = job
                            .reply
                            .send(Answered::from_host(crate::render::error_page(
                                500,
                                "Something went wrong.",
                            )));
                        continue;
                    }
                }
            }
            let image = image.clone();
            let services = services.clone();
            // The task's log lines carry the request id, like the router's.
            let span = tracing::info_span!("request", id = %job.request.id);
            let task = async move {
                let (outcome, read_posts_only) = run(&image, &job.request, &services).await;
                let image = &mut *image.borrow_mut();
                let reply = crate::render::reply(
                    &mut image.engine,
                    &mut image.shells,
                    outcome,
                    job.want,
                    &job.request,
                    &services,
                );
                let _ = job.reply.send(Answered {
                    reply,
                    read_posts_only,
                });
            };
            tokio::task::spawn_local(tracing::Instrument::instrument(task, span));
        }
    }
}

/// Runs a request on the current thread's image (see `install`). The future is `Send` for
/// axum; the SX work happens in the thread's local task, without a thread switch.
pub async fn dispatch(request: Request, want: Want) -> Answered {
    let Some(sender) = JOBS.with(|j| j.borrow().clone()) else {
        return Answered::from_host(crate::render::error_page(503, "The server is starting."));
    };
    let (reply, answer) = oneshot::channel();
    if sender
        .send(Job {
            request,
            want,
            reply,
        })
        .is_err()
    {
        return Answered::from_host(crate::render::error_page(503, "The server is restarting."));
    }
    answer.await.unwrap_or_else(|_| {
        Answered::from_host(crate::render::error_page(500, "Something went wrong."))
    })
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
    let user = request.user.as_ref().map_or(Value::Nil, |principal| {
        let mut fields = vec![
            ("name", Value::str(&principal.name)),
            ("via", Value::str(principal.via)),
            (
                "grants",
                Value::list(principal.grants.iter().map(|g| Value::str(g)).collect()),
            ),
        ];
        if let Some(csrf) = &principal.csrf {
            fields.push(("csrf", Value::str(csrf)));
        }
        kw_dict(fields)
    });
    kw_dict([
        ("method", Value::str(&request.method)),
        ("path", Value::str(&request.path)),
        ("params", dict(&request.params, true)),
        ("query", dict(&request.query, false)),
        ("headers", dict(&request.headers, false)),
        ("form", dict(&request.form, false)),
        ("body", Value::str(&request.body)),
        ("user", user),
        ("public-url", Value::str(&request.base_url)),
    ])
}

fn field(d: &Dict, name: &str) -> Option<Value> {
    kw_get(d, name).cloned()
}

/// Runs a handler to its outcome, and tells whether it performed nothing but reads of the
/// posts. The engine is borrowed only while the VM runs; at each `perform` it is released,
/// so other requests on this thread run while this one waits.
async fn run(image: &RefCell<Image>, request: &Request, services: &Services) -> (Outcome, bool) {
    let handler = {
        let image = image.borrow();
        match request.route {
            NOT_FOUND => image.not_found.clone(),
            route => image.handlers.get(route).cloned(),
        }
    };
    let Some(handler) = handler else {
        let failed = Outcome::Failed {
            status: if request.route == NOT_FOUND { 404 } else { 500 },
            log: format!("no handler for route {}", request.route),
        };
        return (failed, false);
    };
    let (result, read_posts_only) = call_noting_reads(
        image,
        handler,
        vec![request_value(request)],
        request,
        services,
    )
    .await;
    let outcome = match result {
        Ok(value) => outcome_of(value),
        Err(Value::Dict(refusal)) if kw_get(&refusal, "refuse").is_some() => {
            match kw_get(&refusal, "refuse") {
                Some(&Value::Int(status @ (401 | 403))) => Outcome::Refused {
                    status: status as u16,
                },
                other => Outcome::Failed {
                    status: 500,
                    log: format!(
                        "a refusal needs :refuse 401 or 403, not {}",
                        sx_kernel::printer::repr(other.unwrap_or(&Value::Nil))
                    ),
                },
            }
        }
        Err(err) => {
            let status = match &err {
                Value::Error(e) if &*e.error_type == "out-of-fuel" => 503,
                Value::Error(e) if &*e.error_type == crate::effects::STORE_FULL => 507,
                Value::Error(e) if &*e.error_type == crate::effects::STORE_UNAVAILABLE => 503,
                _ => 500,
            };
            Outcome::Failed {
                status,
                log: format!(
                    "{} {}: {}",
                    request.method,
                    request.path,
                    sx_kernel::error::describe(&err)
                ),
            }
        }
    };
    (outcome, read_posts_only)
}

/// Calls `function` on `image` to its end, serving its `perform`s for `request`. The engine
/// is borrowed only while the VM runs.
pub async fn call(
    image: &RefCell<Image>,
    function: Value,
    args: Vec<Value>,
    request: &Request,
    services: &Services,
) -> Result<Value, Value> {
    call_noting_reads(image, function, args, request, services)
        .await
        .0
}

/// `call`, and whether every effect it performed only read the posts.
async fn call_noting_reads(
    image: &RefCell<Image>,
    function: Value,
    args: Vec<Value>,
    request: &Request,
    services: &Services,
) -> (Result<Value, Value>, bool) {
    let cache = image.borrow().cache.clone();
    let mut machine = image.borrow().engine.apply_machine(function, args);
    let cx = crate::effects::Context {
        services,
        cache: &cache,
        request,
        read_posts_only: std::cell::Cell::new(true),
    };
    let result = sx_kernel::drive(
        &mut machine,
        |step| step(&mut image.borrow_mut().engine),
        async |req| crate::effects::serve(req, &cx).await,
    )
    .await;
    if let Some(left) = machine.fuel() {
        tracing::debug!(fuel = REQUEST_FUEL - left, "handler finished");
    }
    (result, cx.read_posts_only.get())
}

/// Reads what a handler returned: a page dict, a response dict, or an element tree.
fn outcome_of(value: Value) -> Outcome {
    let Value::Dict(d) = &value else {
        return Outcome::Page {
            title: String::new(),
            content: value,
            status: 200,
            headers: Vec::new(),
        };
    };
    let field = |name: &str| field(d, name);
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
    let mut headers: Vec<(String, String)> = match field("headers") {
        Some(Value::Dict(h)) => h
            .iter()
            .map(|(k, v)| {
                (
                    sx_kernel::printer::display(&k.0).to_ascii_lowercase(),
                    sx_kernel::printer::display(v),
                )
            })
            .collect(),
        _ => Vec::new(),
    };
    // A redirect leads only to a path on this site, whichever app built it.
    for (name, value) in headers.iter_mut() {
        if name == "location" && !crate::render::is_local_path(value) {
            tracing::warn!("a handler's Location {value:?} is not a path on this site: sending /");
            *value = "/".into();
        }
    }
    // Each cookie is its own `Set-Cookie` header (they cannot be joined with commas).
    match field("set-cookies") {
        None | Some(Value::Nil) => {}
        Some(Value::List(cookies)) => {
            for cookie in cookies.iter() {
                let Value::Str(cookie) = cookie else {
                    return Outcome::Failed {
                        status: 500,
                        log: format!(
                            "handler returned a :set-cookies entry that is not a string: {}",
                            sx_kernel::printer::repr(cookie)
                        ),
                    };
                };
                headers.push(("set-cookie".into(), cookie.to_string()));
            }
        }
        Some(other) => {
            return Outcome::Failed {
                status: 500,
                log: format!(
                    "handler returned :set-cookies that is not a list: {}",
                    sx_kernel::printer::repr(&other)
                ),
            }
        }
    }
    if let Some(content) = field("content") {
        let title = field("title")
            .map(|t| sx_kernel::printer::display(&t))
            .unwrap_or_default();
        return Outcome::Page {
            title,
            content,
            status,
            headers,
        };
    }
    let body = field("body")
        .map(|b| sx_kernel::printer::display(&b))
        .unwrap_or_default();
    Outcome::Response {
        status,
        headers,
        body: body.into_bytes(),
    }
}
