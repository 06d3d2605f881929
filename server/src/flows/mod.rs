//! Durable flows: instances in the store, and the runner that advances them (docs/apps.md,
//! "Flows"). The kernel (`sx_kernel::flow`) decides what a flow needs next; this module
//! evaluates the functions nodes name, records each result in the same store transaction
//! that moves the instance on, and keeps timers as a time-ordered index (`store/flows.rs`)
//! that one runner thread polls: a waiting instance costs a store record, never a thread.
//!
//! Instances are SX dicts with keyword keys in the store; handlers and the JSON API see
//! [`public`] views with string keys (`{"id" "flow" "version" "status" "node" "input"
//! "steps" "error"}`). Statuses: running, suspended, sleeping, done, failed, cancelled.
//!
//! A crash between running a node's function and recording its result runs the function
//! again after the restart, with the same idempotency key (`:key` in its context), so an
//! effect can recognise the repeat; a recorded step never runs again.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use sx_kernel::error::{describe, ErrorValue};
use sx_kernel::flow::{Action, Flow, Happened, Position, Wait};
use sx_kernel::value::{kw_dict, kw_get, Dict, Key};
use sx_kernel::Value;

use crate::apps::{Apps, FlowDef};
use crate::effects::now_ms;
use crate::services::Services;
use crate::store::Store;

/// Instances the runner advances at once.
const PARALLEL: usize = 256;

pub mod remote;

/// Where flows run, and the runner's handle shared by every worker: effects wake it when
/// they make an instance runnable.
#[derive(Default)]
pub struct Flows {
    wake: tokio::sync::Notify,
    /// `sx serve` with `SX_KERNEL_URL`: instances live on that kernel; this host only
    /// evaluates node functions when the kernel calls back.
    pub remote: Option<remote::Remote>,
    /// `sx kernel`: node functions are evaluated by the registered host.
    pub kernel: bool,
    /// `SX_KERNEL_TOKEN`: what the host and the kernel show each other.
    pub token: Option<String>,
    /// The queue into the runner thread's evaluator (for the kernel's calls back).
    calls: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedSender<remote::Call>>>,
}

impl Flows {
    pub fn new(config: &crate::Config) -> Flows {
        Flows {
            remote: config.kernel_url.clone().map(|url| remote::Remote {
                url,
                token: config.kernel_token.clone().unwrap_or_default(),
            }),
            kernel: config.kernel_mode,
            token: config.kernel_token.clone(),
            ..Flows::default()
        }
    }

    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Hands a call to the runner thread's evaluator; `None` when it is not running.
    pub fn evaluate(&self, call: remote::Call) -> Option<()> {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.as_ref()?.send(call).ok()
    }
}

fn flow_error(kind: &str, message: impl Into<String>) -> Value {
    ErrorValue::value(kind, message, vec![])
}

fn not_found(what: &str) -> Value {
    flow_error("flow-not-found", format!("no {what}"))
}

fn kw(name: &str) -> Key {
    Key(Value::kw(name))
}

fn get<'a>(d: &'a Dict, name: &str) -> &'a Value {
    kw_get(d, name).unwrap_or(&Value::Nil)
}

fn text_of(d: &Dict, name: &str) -> String {
    match kw_get(d, name) {
        Some(Value::Str(s)) => s.to_string(),
        _ => String::new(),
    }
}

fn as_dict(v: &Value) -> Result<Dict, Value> {
    match v {
        Value::Dict(d) => Ok(d.clone()),
        _ => Err(flow_error(
            "store-error",
            "a stored flow instance is not a dict",
        )),
    }
}

fn store_error(e: crate::store::StoreError) -> Value {
    flow_error("store-error", e.to_string())
}

