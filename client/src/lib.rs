//! The SX kernel in the browser (DESIGN.md §4). `start` boots a VM engine with the engine
//! bundle (`sx/web/engine.sx`, compiled by `build.rs` with this same kernel), listens for
//! clicks, form submissions and history pops, asks the SX engine what to do with each
//! (`engine/click`, `engine/submit`, `engine/popstate` — plain data in, an action or nil out,
//! decided synchronously so the default can still be prevented), and runs the action
//! (`engine/act`) as a local task, serving its effects: `fetch` (the VM resumes when the
//! promise settles), `dom/swap` (the SX wire fragment rendered to DOM by `dom.rs`),
//! `history/*`, `title`, `scroll`, `focus`, `navigate`, `document/replace`, `dom/attribute`,
//! `log`, `now`, `mark`. When the engine is up, `<html>` gets `data-sx-ready="true"` and the performance
//! timeline an `sx-ready` mark; each boosted navigation ends with an `sx-navigated` mark.

#[cfg(test)]
mod decisions;
mod dom;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use sx_kernel::engine::unknown_effect;
use sx_kernel::error::ErrorValue;
use sx_kernel::value::{kw_dict, kw_get, Dict};
use sx_kernel::{Engine, Step, Value};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Document, Element, HtmlElement, HtmlFormElement, MouseEvent, Window};

/// The engine, compiled at build time.
const ENGINE_BUNDLE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/engine.sxbc"));

/// The kernel's prelude, compiled at build time by the same kernel (`prelude::compile_image`).
const PRELUDE_IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/prelude.sxpi"));

/// Loads that take longer than this show the progress bar.
const PROGRESS_DELAY_MS: u32 = 200;

thread_local! {
    static ENGINE: RefCell<Option<Rc<RefCell<Engine>>>> = const { RefCell::new(None) };
    /// Elements given an id so an `sx-get` without `sx-target` can name itself.
    static AUTO_IDS: Cell<u32> = const { Cell::new(0) };
}

fn window() -> Window {
    web_sys::window().expect("a browser window")
}

fn document() -> Document {
    window().document().expect("a document")
}

fn log_error(message: &str) {
    web_sys::console::error_1(&format!("sx: {message}").into());
}

fn js_text(e: &JsValue) -> String {
    e.as_string()
        .or_else(|| {
            e.dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.message()))
        })
        .unwrap_or_else(|| format!("{e:?}"))
}

#[wasm_bindgen(start)]
pub fn start() {
    if let Err(e) = boot() {
        log_error(&e);
    }
}

fn boot() -> Result<(), String> {
    let mut engine = Engine::from_prelude_image(PRELUDE_IMAGE)?;
    engine
        .load_bundle(ENGINE_BUNDLE)
        .map_err(|e| format!("the engine bundle: {e}"))?;
    ENGINE.with(|slot| *slot.borrow_mut() = Some(Rc::new(RefCell::new(engine))));

    let doc = document();
    let win = window();
    if let Ok(history) = win.history() {
        // The engine restores scroll positions itself.
        let _ = history.set_scroll_restoration(web_sys::ScrollRestoration::Manual);
    }
    listen(doc.as_ref(), "click", |ev: web_sys::Event| {
        if let Some(ev) = ev.dyn_ref::<MouseEvent>() {
            on_click(ev);
        }
    })?;
    listen(doc.as_ref(), "submit", |ev: web_sys::Event| {
        if let Some(ev) = ev.dyn_ref::<web_sys::SubmitEvent>() {
            on_submit(ev);
        }
    })?;
    listen(win.as_ref(), "popstate", |ev: web_sys::Event| {
        if let Some(ev) = ev.dyn_ref::<web_sys::PopStateEvent>() {
            on_popstate(ev);
        }
    })?;
    let location = win.location().href().unwrap_or_default();
    spawn("engine/boot", vec![Value::str(&location)]);
    if let Some(root) = doc.document_element() {
        let _ = root.set_attribute("data-sx-ready", "true");
    }
    mark("sx-ready");
    Ok(())
}

fn listen(
    target: &web_sys::EventTarget,
    event: &str,
    handler: impl FnMut(web_sys::Event) + 'static,
) -> Result<(), String> {
    let closure = Closure::<dyn FnMut(web_sys::Event)>::new(handler);
    target
        .add_event_listener_with_callback(event, closure.as_ref().unchecked_ref())
        .map_err(|e| js_text(&e))?;
    // The listener lives as long as the page.
    closure.forget();
    Ok(())
}

