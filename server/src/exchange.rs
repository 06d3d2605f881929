//! What passes between the HTTP layer, the workers and the renderer: a request as plain
//! (`Send`) data, who is asking, what a handler produced, the rendered reply, and which form
//! of a page the client wants.

use std::sync::Arc;

use sx_kernel::Value;

use crate::apps::App;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

/// What axum hands a worker: plain data, `Send`.
pub struct Request {
    /// The request id (`x-request-id`), for log lines written on the worker.
    pub id: String,
    /// The version of the apps that serves it (a worker loads its image when it differs).
    pub app: Arc<App>,
    /// The client's address (the socket's, or a trusted proxy's `X-Forwarded-For`).
    pub client: String,
    /// The site's base URL (`SX_PUBLIC_URL`, else the listener's `http://HOST:PORT`).
    pub base_url: String,
    pub route: usize,
    pub method: String,
    pub path: String,
    pub params: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    /// Fields of an `application/x-www-form-urlencoded` body.
    pub form: Vec<(String, String)>,
    /// The body as text (lossy UTF-8).
    pub body: String,
    /// Who is asking (resolved by the host before the handler runs).
    pub user: Option<Principal>,
}

impl Request {
    /// The request SX code runs under when no client asked: a start function, a flow's node,
    /// a received activity's behaviors. Effects see no user, no path, no form.
    pub fn internal(id: String, app: Arc<App>, base_url: String) -> Request {
        Request {
            id,
            app,
            client: String::new(),
            base_url,
            route: usize::MAX,
            method: String::new(),
            path: String::new(),
            params: Vec::new(),
            query: Vec::new(),
            headers: Vec::new(),
            form: Vec::new(),
            body: String::new(),
            user: None,
        }
    }
}

/// An authenticated requester, as handlers see it (`:user` in the request dict).
pub struct Principal {
    pub name: String,
    /// `session` or `bearer`.
    pub via: &'static str,
    pub grants: Vec<String>,
    /// The session's CSRF token (sessions only).
    pub csrf: Option<String>,
    /// The session id (sessions only), for logging out.
    pub session: Option<String>,
}

/// What a handler produced.
pub enum Outcome {
    /// A page: its title, the `#content` tree, a status, and extra headers.
    Page {
        title: String,
        content: Value,
        status: u16,
        headers: Vec<(String, String)>,
    },
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// `host/require-user` refused: 401 (no identity) or 403 (no grant).
    Refused {
        status: u16,
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