/// The JSON-ready view of an instance: string keys, no bookkeeping.
pub fn public(instance: &Value) -> Value {
    let Value::Dict(d) = instance else {
        return Value::Nil;
    };
    let mut out = Dict::new();
    for name in ["id", "flow", "version", "status", "node", "input", "error"] {
        out.insert(Key(Value::str(name)), get(d, name).clone());
    }
    for (name, field) in [("created_at", "created-at"), ("updated_at", "updated-at")] {
        out.insert(Key(Value::str(name)), get(d, field).clone());
    }
    if let Value::Int(due) = get(d, "due") {
        if text_of(d, "status") != "running" {
            out.insert(Key(Value::str("wake_at")), Value::Int(*due));
        }
    }
    let steps = match get(d, "steps") {
        Value::List(steps) => steps
            .iter()
            .map(|s| match s {
                Value::Dict(s) => {
                    let mut step = Dict::new();
                    for (k, v) in s.iter() {
                        let name = match &k.0 {
                            Value::Keyword(k) => k.name().replace('-', "_"),
                            other => sx_kernel::printer::display(other),
                        };
                        step.insert(Key(Value::str(&name)), v.clone());
                    }
                    Value::Dict(step)
                }
                other => other.clone(),
            })
            .collect(),
        _ => Vec::new(),
    };
    out.insert(Key(Value::str("steps")), Value::list(steps));
    Value::Dict(out)
}

/// The flow a stored definition describes (`name`, `version`), read by the kernel.
pub fn load(store: &Store, name: &str, version: &str) -> Result<Flow, Value> {
    let nodes = store
        .flow_definition(name, version)
        .map_err(store_error)?
        .ok_or_else(|| not_found(&format!("flow {name} version {version}")))?;
    Flow::read(name, &nodes)
}

/// Keeps the app's flow definitions in the store (instances name their version).
pub fn define_all(store: &Store, flows: &[FlowDef]) -> Result<(), String> {
    for def in flows {
        let nodes = sx_kernel::reader::read_one(&def.nodes)
            .map_err(|e| format!("flow {}: {e}", def.name))?;
        store
            .flow_define(&def.name, &def.version, &nodes)
            .map_err(|e| format!("flow {}: {e}", def.name))?;
    }
    Ok(())
}

/// Starts `def` as instance `id` (a fresh id when `None`) with `input`; an id that exists
/// keeps its instance (starting twice is one instance). Returns the instance.
pub fn start(
    store: &Store,
    def: &FlowDef,
    id: Option<String>,
    input: Value,
) -> Result<Value, Value> {
    let id = match id {
        Some(id) if id.is_empty() || id.len() > 200 || id.contains(['/', '\0', '?', '#']) => {
            return Err(flow_error(
                "flow-error",
                "a flow id is 1 to 200 characters without / ? #",
            ))
        }
        Some(id) => id,
        None => format!("{}-{}", def.name, crate::auth::random_hex(6)),
    };
    let nodes = sx_kernel::reader::read_one(&def.nodes)
        .map_err(|e| flow_error("flow-error", format!("flow {}: {e}", def.name)))?;
    store
        .flow_define(&def.name, &def.version, &nodes)
        .map_err(store_error)?;
    let now = now_ms();
    let instance = kw_dict([
        ("id", Value::str(&id)),
        ("flow", Value::str(&def.name)),
        ("version", Value::str(&def.version)),
        ("status", Value::str("running")),
        ("node", Value::Nil),
        ("input", input),
        ("steps", Value::list(Vec::new())),
        ("error", Value::Nil),
        ("pos", Position::default().to_value()),
        ("attempt", Value::Int(0)),
        ("due", Value::Int(now)),
        ("created-at", Value::Int(now)),
        ("updated-at", Value::Int(now)),
    ]);
    let (stored, _) = store.flow_start(&instance).map_err(store_error)?;
    Ok(stored)
}

pub fn instance(store: &Store, id: &str) -> Result<Value, Value> {
    store
        .flow_instance(id)
        .map_err(store_error)?
        .ok_or_else(|| not_found(&format!("flow instance {id}")))
}

/// Resumes a suspended instance with `payload` (the suspend node's result).
pub fn resume(store: &Store, id: &str, payload: Value) -> Result<Value, Value> {
    let current = instance(store, id)?;
    let d = as_dict(&current)?;
    let status = text_of(&d, "status");
    if status != "suspended" {
        return Err(flow_error(
            "flow-conflict",
            format!("flow instance {id} is {status}, not suspended"),
        ));
    }
    let flow = load(store, &text_of(&d, "flow"), &text_of(&d, "version"))?;
    let mut pos = Position::from_value(get(&d, "pos"))?;
    let step = step_record(&flow, &pos, payload.clone(), 0, now_ms());
    flow.advance(&mut pos, Happened::Value(payload))?;
    let next = moved(&d, &flow, pos, Some(step), "running", Some(now_ms()), None);
    commit(store, id, &d, next)
}