fn engine() -> Option<Rc<RefCell<Engine>>> {
    ENGINE.with(|slot| slot.borrow().clone())
}

fn opt_str(v: Option<String>) -> Value {
    v.map_or(Value::Nil, |s| Value::str(&s))
}

fn field(d: &Dict, name: &str) -> Option<Value> {
    kw_get(d, name).cloned()
}

fn text_field(d: &Dict, name: &str) -> Option<String> {
    match field(d, name) {
        Some(Value::Str(s)) => Some(s.to_string()),
        _ => None,
    }
}

/// Calls an SX decision function synchronously: it must not perform.
fn decide(name: &str, event: Value) -> Option<Value> {
    let engine = engine()?;
    let mut engine = engine.borrow_mut();
    let f = engine.lookup(name)?;
    let mut machine = engine.apply_machine(f, vec![event]);
    match machine.run(&mut engine) {
        Step::Done(Value::Nil) | Step::Done(Value::Bool(false)) => None,
        Step::Done(action) => Some(action),
        Step::Error(e) => {
            log_error(&sx_kernel::error::describe(&e));
            None
        }
        Step::Perform(_) => {
            log_error(&format!("{name} may not perform"));
            None
        }
    }
}

/// Runs an SX function as a local task, serving its effects until it finishes.
fn spawn(name: &'static str, args: Vec<Value>) {
    let Some(engine) = engine() else { return };
    wasm_bindgen_futures::spawn_local(async move {
        let Some(f) = engine.borrow().lookup(name) else {
            return log_error(&format!("the engine has no {name}"));
        };
        let mut machine = engine.borrow().apply_machine(f, args);
        let result = sx_kernel::drive(
            &mut machine,
            |step| step(&mut engine.borrow_mut()),
            async |request| effect(request).await,
        )
        .await;
        if let Err(e) = result {
            log_error(&sx_kernel::error::describe(&e));
        }
    });
}

fn attribute(el: &Element, name: &str) -> Value {
    opt_str(el.get_attribute(name))
}

/// The nearest `sx-boost` above `el`: its value (`""` when present without one), or nil.
fn boost(el: &Element) -> Value {
    match el.closest("[sx-boost]") {
        Ok(Some(container)) => attribute(&container, "sx-boost"),
        _ => Value::Nil,
    }
}

/// A selector for `el` itself, giving it an id when it has none.
fn self_selector(el: &Element) -> String {
    if el.id().is_empty() {
        let n = AUTO_IDS.with(|c| {
            c.set(c.get() + 1);
            c.get()
        });
        el.set_id(&format!("sx-auto-{n}"));
    }
    format!("#{}", el.id())
}

fn location_fields() -> (String, String) {
    let location = window().location();
    (
        location.origin().unwrap_or_default(),
        location.href().unwrap_or_default(),
    )
}

fn on_click(ev: &MouseEvent) {
    if ev.default_prevented() {
        return;
    }
    let Some(target) = ev.target().and_then(|t| t.dyn_into::<Element>().ok()) else {
        return;
    };
    // A form's sx-post is its submission (handled by on_submit), not a click on it.
    let Ok(Some(el)) = target.closest("a[href], [sx-get], [sx-post]:not(form)") else {
        return;
    };
    let (origin, location) = location_fields();
    // `href` as the browser resolves it (absolute).
    let href = el
        .get_attribute("href")
        .and_then(|raw| web_sys::Url::new_with_base(&raw, &location).ok())
        .map(|u| u.href());
    let event = kw_dict(vec![
        ("button", Value::Int(i64::from(ev.button()))),
        ("ctrl", Value::Bool(ev.ctrl_key())),
        ("meta", Value::Bool(ev.meta_key())),
        ("shift", Value::Bool(ev.shift_key())),
        ("alt", Value::Bool(ev.alt_key())),
        ("origin", Value::str(&origin)),
        ("location", Value::str(&location)),
        ("href", opt_str(href)),
        ("target", attribute(&el, "target")),
        ("download", Value::Bool(el.has_attribute("download"))),
        ("boost", boost(&el)),
        ("sx-get", attribute(&el, "sx-get")),
        ("sx-post", attribute(&el, "sx-post")),
        ("sx-target", attribute(&el, "sx-target")),
        ("sx-swap", attribute(&el, "sx-swap")),
        ("self", Value::str(&self_selector(&el))),
    ]);
    if let Some(action) = decide("engine/click", event) {
        ev.prevent_default();
        spawn("engine/act", vec![action]);
    }
}

