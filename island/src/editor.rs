//! The component and its wiring to the page's form.

use std::cell::RefCell;
use std::rc::Rc;

use leptos::prelude::*;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{
    HtmlButtonElement, HtmlElement, HtmlFormElement, HtmlInputElement, HtmlTextAreaElement,
};

use crate::logic::{self, Answer, Local, Restore};

/// How long after the last keystroke the text goes to the server.
const AUTOSAVE_DELAY_MS: i32 = 2000;

/// The page's form fields the island works with.
struct Fields {
    form: HtmlFormElement,
    title: HtmlInputElement,
    body: HtmlTextAreaElement,
    publish_at: Option<HtmlInputElement>,
    save: Option<HtmlButtonElement>,
    publish: Option<HtmlButtonElement>,
}

impl Fields {
    fn find(root: &HtmlElement) -> Option<Fields> {
        let one = |selector: &str| root.query_selector(selector).ok().flatten();
        Some(Fields {
            form: one("form")?.dyn_into().ok()?,
            title: one("[name=title]")?.dyn_into().ok()?,
            body: one("textarea[name=body]")?.dyn_into().ok()?,
            publish_at: one("[name=publish_at]").and_then(|e| e.dyn_into().ok()),
            save: one("button[data-save]").and_then(|e| e.dyn_into().ok()),
            publish: one("button[name=intent][value=publish]").and_then(|e| e.dyn_into().ok()),
        })
    }
}

/// What the component shows (signals are `Copy`: closures take them freely).
#[derive(Clone, Copy)]
struct Ui {
    title: RwSignal<String>,
    preview: RwSignal<String>,
    words: RwSignal<usize>,
    status: RwSignal<String>,
    /// `data-state` of the status line: restored, saving, saved, local, failed, conflict.
    state: RwSignal<&'static str>,
    /// The text stored on the server when a save met a conflict: (title, body).
    theirs: RwSignal<Option<(String, String)>>,
}

/// The autosave's bookkeeping.
struct Save {
    /// Where autosaves go; empty when the server takes none (a published post).
    url: String,
    csrf: String,
    /// The local storage key of this post's copy.
    key: String,
    user: String,
    /// The revision the text is based on, and that revision's text.
    rev: i64,
    base: (String, String),
    /// The revision of the text shown in a conflict.
    theirs_rev: i64,
    dirty: bool,
    in_flight: bool,
    failures: u32,
    timer: Option<i32>,
    conflict: bool,
    /// A form submit held back until the autosave on its way answers (on /new, that save
    /// creates the post the form must then edit, not create again): its submitter.
    held_submit: Option<Option<HtmlElement>>,
}

struct Editor {
    root: HtmlElement,
    fields: Fields,
    ui: Ui,
    save: RefCell<Save>,
}

thread_local! {
    /// Every mounted editor; closures name theirs by index (plain `Copy` data).
    static EDITORS: RefCell<Vec<Rc<Editor>>> = const { RefCell::new(Vec::new()) };
}

fn editor(id: usize) -> Option<Rc<Editor>> {
    EDITORS.with(|e| e.borrow().get(id).cloned())
}