/// Cancels an instance that has not finished.
pub fn cancel(store: &Store, id: &str) -> Result<Value, Value> {
    let current = instance(store, id)?;
    let d = as_dict(&current)?;
    let status = text_of(&d, "status");
    if matches!(status.as_str(), "done" | "failed" | "cancelled") {
        return Err(flow_error(
            "flow-conflict",
            format!("flow instance {id} is already {status}"),
        ));
    }
    let mut next = d.clone();
    next.insert(kw("status"), Value::str("cancelled"));
    next.remove(&kw("due"));
    next.insert(kw("updated-at"), Value::Int(now_ms()));
    commit(store, id, &d, next)
}

/// Writes `next` if the instance is still as `seen` (same `:rev`): a step, a resume and a
/// cancel racing for one instance cannot both win.
fn commit(store: &Store, id: &str, seen: &Dict, next: Dict) -> Result<Value, Value> {
    let rev = get(seen, "rev").clone();
    let result = store
        .flow_update(id, move |current| match current {
            Value::Dict(c) if get(c, "rev") == &rev => Some(Value::Dict(next)),
            _ => None,
        })
        .map_err(store_error)?;
    match result {
        Some((stored, true)) => Ok(stored),
        Some(_) => Err(flow_error(
            "flow-conflict",
            format!("flow instance {id} changed meanwhile; try again"),
        )),
        None => Err(not_found(&format!("flow instance {id}"))),
    }
}

/// A step as recorded: which node, what it gave, when, on which try.
fn step_record(flow: &Flow, pos: &Position, result: Value, attempt: i64, at: i64) -> Value {
    let node = flow.node(pos);
    kw_dict([
        (
            "node",
            Value::str(node.and_then(|n| n.name()).unwrap_or("")),
        ),
        ("kind", Value::str(node.map_or("", |n| n.kind()))),
        ("result", result),
        ("at", Value::Int(at)),
        ("attempt", Value::Int(attempt)),
    ])
}

/// The instance after a move: its new position (and the node there), an optional step,
/// status and due time.
fn moved(
    current: &Dict,
    flow: &Flow,
    pos: Position,
    step: Option<Value>,
    status: &str,
    due: Option<i64>,
    error: Option<String>,
) -> Dict {
    let mut next = current.clone();
    if let Some(step) = step {
        let mut steps: Vec<Value> = match get(current, "steps") {
            Value::List(l) => l.iter().cloned().collect(),
            _ => Vec::new(),
        };
        steps.push(step);
        next.insert(kw("steps"), Value::list(steps));
        next.insert(kw("attempt"), Value::Int(0));
    }
    let mut probe = pos.clone();
    // The node shown is where the flow now waits or works (control steps taken).
    let node = match flow.action(&mut probe) {
        Ok(Action::Done) | Err(_) => Value::Nil,
        Ok(_) => flow
            .node(&probe)
            .and_then(|n| n.name())
            .map_or(Value::Nil, Value::str),
    };
    next.insert(kw("node"), node);
    next.insert(kw("pos"), pos.to_value());
    next.insert(kw("status"), Value::str(status));
    match due {
        Some(due) => next.insert(kw("due"), Value::Int(due)),
        None => next.remove(&kw("due")),
    };
    next.insert(kw("error"), error.map_or(Value::Nil, |e| Value::str(&e)));
    next.insert(kw("updated-at"), Value::Int(now_ms()));
    next
}