/// A form's fields as `application/x-www-form-urlencoded` text (with the submit button's
/// name and value, as a native submission sends them).
fn form_body(form: &HtmlFormElement, submitter: Option<HtmlElement>) -> Option<String> {
    let data = web_sys::FormData::new_with_form(form).ok()?;
    if let Some(button) = submitter {
        if let Some(name) = button.get_attribute("name").filter(|n| !n.is_empty()) {
            let value = button.get_attribute("value").unwrap_or_default();
            data.append_with_str(&name, &value).ok()?;
        }
    }
    let params = web_sys::UrlSearchParams::new_with_str_sequence_sequence(&data).ok()?;
    Some(String::from(params.to_string()))
}

fn on_submit(ev: &web_sys::SubmitEvent) {
    if ev.default_prevented() {
        return;
    }
    let Some(form) = ev
        .target()
        .and_then(|t| t.dyn_into::<HtmlFormElement>().ok())
    else {
        return;
    };
    let submitter = ev
        .submitter()
        .and_then(|s| s.dyn_into::<HtmlElement>().ok());
    let (origin, location) = location_fields();
    let el: &Element = form.as_ref();
    let event = kw_dict(vec![
        ("action", Value::str(&form.action())),
        ("method", Value::str(&form.method().to_ascii_uppercase())),
        ("enctype", Value::str(&form.enctype())),
        ("body", opt_str(form_body(&form, submitter))),
        ("target", attribute(el, "target")),
        ("origin", Value::str(&origin)),
        ("location", Value::str(&location)),
        ("boost", boost(el)),
        ("sx-post", attribute(el, "sx-post")),
        ("sx-target", attribute(el, "sx-target")),
        ("sx-swap", attribute(el, "sx-swap")),
        ("self", Value::str(&self_selector(el))),
    ]);
    if let Some(action) = decide("engine/submit", event) {
        ev.prevent_default();
        spawn("engine/act", vec![action]);
    }
}

fn on_popstate(ev: &web_sys::PopStateEvent) {
    let state = ev.state();
    let ours = js_sys::Reflect::get(&state, &"sx".into())
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    if !ours {
        return;
    }
    let scroll = js_sys::Reflect::get(&state, &"scroll".into())
        .ok()
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0);
    let (_, location) = location_fields();
    let event = kw_dict(vec![
        ("url", Value::str(&location)),
        ("scroll", Value::Int(scroll as i64)),
    ]);
    if let Some(action) = decide("engine/popstate", event) {
        spawn("engine/act", vec![action]);
    }
}

fn failed(kind: &str, message: impl Into<String>) -> Value {
    ErrorValue::value(kind, message, vec![])
}

fn history_state(scroll: f64) -> JsValue {
    let state = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&state, &"sx".into(), &JsValue::TRUE);
    let _ = js_sys::Reflect::set(&state, &"scroll".into(), &JsValue::from_f64(scroll));
    state.into()
}

/// A User Timing mark (visible in the browser's performance tools; the benchmarks read them).
fn mark(name: &str) {
    if let Some(performance) = window().performance() {
        let _ = performance.mark(name);
    }
}

