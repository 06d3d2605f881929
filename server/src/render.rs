//! Turning a handler's outcome into bytes: a full page (the SPA shell around `#content`), or
//! for `SX-Request: true` only the `#content` fragment — SX wire text when the request
//! accepts `text/sx`, else HTML. Pages that can answer either way say `Vary: SX-Request,
//! Accept`, so no cache (and no Back button) ever shows a fragment as a page. The title
//! travels with a fragment in `SX-Title` (percent-encoded UTF-8).

use sx_kernel::engine::unknown_effect;
use sx_kernel::{Engine, Value};

use crate::handler::{Outcome, Reply};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    Page,
    FragmentHtml,
    FragmentSx,
}

impl Want {
    pub fn from_headers(sx_request: Option<&str>, accept: Option<&str>) -> Want {
        if sx_request.is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            if accept.is_some_and(|a| a.contains("text/sx")) {
                Want::FragmentSx
            } else {
                Want::FragmentHtml
            }
        } else {
            Want::Page
        }
    }
}

const SITE: &str = "SX blog";

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

/// A page for when the app itself could not answer: nothing internal is shown.
pub fn error_page(status: u16, message: &str) -> Reply {
    let mut escaped = String::new();
    sx_kernel::html::escape_into(&mut escaped, message);
    html(
        status,
        format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{status}</title>\
             <link rel=\"stylesheet\" href=\"/static/style.css\"></head><body><main id=\"content\">\
             <h1>{escaped}</h1><p><a href=\"/\">Back to the start</a></p></main></body></html>"
        ),
    )
}

fn render_html(tree: &Value) -> Result<String, String> {
    sx_kernel::html::render(tree).map_err(|e| sx_kernel::error::describe(&e))
}

fn full_page(engine: &mut Engine, title: &str, content: Value) -> Result<String, String> {
    let shell = engine
        .lookup("~host/shell")
        .ok_or_else(|| "the apps define no ~host/shell".to_string())?;
    let title = if title.is_empty() {
        SITE.to_string()
    } else {
        format!("{title} · {SITE}")
    };
    let args = vec![
        Value::kw("title"),
        Value::str(&title),
        Value::kw("site"),
        Value::str(SITE),
        content,
    ];
    let tree = engine
        .call_with(&shell, args, &mut |req| Err(unknown_effect(req)))
        .map_err(|e| sx_kernel::error::describe(&e))?;
    render_html(&tree)
}

pub fn reply(engine: &mut Engine, outcome: Outcome, want: Want) -> Reply {
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
                if status == 503 {
                    "This page took too long to make."
                } else {
                    "Something went wrong."
                },
            )
        }
        Outcome::Page {
            title,
            content,
            status,
        } => {
            let rendered = match want {
                Want::Page => {
                    full_page(engine, &title, content).map(|b| ("text/html; charset=utf-8", b))
                }
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
                        headers.push(("sx-title".to_string(), percent_encode(&title)));
                    }
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