/// Starts the runner on its own thread (kernel values are not `Send`). It advances every due
/// instance until `stopping` turns true — unless this host hands its flows to a kernel, when
/// it only evaluates node functions for the kernel's calls back. The app's definitions are
/// kept in the store either way (instances name their version; /flows draws them).
pub fn spawn_runner(
    services: Arc<Services>,
    apps: Arc<Apps>,
    base_url: String,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<std::thread::JoinHandle<()>, String> {
    let app = apps.current()?;
    define_all(&services.store, &app.flows)?;
    let (sender, mut calls) = tokio::sync::mpsc::unbounded_channel::<remote::Call>();
    *services
        .flows
        .calls
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(sender);
    let steps = services.flows.remote.is_none();
    std::thread::Builder::new()
        .name("sx-flows".into())
        .stack_size(64 << 20)
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("the flow runner cannot start: {e}");
                    return;
                }
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, async move {
                if !steps {
                    tokio::task::spawn_local(remote::keep_in_touch(
                        services.clone(),
                        apps.clone(),
                        base_url.clone(),
                        stopping.clone(),
                    ));
                }
                let runner = Rc::new(Runner {
                    services,
                    apps,
                    base_url,
                    image: RefCell::new(None),
                    functions: RefCell::default(),
                    flows: RefCell::default(),
                    busy: RefCell::default(),
                    lost: RefCell::default(),
                });
                loop {
                    let next = if steps { runner.clone().tick() } else { None };
                    let wait = next
                        .map(|due| (due - now_ms()).clamp(0, 1000) as u64)
                        .unwrap_or(1000);
                    tokio::select! {
                        () = runner.services.flows.wake.notified() => {}
                        () = tokio::time::sleep(std::time::Duration::from_millis(wait)) => {}
                        Some(call) = calls.recv() => {
                            let runner = runner.clone();
                            tokio::task::spawn_local(async move { runner.answer(call).await });
                        }
                        _ = stopping.changed() => {}
                    }
                    if *stopping.borrow() {
                        break;
                    }
                }
            });
        })
        .map_err(|e| format!("cannot start the flow runner: {e}"))
}

struct Runner {
    services: Arc<Services>,
    apps: Arc<Apps>,
    base_url: String,
    /// The app's image node functions are evaluated in (loaded for each new version).
    image: RefCell<Option<Rc<RefCell<crate::handler::Image>>>>,
    /// Node functions already evaluated in that image, by their text.
    functions: RefCell<HashMap<String, Value>>,
    flows: RefCell<HashMap<(String, String), Rc<Flow>>>,
    /// Instances being advanced now (a due instance stays in the index until it moves on).
    busy: RefCell<HashSet<String>>,
    /// Busy instances whose claim another node took over (this node stalled past its lease):
    /// advancing them stops before the next step.
    lost: RefCell<HashSet<String>>,
}

impl Runner {
    /// Starts advancing every due instance not already being advanced (here or, while its
    /// claim holds, on another node sharing the store); returns when the next one falls due.
    fn tick(self: Rc<Self>) -> Option<i64> {
        let store = &self.services.store;
        let busy: Vec<String> = self.busy.borrow().iter().cloned().collect();
        match store.flow_renew(&busy, now_ms()) {
            Ok(held) => {
                let lost = busy.iter().zip(held).filter(|(_, held)| !held);
                self.lost
                    .borrow_mut()
                    .extend(lost.map(|(id, _)| id.clone()));
            }
            Err(e) => tracing::error!("renewing the claims on running flow instances: {e}"),
        }
        let room = PARALLEL.saturating_sub(busy.len());
        let (ids, next) = match store.flow_due(now_ms(), room + busy.len()) {
            Ok(found) => found,
            Err(e) => {
                tracing::error!("reading the flow timers: {e}");
                return Some(now_ms() + 1000);
            }
        };
        let mut started = false;
        for id in ids {
            if !self.busy.borrow_mut().insert(id.clone()) {
                continue;
            }
            started = true;
            let runner = self.clone();
            tokio::task::spawn_local(async move {
                runner.advance(&id).await;
                runner.busy.borrow_mut().remove(&id);
                runner.lost.borrow_mut().remove(&id);
                // Another node may take it when it is due again.
                if let Err(e) = runner.services.store.flow_release(&id) {
                    tracing::warn!("releasing flow instance {id}: {e}");
                }
                runner.services.flows.wake();
            });
        }
        if started {
            Some(now_ms() + 1000)
        } else {
            next
        }
    }

    fn flow(&self, name: &str, version: &str) -> Result<Rc<Flow>, Value> {
        let key = (name.to_string(), version.to_string());
        if let Some(flow) = self.flows.borrow().get(&key) {
            return Ok(flow.clone());
        }
        let flow = Rc::new(load(&self.services.store, name, version)?);
        self.flows.borrow_mut().insert(key, flow.clone());
        Ok(flow)
    }

    /// Moves one instance on until it waits, finishes or fails.
    async fn advance(&self, id: &str) {
        // Bounded: each round records a step or changes the status.
        for _ in 0..10_000 {
            if self.lost.borrow().contains(id) {
                tracing::warn!("flow instance {id}: another node took it over; stopping here");
                return;
            }
            match self.step(id).await {
                Ok(true) => continue,
                Ok(false) => return,
                Err(e) => {
                    tracing::error!("flow instance {id}: {}", describe(&e));
                    return;
                }
            }
        }
    }

