//! Turning a handler's outcome into bytes: a full page (the SPA shell around `#content`), or
//! for `SX-Request: true` only the `#content` fragment — SX wire text when the request
//! accepts `text/sx`, else HTML. Pages that can answer either way say `Vary: SX-Request,
//! Accept`, so no cache (and no Back button) ever shows a fragment as a page. The title
//! travels with a fragment in `SX-Title` (percent-encoded UTF-8).

use std::collections::HashMap;
use std::rc::Rc;

use sx_kernel::engine::unknown_effect;
use sx_kernel::{Engine, Value};

use crate::exchange::{Outcome, Principal, Reply, Request, Want};
use crate::services::Services;

fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b" -_.~!*'(),:;".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn html(status: u16, body: String) -> Reply {
    Reply {
        status,
        headers: vec![("content-type".into(), "text/html; charset=utf-8".into())],
        body: body.into_bytes(),
    }
}

/// Dev mode only: the app does not compile, so every page shows why (the message names
/// `file:line:col`). Production never shows this (it keeps serving the last good version).
pub fn compile_error_page(error: &str) -> Reply {
    message_page(
        500,
        "The app does not compile",
        "The app does not compile",
        &format!(
            "<pre class=\"sx-error\">{}</pre><p>Fix the file and save: this page reloads.</p>\
             <script src=\"/__sx/dev.js\"></script>",
            html_escape(error)
        ),
    )
}

/// A page for when the app itself could not answer: nothing internal is shown.
pub fn error_page(status: u16, message: &str) -> Reply {
    message_page(
        status,
        &status.to_string(),
        message,
        "<p><a href=\"/\">Back to the start</a></p>",
    )
}

fn render_html(tree: &Value) -> Result<String, String> {
    sx_kernel::html::render(tree).map_err(|e| sx_kernel::error::describe(&e))
}

/// The document title of a page: the same for a full load and a fragment (`SX-Title`).
/// The site's name is the apps' (`defsite`).
fn page_title(title: &str, site: &str) -> String {
    if title.is_empty() {
        site.to_string()
    } else {
        format!("{title} · {site}")
    }
}

/// Shells kept per image; past this the cache starts over (titles are per page).
const SHELLS_KEPT: usize = 512;

/// The shell around full pages, rendered once per (title, user, CSRF token) and split where
/// the content goes: a later page with the same shell renders only its content. Sound because
/// the shell cannot perform (its call answers every effect with `unknown-effect`) and one
/// image serves one version of the apps (a new version gets a new image and cache). Used
/// only when the apps vouch for the shell in use (`host/shell-splices` is that very
/// component: it places its children once, as given, and reads no state that changes);
/// otherwise, or when the mark does not come out exactly once, every page renders its whole
/// shell.
pub struct ShellCache {
    shells: HashMap<ShellKey, Rc<SplitShell>>,
    /// Stands for `#content`'s children when a shell is rendered for the cache: random per
    /// image, so no title or name can contain it.
    mark: String,
}

impl Default for ShellCache {
    fn default() -> Self {
        ShellCache {
            shells: HashMap::new(),
            mark: format!("\u{1}sx-content-{}\u{1}", crate::auth::random_hex(16)),
        }
    }
}

/// The page title, and the signed-in user's name and CSRF token.
type ShellKey = (String, Option<(String, String)>);
/// The shell's HTML before and after the content.
type SplitShell = (String, String);

fn shell_args(title: &str, request: &Request, services: &Services, content: Value) -> Vec<Value> {
    let site = &request.app.site_name;
    let mut args = vec![
        Value::kw("title"),
        Value::str(title),
        Value::kw("site"),
        Value::str(site),
    ];
    // The shell shows a signed-in browser who it is and a Log out button (a form that
    // carries the session's CSRF token).
    if let Some((name, csrf)) = signed_in(request) {
        args.extend([
            Value::kw("user"),
            Value::str(name),
            Value::kw("csrf"),
            Value::str(csrf),
        ]);
    }
    if let Some(script) = &services.client_script {
        args.extend([Value::kw("client"), Value::str(script)]);
    }
    if services.dev {
        args.extend([Value::kw("dev"), Value::Bool(true)]);
    }
    args.push(content);
    args
}