/// Serves one effect of the engine.
async fn effect(request: &Value) -> Result<Value, Value> {
    let Value::Dict(d) = request else {
        return Err(unknown_effect(request));
    };
    let Some(op) = text_field(d, "op") else {
        return Err(unknown_effect(request));
    };
    let win = window();
    let doc = document();
    let dom_failed = |e: JsValue| failed("dom-error", js_text(&e));
    match op.as_str() {
        "fetch" => fetch(d).await,
        "dom/swap" => {
            let selector = text_field(d, "target").unwrap_or_else(|| "#content".into());
            let mode = text_field(d, "swap").unwrap_or_else(|| "inner".into());
            let wire = text_field(d, "sx").unwrap_or_default();
            let tree = sx_kernel::reader::read_one(&wire)
                .map_err(|e| failed("read-error", format!("the fragment: {e}")))?;
            let target = doc
                .query_selector(&selector)
                .map_err(dom_failed)?
                .ok_or_else(|| failed("dom-error", format!("no element matches {selector}")))?;
            let nodes = dom::fragment(&doc, &tree).map_err(|e| failed("dom-error", e))?;
            let result = match mode.as_str() {
                "inner" => {
                    target.set_text_content(None);
                    target.append_child(&nodes).map(|_| ())
                }
                "outer" => target.replace_with_with_node_1(&nodes),
                "beforeend" => target.append_child(&nodes).map(|_| ()),
                "afterbegin" => target.prepend_with_node_1(&nodes),
                "beforebegin" => target.before_with_node_1(&nodes),
                "afterend" => target.after_with_node_1(&nodes),
                other => return Err(failed("dom-error", format!("unknown sx-swap {other:?}"))),
            };
            result.map_err(dom_failed)?;
            Ok(Value::Nil)
        }
        "history/push" | "history/replace" => {
            let url = text_field(d, "url");
            let history = win.history().map_err(dom_failed)?;
            let scroll = match field(d, "scroll") {
                Some(Value::Int(y)) => y as f64,
                _ => 0.0,
            };
            let state = history_state(scroll);
            let result = if op == "history/push" {
                history.push_state_with_url(&state, "", url.as_deref())
            } else {
                history.replace_state_with_url(&state, "", url.as_deref())
            };
            result.map_err(dom_failed)?;
            Ok(Value::Nil)
        }
        "history/remember-scroll" => {
            // Keeps the current entry's scroll position, for Back.
            let history = win.history().map_err(dom_failed)?;
            let y = win.scroll_y().unwrap_or(0.0);
            history
                .replace_state(&history_state(y), "")
                .map_err(dom_failed)?;
            Ok(Value::Nil)
        }
        "title" => {
            doc.set_title(&text_field(d, "title").unwrap_or_default());
            Ok(Value::Nil)
        }
        "dom/attribute" => {
            // `{:selector s :name n}` → the first match's attribute, or nil.
            let selector = text_field(d, "selector").unwrap_or_default();
            let name = text_field(d, "name").unwrap_or_default();
            let el = doc.query_selector(&selector).map_err(dom_failed)?;
            Ok(opt_str(el.and_then(|el| el.get_attribute(&name))))
        }
        "scroll" => {
            let coordinate = |name: &str| match field(d, name) {
                Some(Value::Int(n)) => n as f64,
                _ => 0.0,
            };
            win.scroll_to_with_x_and_y(coordinate("x"), coordinate("y"));
            Ok(Value::Nil)
        }
        "focus" => {
            let selector = text_field(d, "selector").unwrap_or_else(|| "#content".into());
            if let Some(el) = doc
                .query_selector(&selector)
                .map_err(dom_failed)?
                .and_then(|e| e.dyn_into::<HtmlElement>().ok())
            {
                // Screen readers follow focus; -1 makes a container focusable by script only.
                if !el.has_attribute("tabindex") {
                    let _ = el.set_attribute("tabindex", "-1");
                }
                let options = web_sys::FocusOptions::new();
                options.set_prevent_scroll(true);
                let _ = el.focus_with_options(&options);
            }
            Ok(Value::Nil)
        }
        "navigate" => {
            let url = text_field(d, "url").unwrap_or_default();
            let location = win.location();
            let replace = matches!(field(d, "replace"), Some(Value::Bool(true)));
            if replace {
                location.replace(&url).map_err(dom_failed)?;
            } else {
                location.assign(&url).map_err(dom_failed)?;
            }
            Ok(Value::Nil)
        }
        "document/replace" => {
            // A POST answered with a whole page (an error, say): show it, as the browser
            // would have, without sending the POST again.
            let html = text_field(d, "html").unwrap_or_default();
            if let Some(root) = doc.document_element() {
                root.set_inner_html(&html);
            }
            Ok(Value::Nil)
        }
        "log" => {
            web_sys::console::log_1(&text_field(d, "message").unwrap_or_default().into());
            Ok(Value::Nil)
        }
        "now" => Ok(Value::Int(js_sys::Date::now() as i64)),
        "mark" => {
            mark(&text_field(d, "name").unwrap_or_default());
            Ok(Value::Nil)
        }
        _ => Err(unknown_effect(request)),
    }
}