fn now() -> f64 {
    js_sys::Date::now()
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

/// Mounts the editor on every `[data-island="editor"]` of the page not mounted yet (the
/// loader calls it at start and whenever the page's content changes).
#[wasm_bindgen]
pub fn mount() {
    let Some(document) = web_sys::window().and_then(|w| w.document()) else {
        return;
    };
    let Ok(list) = document.query_selector_all("[data-island=\"editor\"]:not([data-island-ready])")
    else {
        return;
    };
    for i in 0..list.length() {
        let Some(root) = list.item(i).and_then(|n| n.dyn_into::<HtmlElement>().ok()) else {
            continue;
        };
        match Fields::find(&root) {
            Some(fields) => start(root, fields),
            None => web_sys::console::warn_1(&"sx-island: an editor without its form".into()),
        }
    }
}

fn start(root: HtmlElement, fields: Fields) {
    let attr = |name: &str| root.get_attribute(name).unwrap_or_default();
    let csrf = fields
        .form
        .query_selector("[name=csrf]")
        .ok()
        .flatten()
        .and_then(|e| e.dyn_into::<HtmlInputElement>().ok())
        .map(|e| e.value())
        .unwrap_or_default();
    let user = attr("data-user");
    let key = format!("sx-editor:{user}:{}", attr("data-key"));
    let server_rev: i64 = attr("data-rev").parse().unwrap_or(0);
    let server_at: f64 = attr("data-saved-at").parse().unwrap_or(0.0);
    let server = (fields.title.value(), fields.body.value());
    let local = storage()
        .and_then(|s| s.get_item(&key).ok().flatten())
        .and_then(|text| Local::from_json(&text));
    let mut rev = server_rev;
    let mut dirty = false;
    let (status, state) = match logic::choose(&server.0, &server.1, local.as_ref()) {
        Restore::Local => {
            let local = local.as_ref().expect("chosen");
            fields.title.set_value(&local.title);
            fields.body.set_value(&local.body);
            // Typed on the revision it names: if the server moved on since, saving it meets
            // the conflict check, which shows both texts.
            rev = local.rev;
            dirty = true;
            root.set_attribute("data-restored", "local").ok();
            (
                format!(
                    "Restored your text from this browser (typed at {}, not yet on the server).",
                    logic::clock(local.at)
                ),
                "restored",
            )
        }
        Restore::Server => {
            if let (Some(s), Some(_)) = (storage(), &local) {
                s.remove_item(&key).ok();
            }
            root.set_attribute("data-restored", "server").ok();
            if server_at > 0.0 {
                (
                    format!(
                        "Text from the server (saved at {}).",
                        logic::clock(server_at)
                    ),
                    "restored",
                )
            } else {
                (String::new(), "new")
            }
        }
    };
    let body = fields.body.value();
    let title = fields.title.value();
    let save = Save {
        url: attr("data-autosave"),
        csrf,
        key,
        user,
        rev,
        base: server,
        theirs_rev: 0,
        dirty,
        in_flight: false,
        failures: 0,
        timer: None,
        conflict: false,
        held_submit: None,
    };
    set_rev_field(&fields.form, rev);
    let parent = root.clone();
    let has_publish = fields.publish.is_some();
    let has_schedule = fields.publish_at.is_some();
    let id = EDITORS.with(|e| e.borrow().len());
    let handle = leptos::mount::mount_to(parent, move || {
        let ui = Ui {
            title: RwSignal::new(title),
            preview: RwSignal::new(logic::preview_html(&body)),
            words: RwSignal::new(logic::words(&body)),
            status: RwSignal::new(status),
            state: RwSignal::new(state),
            theirs: RwSignal::new(None),
        };
        EDITORS.with(|e| {
            e.borrow_mut().push(Rc::new(Editor {
                root: root.clone(),
                fields,
                ui,
                save: RefCell::new(save),
            }))
        });
        view(id, ui, has_publish, has_schedule)
    });
    handle.forget();
    let Some(ed) = editor(id) else { return };
    listen(&ed, id);
    ed.root.set_attribute("data-island-ready", "true").ok();
    if ed.save.borrow().dirty {
        schedule(&ed, id, AUTOSAVE_DELAY_MS);
    }
}

fn view(id: usize, ui: Ui, has_publish: bool, has_schedule: bool) -> impl IntoView {
    let conflict = move || {
        ui.theirs.get().map(|(title, body)| {
            view! {
                <div class="conflict" data-conflict role="alert">
                    <p>
                        "This post was changed elsewhere (another tab or window?) since you started. "
                        "Nothing was overwritten: your text is in the form, the other one is below."
                    </p>
                    <label>
                        "The other text: " <strong data-conflict-title>{title}</strong>
                        <textarea readonly rows="8" data-conflict-theirs prop:value=body></textarea>
                    </label>
                    <button type="button" data-keep-mine on:click=move |_| keep_mine(id)>
                        "Keep mine (save it over the other)"
                    </button>
                    " "
                    <button type="button" data-take-theirs on:click=move |_| take_theirs(id)>
                        "Use the other text"
                    </button>
                </div>
            }
        })
    };
    view! {
        <div class="island-bar">
            <button type="button" data-island-save on:click=move |_| submit(id, false)>
                "Save"
            </button>
            {has_publish
                .then(|| {
                    view! {
                        <button type="button" data-island-publish on:click=move |_| submit(id, true)>
                            "Publish"
                        </button>
                    }
                })}
            {has_schedule
                .then(|| {
                    view! {
                        <button type="button" data-island-schedule on:click=move |_| schedule_publish(id)>
                            "Schedule"
                        </button>
                    }
                })}
            <span class="words" data-words>
                {move || {
                    let n = ui.words.get();
                    if n == 1 { "1 word".to_string() } else { format!("{n} words") }
                }}
            </span>
            <span class="shortcuts">"Ctrl+S saves, Ctrl+Enter publishes"</span>
        </div>
        <p class="autosave" data-autosave-status data-state=move || ui.state.get() role="status">
            {move || ui.status.get()}
        </p>
        {conflict}
        <section class="preview" aria-label="Preview">
            <p class="meta">"Preview"</p>
            <article class="post">
                <div class="preview-title" data-preview-title>{move || ui.title.get()}</div>
                <div class="post-body" data-preview inner_html=move || ui.preview.get()></div>
            </article>
        </section>
    }
}

/// Adds a DOM listener for the page's lifetime.
fn on(target: &web_sys::EventTarget, event: &str, f: impl FnMut(web_sys::Event) + 'static) {
    let closure = Closure::<dyn FnMut(web_sys::Event)>::new(f);
    target
        .add_event_listener_with_callback(event, closure.as_ref().unchecked_ref())
        .ok();
    closure.forget();
}

fn listen(ed: &Editor, id: usize) {
    for field in [
        ed.fields.title.unchecked_ref::<web_sys::EventTarget>(),
        ed.fields.body.unchecked_ref(),
    ] {
        on(field, "input", move |_| typed(id));
        on(field, "blur", move |_| {
            if let Some(ed) = editor(id) {
                save_now(&ed, id);
            }
        });
    }
    on(ed.fields.form.unchecked_ref(), "submit", move |event| {
        let Some(ed) = editor(id) else { return };
        // The plain form is on its way: no autosave races it.
        clear_timer(&ed);
        let mut s = ed.save.borrow_mut();
        if s.in_flight {
            // Held until the autosave answers (then sent again, to the post it made).
            event.prevent_default();
            event.stop_immediate_propagation();
            let submitter = event
                .dyn_ref::<web_sys::SubmitEvent>()
                .and_then(web_sys::SubmitEvent::submitter)
                .and_then(|e| e.dyn_into::<HtmlElement>().ok());
            s.held_submit = Some(submitter);
        }
    });
    on(ed.root.unchecked_ref(), "keydown", move |event| {
        let Some(key) = event.dyn_ref::<web_sys::KeyboardEvent>() else {
            return;
        };
        if !(key.ctrl_key() || key.meta_key()) {
            return;
        }
        match key.key().as_str() {
            "s" | "S" => {
                event.prevent_default();
                submit(id, false);
            }
            "Enter" => {
                event.prevent_default();
                submit(id, true);
            }
            _ => {}
        }
    });
}

/// After a keystroke: the preview, the count, the local copy at once, the server soon.
fn typed(id: usize) {
    let Some(ed) = editor(id) else { return };
    let title = ed.fields.title.value();
    let body = ed.fields.body.value();
    ed.ui.preview.set(logic::preview_html(&body));
    ed.ui.words.set(logic::words(&body));
    ed.ui.title.set(title.clone());
    let (key, rev, server) = {
        let mut s = ed.save.borrow_mut();
        s.dirty = true;
        (s.key.clone(), s.rev, !s.url.is_empty())
    };
    let copy = Local {
        title,
        body,
        at: now(),
        rev,
    };
    let kept = storage()
        .map(|s| s.set_item(&key, &copy.to_json()).is_ok())
        .unwrap_or(false);
    if ed.save.borrow().conflict {
        return;
    }
    if ed.save.borrow().failures == 0 {
        ed.ui.state.set("local");
        ed.ui.status.set(match (kept, server) {
            (true, true) => "Saved in this browser; saving to the server…".into(),
            (true, false) => {
                "Saved in this browser. A published post changes only when you press Save.".into()
            }
            (false, _) => "Not saved yet (this browser keeps no local copy).".into(),
        });
    }
    if server {
        schedule(&ed, id, AUTOSAVE_DELAY_MS);
    }
}

fn clear_timer(ed: &Editor) {
    if let Some(timer) = ed.save.borrow_mut().timer.take() {
        if let Some(w) = web_sys::window() {
            w.clear_timeout_with_handle(timer);
        }
    }
}

fn schedule(ed: &Editor, id: usize, ms: i32) {
    clear_timer(ed);
    let Some(window) = web_sys::window() else {
        return;
    };
    let callback = Closure::once_into_js(move || {
        if let Some(ed) = editor(id) {
            ed.save.borrow_mut().timer = None;
            save_now(&ed, id);
        }
    });
    if let Ok(timer) =
        window.set_timeout_with_callback_and_timeout_and_arguments_0(callback.unchecked_ref(), ms)
    {
        ed.save.borrow_mut().timer = Some(timer);
    }
}

/// Sends the text to the server, unless nothing changed, a save is on its way (it sends
/// again when it ends), a conflict waits for the author, or the server takes no autosave.
fn save_now(ed: &Editor, id: usize) {
    clear_timer(ed);
    if !ed.root.is_connected() {
        return;
    }
    let (url, params) = {
        let mut s = ed.save.borrow_mut();
        if !s.dirty || s.in_flight || s.conflict || s.url.is_empty() {
            return;
        }
        s.in_flight = true;
        (
            s.url.clone(),
            vec![
                ("csrf".to_string(), s.csrf.clone()),
                ("title".to_string(), ed.fields.title.value()),
                ("body".to_string(), ed.fields.body.value()),
                ("rev".to_string(), s.rev.to_string()),
            ],
        )
    };
    if ed.save.borrow().failures == 0 {
        ed.ui.state.set("saving");
        ed.ui.status.set("Saving to the server…".into());
    }
    let sent = (params[1].1.clone(), params[2].1.clone());
    wasm_bindgen_futures::spawn_local(async move {
        let (code, text) = post(&url, &params).await;
        if let Some(ed) = editor(id) {
            answered(&ed, id, sent, logic::read_answer(code, &text));
        }
    });
}

fn answered(ed: &Editor, id: usize, sent: (String, String), answer: Answer) {
    ed.save.borrow_mut().in_flight = false;
    let held = ed.save.borrow_mut().held_submit.take();
    if let Some(submitter) = held {
        // The author pressed Save (or publish) meanwhile: the form goes now, to the post
        // this save may have made; it carries the whole text, so no autosave follows.
        if let Answer::Saved {
            slug, edit, rev, ..
        } = &answer
        {
            if ed.save.borrow().key.ends_with(":new") {
                moved_to(ed, slug, edit);
            }
            set_rev_field(&ed.fields.form, *rev);
        }
        ed.save.borrow_mut().dirty = false;
        let sent_again = match submitter {
            Some(b) => ed.fields.form.request_submit_with_submitter(Some(&b)),
            None => ed.fields.form.request_submit(),
        };
        if sent_again.is_ok() {
            return;
        }
    }
    let current = (ed.fields.title.value(), ed.fields.body.value());
    match answer {
        Answer::Saved {
            rev,
            slug,
            edit,
            at,
        } => {
            set_rev_field(&ed.fields.form, rev);
            let (old_key, new_key) = {
                let mut s = ed.save.borrow_mut();
                s.failures = 0;
                s.rev = rev;
                s.base = sent.clone();
                s.dirty = current != sent;
                let old = s.key.clone();
                s.key = format!("sx-editor:{}:{slug}", s.user);
                s.url = format!("/{slug}/autosave");
                (old, s.key.clone())
            };
            if old_key != new_key {
                // A new post's first save made it: the form now edits it.
                moved_to(ed, &slug, &edit);
                if let Some(s) = storage() {
                    s.remove_item(&old_key).ok();
                }
            }
            // The browser keeps a copy only of text the server does not have yet, typed on
            // the revision it names.
            if let Some(s) = storage() {
                if current == sent {
                    s.remove_item(&new_key).ok();
                } else {
                    let copy = Local {
                        title: current.0.clone(),
                        body: current.1.clone(),
                        at: now(),
                        rev,
                    };
                    s.set_item(&new_key, &copy.to_json()).ok();
                }
            }
            ed.ui.state.set("saved");
            ed.ui.status.set(format!(
                "Saved to the server at {}.",
                logic::clock(if at > 0.0 { at } else { now() })
            ));
            if ed.save.borrow().dirty {
                schedule(ed, id, AUTOSAVE_DELAY_MS);
            }
        }
        Answer::Conflict {
            rev,
            title,
            body,
            published,
        } => {
            let base = ed.save.borrow().base.clone();
            if published {
                let mut s = ed.save.borrow_mut();
                s.url.clear();
                drop(s);
                ed.ui.state.set("published");
                ed.ui.status.set(
                    "This post has been published meanwhile: your text is kept in this browser; \
                     press Save to change the published post."
                        .into(),
                );
            } else if (title.as_str(), body.as_str()) == (base.0.as_str(), base.1.as_str()) {
                // The post moved on without its text changing (a relation, a schedule):
                // not a conflict.
                ed.save.borrow_mut().rev = rev;
                set_rev_field(&ed.fields.form, rev);
                save_now(ed, id);
            } else {
                {
                    let mut s = ed.save.borrow_mut();
                    s.conflict = true;
                    s.theirs_rev = rev;
                }
                ed.ui.theirs.set(Some((title, body)));
                ed.ui.state.set("conflict");
                ed.ui.status.set(
                    "Conflict: not saved, both texts are kept. Choose which one to keep.".into(),
                );
            }
        }
        Answer::Failed(why) => {
            let failures = {
                let mut s = ed.save.borrow_mut();
                s.failures += 1;
                s.failures
            };
            let delay = logic::retry_delay_ms(failures);
            ed.ui.state.set("failed");
            ed.ui.status.set(format!(
                "Not saved: {why}. Your text is kept in this browser; trying again in {} s.",
                delay / 1000
            ));
            schedule(ed, id, i32::try_from(delay).unwrap_or(30_000));
        }
    }
}

/// The form's `rev` field (the plain Save's conflict check) follows the editor's revision.
fn set_rev_field(form: &HtmlFormElement, rev: i64) {
    if let Some(field) = form
        .query_selector("input[name=rev]")
        .ok()
        .flatten()
        .and_then(|e| e.dyn_into::<HtmlInputElement>().ok())
    {
        field.set_value(&rev.to_string());
    }
}

/// The form and the address now name the post the first autosave created.
fn moved_to(ed: &Editor, slug: &str, edit: &str) {
    ed.fields.form.set_action(edit);
    ed.root.set_attribute("data-key", slug).ok();
    ed.root
        .set_attribute("data-autosave", &format!("/{slug}/autosave"))
        .ok();
    if let Some(w) = web_sys::window() {
        let here = w.location().pathname().unwrap_or_default();
        if here == "/new" {
            if let Ok(history) = w.history() {
                history
                    .replace_state_with_url(&JsValue::NULL, "", Some(edit))
                    .ok();
            }
        }
    }
}

fn keep_mine(id: usize) {
    let Some(ed) = editor(id) else { return };
    if let Some((title, body)) = ed.ui.theirs.get_untracked() {
        let mut s = ed.save.borrow_mut();
        s.rev = s.theirs_rev;
        s.base = (title, body);
        s.conflict = false;
        s.dirty = true;
    }
    ed.ui.theirs.set(None);
    save_now(&ed, id);
}

fn take_theirs(id: usize) {
    let Some(ed) = editor(id) else { return };
    let Some((title, body)) = ed.ui.theirs.get_untracked() else {
        return;
    };
    ed.fields.title.set_value(&title);
    ed.fields.body.set_value(&body);
    ed.ui.title.set(title.clone());
    ed.ui.preview.set(logic::preview_html(&body));
    ed.ui.words.set(logic::words(&body));
    let key = {
        let mut s = ed.save.borrow_mut();
        s.rev = s.theirs_rev;
        s.base = (title, body);
        s.conflict = false;
        s.dirty = false;
        set_rev_field(&ed.fields.form, s.rev);
        s.key.clone()
    };
    if let Some(s) = storage() {
        s.remove_item(&key).ok();
    }
    ed.ui.theirs.set(None);
    ed.ui.state.set("saved");
    ed.ui
        .status
        .set("Using the other text (it is the saved one).".into());
}

/// Save (or publish) through the page's own form, as without JavaScript.
fn submit(id: usize, publish: bool) {
    let Some(ed) = editor(id) else { return };
    clear_timer(&ed);
    let button = if publish {
        ed.fields.publish.as_ref()
    } else {
        ed.fields.save.as_ref()
    };
    if publish && button.is_none() {
        return;
    }
    let done = match button {
        Some(b) => ed
            .fields
            .form
            .request_submit_with_submitter(Some(b.unchecked_ref())),
        None => ed.fields.form.request_submit(),
    };
    if done.is_err() {
        ed.ui
            .status
            .set("The form could not be sent: check its fields.".into());
    }
}

fn schedule_publish(id: usize) {
    let Some(ed) = editor(id) else { return };
    let Some(at) = ed.fields.publish_at.as_ref() else {
        return;
    };
    if at.value().trim().is_empty() {
        at.focus().ok();
        ed.ui
            .status
            .set("Choose when to publish in “Publish at (UTC)”, then press Schedule again.".into());
        return;
    }
    submit(id, false);
}

/// POSTs an urlencoded form; the status (0 when there was no answer) and the body.
async fn post(url: &str, params: &[(String, String)]) -> (u16, String) {
    let Some(window) = web_sys::window() else {
        return (0, String::new());
    };
    let Ok(search) = web_sys::UrlSearchParams::new() else {
        return (0, String::new());
    };
    for (k, v) in params {
        search.append(k, v);
    }
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&JsValue::from(search.to_string()));
    if let Ok(headers) = web_sys::Headers::new() {
        headers
            .set("content-type", "application/x-www-form-urlencoded")
            .ok();
        headers.set("accept", "application/json").ok();
        init.set_headers(&headers);
    }
    let Ok(answer) =
        wasm_bindgen_futures::JsFuture::from(window.fetch_with_str_and_init(url, &init)).await
    else {
        return (0, String::new());
    };
    let Ok(response) = answer.dyn_into::<web_sys::Response>() else {
        return (0, String::new());
    };
    let status = response.status();
    let text = match response.text() {
        Ok(promise) => wasm_bindgen_futures::JsFuture::from(promise)
            .await
            .ok()
            .and_then(|t| t.as_string())
            .unwrap_or_default(),
        Err(_) => String::new(),
    };
    (status, text)
}