fn signed_in(request: &Request) -> Option<(&str, &str)> {
    match &request.user {
        Some(Principal {
            name,
            csrf: Some(csrf),
            ..
        }) => Some((name, csrf)),
        _ => None,
    }
}

fn render_shell(engine: &mut Engine, args: Vec<Value>) -> Result<String, String> {
    let shell = engine
        .lookup("~host/shell")
        .ok_or_else(|| "the apps define no ~host/shell".to_string())?;
    let tree = engine
        .call_with(&shell, args, &mut |req| Err(unknown_effect(req)))
        .map_err(|e| sx_kernel::error::describe(&e))?;
    render_html(&tree)
}

fn full_page(
    engine: &mut Engine,
    shells: &mut ShellCache,
    title: &str,
    content: Value,
    request: &Request,
    services: &Services,
) -> Result<String, String> {
    let title = page_title(title, &request.app.site_name);
    let vouched = engine.lookup("host/shell-splices");
    let splices = match (vouched, engine.lookup("~host/shell")) {
        (Some(Value::Component(vouched)), Some(Value::Component(shell))) => {
            Rc::ptr_eq(&vouched, &shell)
        }
        _ => false,
    };
    if !splices {
        return render_shell(engine, shell_args(&title, request, services, content));
    }
    let key = (
        title,
        signed_in(request).map(|(n, c)| (n.to_string(), c.to_string())),
    );
    let split = match shells.shells.get(&key) {
        Some(split) => Some(split.clone()),
        None => {
            let mark = Value::Raw(Rc::from(shells.mark.as_str()));
            let whole = render_shell(engine, shell_args(&key.0, request, services, mark))?;
            let split = match whole.split_once(&shells.mark) {
                Some((before, after)) if !after.contains(&shells.mark) => {
                    Some(Rc::new((before.to_string(), after.to_string())))
                }
                _ => None,
            };
            if let Some(split) = &split {
                if shells.shells.len() >= SHELLS_KEPT {
                    shells.shells.clear();
                }
                shells.shells.insert(key.clone(), split.clone());
            }
            split
        }
    };
    match split {
        Some(split) => {
            let (before, after) = &*split;
            let mut page = String::with_capacity(before.len() + after.len() + 4096);
            page.push_str(before);
            sx_kernel::html::render_into(&mut page, &content)
                .map_err(|e| sx_kernel::error::describe(&e))?;
            page.push_str(after);
            Ok(page)
        }
        None => render_shell(engine, shell_args(&key.0, request, services, content)),
    }
}

/// Whether `target` is a path on this site: it starts with a single `/` and holds no
/// backslash, control character or space. Browsers drop tabs and newlines from URLs and read
/// `\` as `/`, so `/\t/evil.example` would lead to another site. Every `Location` an app
/// sends is checked with this (`handler::outcome_of`); `host/safe-next` is its SX twin.
pub fn is_local_path(target: &str) -> bool {
    target.starts_with('/')
        && !target.starts_with("//")
        && !target
            .chars()
            .any(|c| c == '\\' || c.is_control() || c.is_whitespace())
}

/// Where to send a browser to log in, coming back to `path_and_query` after.
pub fn login_url(path_and_query: &str) -> String {
    format!("/login?next={}", percent_encode(path_and_query))
}