/// Shows the progress bar if `done` is not set within `PROGRESS_DELAY_MS`.
fn progress_after_delay(done: Rc<Cell<bool>>) {
    wasm_bindgen_futures::spawn_local(async move {
        gloo_timers::future::TimeoutFuture::new(PROGRESS_DELAY_MS).await;
        if !done.get() {
            set_progress(true);
        }
    });
}

fn set_progress(on: bool) {
    let doc = document();
    let bar = match doc.get_element_by_id("sx-progress") {
        Some(bar) => bar,
        None => {
            let Ok(bar) = doc.create_element("div") else {
                return;
            };
            bar.set_id("sx-progress");
            let _ = bar.set_attribute("role", "progressbar");
            let _ = bar.set_attribute("aria-label", "Loading");
            if let Some(body) = doc.body() {
                let _ = body.append_child(&bar);
            }
            bar
        }
    };
    let _ = bar.class_list().toggle_with_force("active", on);
    if let Some(content) = doc.get_element_by_id("content") {
        let _ = content.set_attribute("aria-busy", if on { "true" } else { "false" });
    }
}

/// `{:op "fetch" :url u [:method m] [:body b] [:progress true]}` with `SX-Request: true` and
/// `Accept: text/sx`, following redirects → `{:status :url :redirected :content-type :title
/// :body}`, or `{:status :url :cross-origin true}` (no body) when the final URL is another
/// origin's; a network failure raises `fetch-error`.
async fn fetch(d: &Dict) -> Result<Value, Value> {
    let url = text_field(d, "url").ok_or_else(|| failed("type-error", "fetch needs a :url"))?;
    let method = text_field(d, "method").unwrap_or_else(|| "GET".into());
    let init = web_sys::RequestInit::new();
    init.set_method(&method);
    init.set_redirect(web_sys::RequestRedirect::Follow);
    let headers = web_sys::Headers::new().map_err(|e| failed("fetch-error", js_text(&e)))?;
    let _ = headers.set("SX-Request", "true");
    let _ = headers.set("Accept", "text/sx, text/html;q=0.5");
    if let Some(body) = text_field(d, "body") {
        let _ = headers.set("Content-Type", "application/x-www-form-urlencoded");
        init.set_body(&JsValue::from_str(&body));
    }
    init.set_headers(&headers);
    let request = web_sys::Request::new_with_str_and_init(&url, &init)
        .map_err(|e| failed("fetch-error", js_text(&e)))?;
    let done = Rc::new(Cell::new(false));
    let progress = matches!(field(d, "progress"), Some(Value::Bool(true)));
    if progress {
        progress_after_delay(done.clone());
    }
    let answer = async {
        let response: web_sys::Response = JsFuture::from(window().fetch_with_request(&request))
            .await
            .map_err(|e| failed("fetch-error", js_text(&e)))?
            .unchecked_into();
        // An answer from another origin (the request was redirected there) is never read
        // into this page: the engine sends the browser there instead, so nothing another
        // site wrote ever runs in this origin.
        let origin = window().location().origin().unwrap_or_default();
        let final_url = response.url();
        if !final_url.starts_with(&format!("{origin}/")) {
            return Ok(kw_dict(vec![
                ("status", Value::Int(i64::from(response.status()))),
                ("url", Value::str(&final_url)),
                ("cross-origin", Value::Bool(true)),
            ]));
        }
        let body = JsFuture::from(
            response
                .text()
                .map_err(|e| failed("fetch-error", js_text(&e)))?,
        )
        .await
        .map_err(|e| failed("fetch-error", js_text(&e)))?
        .as_string()
        .unwrap_or_default();
        let header = |name: &str| response.headers().get(name).ok().flatten();
        let title = header("sx-title").map(|t| {
            js_sys::decode_uri_component(&t)
                .map(String::from)
                .unwrap_or(t)
        });
        Ok(kw_dict(vec![
            ("status", Value::Int(i64::from(response.status()))),
            ("url", Value::str(&response.url())),
            ("redirected", Value::Bool(response.redirected())),
            ("content-type", opt_str(header("content-type"))),
            ("title", opt_str(title)),
            (
                "user",
                opt_str(header("sx-user").map(|u| {
                    js_sys::decode_uri_component(&u)
                        .map(String::from)
                        .unwrap_or(u)
                })),
            ),
            ("body", Value::str(&body)),
        ]))
    }
    .await;
    done.set(true);
    if progress {
        set_progress(false);
    }
    answer
}