    /// One move of an instance that is due. `Ok(true)`: it can move again at once.
    async fn step(&self, id: &str) -> Result<bool, Value> {
        let store = &self.services.store;
        let Some(current) = store.flow_instance(id).map_err(store_error)? else {
            return Ok(false);
        };
        let d = as_dict(&current)?;
        let now = now_ms();
        match get(&d, "due") {
            Value::Int(due) if *due <= now => {}
            _ => return Ok(false),
        }
        let status = text_of(&d, "status");
        let flow = match self.flow(&text_of(&d, "flow"), &text_of(&d, "version")) {
            Ok(flow) => flow,
            Err(e) => return self.fail(id, &d, describe(&e)).map(|_| false),
        };
        let mut pos = Position::from_value(get(&d, "pos"))?;
        let next = match status.as_str() {
            // A sleep's time came, or a suspend's timeout: the wait is the step.
            "sleeping" | "suspended" => {
                let mut step = step_record(&flow, &pos, get(&d, "due").clone(), 0, now);
                if status == "suspended" {
                    if let Value::Dict(s) = &mut step {
                        s.insert(kw("timed-out"), Value::Bool(true));
                    }
                }
                flow.advance(&mut pos, Happened::Elapsed)?;
                moved(&d, &flow, pos, Some(step), "running", Some(now), None)
            }
            "running" => match self.next_move(id, &d, &flow, pos).await? {
                Some(next) => next,
                None => return Ok(false),
            },
            _ => {
                // Finished instances leave the timer index.
                let mut next = d.clone();
                next.remove(&kw("due"));
                next
            }
        };
        let moves_on = matches!(get(&next, "status"), Value::Str(s) if &**s == "running")
            && matches!(get(&next, "due"), Value::Int(t) if *t <= now_ms());
        match commit(store, id, &d, next) {
            Ok(_) => Ok(moves_on),
            // Resumed or cancelled meanwhile: look again.
            Err(Value::Error(e)) if &*e.error_type == "flow-conflict" => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// What a running instance does at its position; `None` when nothing is to be written.
    async fn next_move(
        &self,
        id: &str,
        d: &Dict,
        flow: &Flow,
        mut pos: Position,
    ) -> Result<Option<Dict>, Value> {
        let now = now_ms();
        let action = flow.action(&mut pos)?;
        let attempt = match get(d, "attempt") {
            Value::Int(n) => *n,
            _ => 0,
        };
        Ok(Some(match action {
            Action::Done => moved(d, flow, pos, None, "done", None, None),
            Action::Suspend { timeout_ms, .. } => moved(
                d,
                flow,
                pos,
                None,
                "suspended",
                timeout_ms.map(|ms| now.saturating_add(ms)),
                None,
            ),
            Action::Sleep { wait, .. } => {
                let until = match wait {
                    Wait::For(ms) => Ok(now.saturating_add(*ms)),
                    Wait::Until(expr) => match self.call(id, d, &pos, expr).await {
                        Ok(Value::Int(t)) => Ok(t),
                        Ok(other) => Err(format!(
                            "the sleep's :until gave {}, not a time in milliseconds",
                            sx_kernel::printer::repr(&other)
                        )),
                        Err(e) => Err(describe(&e)),
                    },
                };
                match until {
                    Ok(until) => moved(d, flow, pos, None, "sleeping", Some(until), None),
                    Err(e) => self.retry_or_fail(d, flow, pos, attempt, e, Default::default()),
                }
            }
            Action::Call { expr, retry, .. } => {
                let expr = expr.clone();
                match self.call(id, d, &pos, &expr).await {
                    Ok(result) => {
                        let step = step_record(flow, &pos, result.clone(), attempt, now_ms());
                        flow.advance(&mut pos, Happened::Value(result))?;
                        moved(d, flow, pos, Some(step), "running", Some(now_ms()), None)
                    }
                    Err(e) => self.retry_or_fail(d, flow, pos, attempt, describe(&e), retry),
                }
            }
        }))
    }

    /// A failed try: again after the node's backoff, or `failed` when its tries are spent.
    /// A host that does not answer (`sx kernel`) spends no try: the node waits for it.
    fn retry_or_fail(
        &self,
        d: &Dict,
        flow: &Flow,
        pos: Position,
        attempt: i64,
        error: String,
        retry: sx_kernel::flow::Retry,
    ) -> Dict {
        if error.starts_with(remote::HOST_UNAVAILABLE) {
            let mut next = moved(
                d,
                flow,
                pos,
                None,
                "running",
                Some(now_ms() + remote::HOST_RETRY_MS),
                Some(error),
            );
            next.insert(kw("attempt"), Value::Int(attempt));
            return next;
        }
        let tries = attempt + 1;
        if tries >= i64::from(retry.attempts) {
            return moved(d, flow, pos, None, "failed", None, Some(error));
        }
        let delay = retry.delay_ms(tries as u32);
        let mut next = moved(
            d,
            flow,
            pos,
            None,
            "running",
            Some(now_ms().saturating_add(delay)),
            Some(format!("try {tries} failed, trying again: {error}")),
        );
        next.insert(kw("attempt"), Value::Int(tries));
        next
    }

    fn fail(&self, id: &str, d: &Dict, error: String) -> Result<Value, Value> {
        let mut next = d.clone();
        next.insert(kw("status"), Value::str("failed"));
        next.insert(kw("error"), Value::str(&error));
        next.remove(&kw("due"));
        commit(&self.services.store, id, d, next)
    }

    /// Calls a node's function with its context: here, or — on `sx kernel` — on the host
    /// that registered the flow.
    async fn call(&self, id: &str, d: &Dict, pos: &Position, expr: &Value) -> Result<Value, Value> {
        let context = self.context(id, d, pos);
        let expr = sx_kernel::printer::repr(expr);
        if self.services.flows.kernel {
            return remote::call_host(&self.services, id, &expr, &context).await;
        }
        self.evaluate(id, &expr, context).await
    }

    /// Answers a kernel's call back (this host's flows run on `sx kernel`).
    async fn answer(&self, call: remote::Call) {
        let context = sx_kernel::reader::read_one(&call.context).unwrap_or(Value::Nil);
        let result = self.evaluate(&call.id, &call.expr, context).await;
        let _ = call.reply.send(remote::answer_text(result));
    }

    /// Evaluates a node's function (SX text) in the app's image and calls it with `context`,
    /// serving its `perform`s like a handler's.
    async fn evaluate(&self, id: &str, text: &str, context: Value) -> Result<Value, Value> {
        let app = self
            .apps
            .current()
            .map_err(|e| flow_error("flow-error", e))?;
        let stale = self
            .image
            .borrow()
            .as_ref()
            .is_none_or(|i| i.borrow().app().generation != app.generation);
        if stale {
            let image =
                crate::handler::Image::load(&app).map_err(|e| flow_error("flow-error", e))?;
            *self.image.borrow_mut() = Some(Rc::new(RefCell::new(image)));
            self.functions.borrow_mut().clear();
        }
        let image = self.image.borrow().clone().expect("loaded above");
        let cached = self.functions.borrow().get(text).cloned();
        let function = match cached {
            Some(f) => f,
            None => {
                let f = image.borrow_mut().eval(text, "flow")?;
                self.functions
                    .borrow_mut()
                    .insert(text.to_string(), f.clone());
                f
            }
        };
        let request =
            crate::exchange::Request::internal(format!("flow {id}"), app, self.base_url.clone());
        crate::handler::call(&image, function, vec![context], &request, &self.services).await
    }

    /// What a node's function is called with: `{:id :flow :input :results :item :key
    /// :attempt}` (`:results`: each recorded node's latest result, by node name).
    fn context(&self, id: &str, d: &Dict, pos: &Position) -> Value {
        let mut results = Dict::new();
        if let Value::List(steps) = get(d, "steps") {
            for step in steps.iter() {
                if let Value::Dict(s) = step {
                    if let Value::Str(node) = get(s, "node") {
                        results.insert(Key(Value::kw(node)), get(s, "result").clone());
                    }
                }
            }
        }
        kw_dict([
            ("id", Value::str(id)),
            ("flow", get(d, "flow").clone()),
            ("input", get(d, "input").clone()),
            ("results", Value::Dict(results)),
            ("item", Flow::item(pos)),
            ("key", Value::str(&Flow::idempotency_key(id, pos))),
            ("attempt", get(d, "attempt").clone()),
        ])
    }
}