fn refusal(status: u16, request: &Request) -> Reply {
    let back = match request.query.is_empty() {
        true => request.path.clone(),
        false => format!(
            "{}?{}",
            request.path,
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&request.query)
                .finish()
        ),
    };
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if status == 401 {
        // A browser asking for a page is sent to log in and back; anything else is told.
        let browser_get = request.method == "GET"
            && header("accept").is_some_and(|a| a.contains("text/html"))
            && header("authorization").is_none();
        if browser_get {
            return Reply {
                status: 303,
                headers: vec![("location".into(), login_url(&back))],
                body: Vec::new(),
            };
        }
        let mut reply = message_page(
            401,
            "Please log in",
            "Please log in",
            &format!(
                "<p>This needs you to be logged in. <a href=\"{}\">Log in</a></p>",
                html_escape(&login_url(&back))
            ),
        );
        reply
            .headers
            .push(("www-authenticate".into(), "Bearer realm=\"sx\"".into()));
        return reply;
    }
    message_page(
        403,
        "Not allowed",
        "Not allowed",
        "<p>Your account may not do this. <a href=\"/\">Back to the start</a></p>",
    )
}

fn html_escape(text: &str) -> String {
    let mut out = String::new();
    sx_kernel::html::escape_into(&mut out, text);
    out
}

/// A plain page for the host's own answers: `title` and `heading` are text, `more` is
/// trusted HTML.
fn message_page(status: u16, title: &str, heading: &str, more: &str) -> Reply {
    html(
        status,
        format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
             <link rel=\"stylesheet\" href=\"/static/style.css\"></head><body><main id=\"content\">\
             <h1>{heading}</h1>{more}</main></body></html>",
            title = html_escape(title),
            heading = html_escape(heading)
        ),
    )
}

/// A refusal from the host itself (a form POST without its CSRF token).
pub fn forbidden(reason: &str) -> Reply {
    message_page(
        403,
        "Not allowed",
        "Not allowed",
        &format!(
            "<p>{} <a href=\"/\">Back to the start</a></p>",
            html_escape(reason)
        ),
    )
}

pub fn reply(
    engine: &mut Engine,
    shells: &mut ShellCache,
    outcome: Outcome,
    want: Want,
    request: &Request,
    services: &Services,
) -> Reply {
    match outcome {
        Outcome::Response {
            status,
            headers,
            body,
        } => Reply {
            status,
            headers,
            body,
        },
        Outcome::Failed { status, log } => {
            tracing::error!("{log}");
            error_page(
                status,
                match status {
                    503 => "This page could not be made just now (it took too long, or the site's database is unavailable). Try again in a moment.",
                    507 => "The site's store is full, so nothing was saved. Its administrator can give it more room (SX_STORE_MAX_MB).",
                    _ => "Something went wrong.",
                },
            )
        }
        Outcome::Refused { status } => refusal(status, request),
        Outcome::Page {
            title,
            content,
            status,
            headers: extra,
        } => {
            let rendered = match want {
                Want::Page => full_page(engine, shells, &title, content, request, services)
                    .map(|b| ("text/html; charset=utf-8", b)),
                Want::FragmentHtml => {
                    render_html(&content).map(|b| ("text/html; charset=utf-8", b))
                }
                Want::FragmentSx => {
                    Ok(("text/sx; charset=utf-8", sx_kernel::printer::repr(&content)))
                }
            };
            match rendered {
                Ok((content_type, body)) => {
                    let mut headers = vec![
                        ("content-type".to_string(), content_type.to_string()),
                        ("vary".to_string(), "SX-Request, Accept".to_string()),
                    ];
                    if want != Want::Page {
                        headers.push((
                            "sx-title".to_string(),
                            percent_encode(&page_title(&title, &request.app.site_name)),
                        ));
                        // Who the page was made for: when it differs from the page the
                        // browser shows, the engine loads the whole page (the header shows
                        // the login state and is outside #content).
                        let user = request.user.as_ref().map_or("", |u| u.name.as_str());
                        headers.push(("sx-user".to_string(), percent_encode(user)));
                    }
                    if request.user.is_some() {
                        // Made for one person: no shared cache may keep it.
                        headers.push(("cache-control".into(), "private, no-cache".into()));
                    }
                    headers.extend(extra);
                    Reply {
                        status,
                        headers,
                        body: body.into_bytes(),
                    }
                }
                Err(log) => {
                    tracing::error!("rendering failed: {log}");
                    error_page(500, "Something went wrong.")
                }
            }
        }
    }
}
