//! A real server for tests: `serve_on` over 127.0.0.1 on an ephemeral port, a temporary
//! LMDB directory, and a tiny HTTP/1.1 client on plain sockets.
#![allow(dead_code)] // each test file uses its own part

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};

use sx_server::Config;

pub struct Server {
    pub addr: SocketAddr,
    pub data: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
    _owned: Option<tempfile::TempDir>,
}

/// The sources the build compiles (`sx/host/*.sx`, then `sx/blog/*.sx`, each in file-name
/// order) as (file name, text).
pub fn app_sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in ["sx/host", "sx/blog"] {
        let mut paths: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "sx"))
            .collect();
        paths.sort();
        for path in paths {
            files.push((
                path.display().to_string(),
                std::fs::read_to_string(&path).unwrap(),
            ));
        }
    }
    files
}

/// The apps as the build compiles them (`sx/host`, `sx/blog`), plus routes for tests: ones
/// that fail on purpose, outgoing HTTP, sleeping, several cookies at once, a redirect to
/// wherever the query says, and `{:cache true}` routes that read the posts, the clock, or
/// set a cookie.
pub fn bundle() -> Vec<u8> {
    let mut files = app_sources();
    files.push((
        "testing.sx".to_string(),
        r#"(defroute "GET" "/boom" (fn (req) (error "secret internals" 42)))
           (defroute "GET" "/spin" (fn (req) (let loop ((i 0)) (loop (+ i 1)))))
           (defroute "GET" "/fetch" (fn (req)
             (let ((r (perform {:op "http/request"
                                :url (str "http://127.0.0.1:" (get (get req :query) "port") "/health")})))
               {:status (get r :status)
                :headers {"content-type" (get (get r :headers) "content-type")}
                :body (get r :body)})))
           (defroute "GET" "/unreachable" (fn (req)
             (guard (e (else {:status 502 :body (str (error-type e) ": " (error-message e))}))
               (perform {:op "http/request" :url "http://127.0.0.1:1/"}))))
           (defroute "GET" "/nap" (fn (req) (perform {:op "sleep" :ms 300}) "rested"))
           (defroute "GET" "/bounce" (fn (req)
             {:status 302 :headers {"location" (get (get req :query) "to" "")}}))
           (defroute "GET" "/cookies" (fn (req)
             {:status 200 :body "two cookies"
              :set-cookies (list "a=1; Path=/" "b=2; Path=/; HttpOnly")}))
           (defroute "GET" "/cached/count" {:cache true} (fn (req)
             (str (len (perform {:op "store/posts"})) " posts, asked "
                  (get (get req :query) "n" "once"))))
           (defroute "GET" "/cached/clock" {:cache true} (fn (req)
             (str "now " (perform {:op "now"}))))
           (defroute "GET" "/cached/cookie" {:cache true} (fn (req)
             {:status 200 :body "a cookie" :set-cookies (list "c=1; Path=/")}))"#
            .to_string(),
    ));
    sx_kernel::sxbc::compile_bundle(&files).unwrap()
}

/// The admin every `admin_config` server has.
pub const ADMIN: &str = "ann";
pub const PASSWORD: &str = "correct horse battery";

/// `config` with the admin account `ADMIN` / `PASSWORD`.
pub fn admin_config(data: &Path, statics: &Path) -> Config {
    Config {
        admin_user: Some(ADMIN.into()),
        admin_password: Some(PASSWORD.into()),
        ..config(data, statics)
    }
}

/// An urlencoded form body.
pub fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A configuration for a test server: two workers, the given store and static directories.
pub fn config(data: &Path, static_dir: &Path) -> Config {
    Config {
        persist_dir: data.to_path_buf(),
        static_dir: static_dir.to_path_buf(),
        workers: 2,
        ..Config::default()
    }
}

impl Server {
    /// A server on a fresh temporary store.
    pub fn start(static_dir: &Path) -> Server {
        Server::with_workers(static_dir, 2)
    }

    pub fn with_workers(static_dir: &Path, workers: usize) -> Server {
        let data = tempfile::tempdir().unwrap();
        let mut server = Server::launch(Config {
            workers,
            ..config(data.path(), static_dir)
        });
        server._owned = Some(data);
        server
    }

    /// A server with exactly this configuration (the caller owns the store directory).
    pub fn launch(config: Config) -> Server {
        Server::launch_bundle(config, bundle())
    }

    /// A server running the apps in `bundle` (on a fresh temporary store).
    pub fn with_bundle(static_dir: &Path, bundle: Vec<u8>) -> Server {
        let data = tempfile::tempdir().unwrap();
        let mut server = Server::launch_bundle(config(data.path(), static_dir), bundle);
        server._owned = Some(data);
        server
    }

    /// A server with exactly this configuration and these apps.
    pub fn launch_bundle(config: Config, bundle: Vec<u8>) -> Server {
        let data = config.persist_dir.clone();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (up, is_up) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                let _ = up.send(());
                let source = sx_server::apps::Source::Bundle(std::sync::Arc::new(bundle));
                sx_server::serve_on(listener, config, source, async {
                    let _ = stopped.await;
                })
                .await
            })
        });
        is_up.recv().unwrap();
        Server {
            addr,
            data,
            stop: Some(stop),
            thread: Some(thread),
            _owned: None,
        }
    }

    /// Stops the server (in-flight requests finish, the store closes) and reports how it
    /// ended.
    pub fn stop(mut self) -> Result<(), String> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.thread.take().unwrap().join().unwrap()
    }

    /// Sends a raw request; returns status, headers (lower-cased names) and body bytes.
    pub fn request(&self, raw: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream.write_all(raw.as_bytes()).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete response");
        let head = String::from_utf8_lossy(&response[..split]).into_owned();
        let body = response[split + 4..].to_vec();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        (status, headers, body)
    }

    pub fn get(&self, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
        self.send("GET", path, &[], "")
    }

    /// A request with extra headers and a body (sent as a form when not empty).
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let mut raw =
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        for (name, value) in headers {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            if !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            {
                raw.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
            }
            raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        raw.push_str("\r\n");
        raw.push_str(body);
        self.request(&raw)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The `Cookie` header value for the session a login response set.
pub fn session_cookie(headers: &[(String, String)]) -> String {
    header(headers, "set-cookie")
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// The CSRF token in a page's forms.
pub fn csrf_of(body: &[u8]) -> String {
    let page = text(body);
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field");
    page[at + 19..].split('"').next().unwrap().to_string()
}

/// A user with these grants and an API token for them (straight into the store, as `sx`
/// does; before the server opens it); returns the token.
pub fn user_with_token(data: &Path, name: &str, grants: &[&str]) -> String {
    let store = sx_server::store::Store::open(data).unwrap();
    store
        .put_user(&sx_server::store::User {
            name: name.into(),
            password_hash: sx_server::auth::hash_password("unused password").unwrap(),
            grants: grants.iter().map(|g| g.to_string()).collect(),
        })
        .unwrap();
    let (token, hash) = sx_server::auth::new_token();
    assert!(store.add_token(&hash, name).unwrap());
    token
}

pub fn static_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("style.css"), "body { color: black; }\n").unwrap();
    std::fs::write(dir.path().join("app.wasm"), [0u8, 97, 115, 109, 1, 0, 0, 0]).unwrap();
    dir
}

pub fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}
