//! Which SX apps a server runs. An app comes from a precompiled bundle (the apps embedded in
//! the binary, chosen by `SX_DOMAIN`) or from a folder (`sx serve --app DIR`): the host
//! library's sources plus the folder's `.sx` files in file-name order, subfolders depth
//! first, compiled at start and again when the folder changes (`--dev`, or SIGHUP).
//!
//! Each compiled version is an [`App`]: the bundle, and the facts the host needs without a
//! kernel — its routes (matched here, so a recompile may change them), the site's name, the
//! reserved top-level paths. Workers load their own image of the current version when it
//! changes; a request in flight finishes on the image it started on. When a recompile fails,
//! dev mode answers every page with the error (`file:line:col`); production keeps serving
//! the last version that compiled and logs the error.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use sx_kernel::value::kw_get;
use sx_kernel::{Backend, Engine, Value};

/// Where the apps come from.
#[derive(Clone)]
pub enum Source {
    /// A compiled bundle of the host and an app (an embedded app, or a test's).
    Bundle(Arc<Vec<u8>>),
    /// The host library's sources, then an app folder's files.
    Folder {
        host: Vec<(String, String)>,
        dir: PathBuf,
    },
}

/// The apps `sx serve` runs: the folder `--app` / `SX_APP_DIR` names, else the embedded app
/// `SX_DOMAIN` names (`embedded`: name → bundle; `host`: the host library's sources).
pub fn select(
    config: &crate::Config,
    host: &[(&str, &str)],
    embedded: &[(&str, &[u8])],
) -> Result<Source, String> {
    if let Some(dir) = &config.app_dir {
        if !dir.is_dir() {
            return Err(format!("the app folder {} does not exist", dir.display()));
        }
        return Ok(Source::Folder {
            host: host
                .iter()
                .map(|(name, text)| (name.to_string(), text.to_string()))
                .collect(),
            dir: dir.clone(),
        });
    }
    let names: Vec<&str> = embedded.iter().map(|(name, _)| *name).collect();
    match embedded.iter().find(|(name, _)| *name == config.domain) {
        Some((_, bundle)) => Ok(Source::Bundle(Arc::new(bundle.to_vec()))),
        None => Err(format!(
            "SX_DOMAIN={:?} names no app. The apps there are: {} (or serve your own with \
             --app DIR)",
            config.domain,
            names.join(", ")
        )),
    }
}

/// A route an app declared with `defroute`.
#[derive(Clone, Debug)]
pub struct Route {
    pub method: String,
    segments: Vec<Segment>,
    /// Whether a request made with a session cookie must carry its CSRF token (route option
    /// `{:csrf false}` turns it off, for endpoints that authenticate otherwise).
    pub csrf: bool,
    /// Whether its answers to visitors who are not signed in may be kept and served again
    /// until the posts change (`{:cache true}`, GET routes only; see `pages.rs`).
    pub cache: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum Segment {
    Literal(String),
    Param(String),
}

impl Route {
    fn parse(method: &str, path: &str, options: Option<&Value>) -> Result<Route, String> {
        let option = |name: &str| match options {
            Some(Value::Dict(d)) => kw_get(d, name).cloned(),
            _ => None,
        };
        let csrf = !matches!(option("csrf"), Some(Value::Bool(false)));
        let cache = match option("cache") {
            None | Some(Value::Bool(false)) => false,
            Some(Value::Bool(true)) if method.eq_ignore_ascii_case("GET") => true,
            Some(Value::Bool(true)) => {
                return Err(format!(
                    "the route {method} {path}: only a GET route can be {{:cache true}}"
                ))
            }
            Some(other) => {
                return Err(format!(
                    "the route {method} {path}: :cache is true or false, not {}",
                    sx_kernel::printer::repr(&other)
                ))
            }
        };
        if !path.starts_with('/') {
            return Err(format!("the route path {path:?} must start with /"));
        }
        let segments = path[1..]
            .split('/')
            .map(|s| match s.strip_prefix(':') {
                Some("") => Err(format!("the route path {path:?} has a `:` without a name")),
                Some(name) => Ok(Segment::Param(name.to_string())),
                None => Ok(Segment::Literal(s.to_string())),
            })
            .collect::<Result<_, _>>()?;
        Ok(Route {
            method: method.to_uppercase(),
            segments,
            csrf,
            cache,
        })
    }

    /// Whether a path split at its `/`s (after the leading one) has this route's shape: as
    /// many segments, the same literals, no empty parameter. Nothing is decoded or copied.
    fn fits(&self, parts: &[&str]) -> bool {
        parts.len() == self.segments.len()
            && self
                .segments
                .iter()
                .zip(parts)
                .all(|(segment, part)| match segment {
                    Segment::Literal(text) => text == part,
                    Segment::Param(_) => !part.is_empty(),
                })
    }

    /// The parameters of a path that `fits`, decoded; `None` when one is not (a malformed
    /// escape or not UTF-8: then the route does not match).
    fn params(&self, parts: &[&str]) -> Option<Vec<(String, String)>> {
        let mut params = Vec::new();
        for (segment, part) in self.segments.iter().zip(parts) {
            if let Segment::Param(name) = segment {
                params.push((name.clone(), percent_decode(part)?));
            }
        }
        Some(params)
    }

    /// The path's parameters when `path` matches this route's pattern.
    #[cfg(test)]
    fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let parts: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        if !self.fits(&parts) {
            return None;
        }
        self.params(&parts)
    }

    /// Which segments are literal, in order: compared to rank routes matching one path.
    fn literals(&self) -> impl Iterator<Item = bool> + '_ {
        self.segments
            .iter()
            .map(|s| matches!(s, Segment::Literal(_)))
    }

    /// The literal first segment (`/new` → `new`), which no content slug may take.
    fn top_level(&self) -> Option<&str> {
        match self.segments.first() {
            Some(Segment::Literal(text)) if !text.is_empty() => Some(text),
            _ => None,
        }
    }
}

/// `%XX` escapes decoded; `None` for a malformed escape or text that is not UTF-8 (such a
/// path matches no route and names no static file).
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What a request's method and path lead to.
pub enum Found {
    /// The route's index (its handler's, in declaration order) and the path's parameters.
    Route {
        index: usize,
        params: Vec<(String, String)>,
        csrf: bool,
        cache: bool,
    },
    /// The path exists, with other methods.
    OtherMethods(Vec<String>),
    NotFound,
}

/// One compiled version of the apps: plain data that every worker shares.
pub struct App {
    /// Counts versions; a worker whose image is of another generation loads this one.
    pub generation: u64,
    pub bundle: Arc<Vec<u8>>,
    pub routes: Vec<Route>,
    /// `(defsite {:name ...})`; "SX" when the apps declare none.
    pub site_name: String,
    /// Paths of the top level the apps and the host use: never a content slug.
    pub reserved: Vec<String>,
    /// The flows the apps declare with `defflow`, checked and versioned.
    pub flows: Vec<FlowDef>,
}

/// A flow as `defflow` declared it: its name, version (a hash of its text) and nodes as SX
/// text (plain data, so an `App` can cross threads; `sx_kernel::flow::Flow::read` reads it).
#[derive(Clone, Debug)]
pub struct FlowDef {
    pub name: String,
    pub version: String,
    pub nodes: String,
}

/// Top-level paths of the host itself (not declared with `defroute`).
const HOST_PATHS: &[&str] = &["static", "health", "__sx"];

impl App {
    /// Loads `bundle` in a probe engine and reads its routes and site facts. A bundle whose
    /// forms fail to run is an error here, before any worker loads it.
    fn probe(generation: u64, bundle: Vec<u8>) -> Result<(App, Engine), String> {
        let mut engine = Engine::with_backend(Backend::Vm);
        engine.load_bundle(&bundle)?;
        let mut routes = Vec::new();
        for Declared {
            method,
            path,
            options,
            ..
        } in declared(&engine)
        {
            routes.push(Route::parse(&method, &path, options.as_ref())?);
        }
        let site_name = site_field(&engine, "name")
            .map(|v| sx_kernel::printer::display(&v))
            .unwrap_or_else(|| "SX".into());
        let mut reserved: Vec<String> = HOST_PATHS.iter().map(|p| p.to_string()).collect();
        for route in &routes {
            if let Some(top) = route.top_level() {
                if !reserved.iter().any(|r| r == top) {
                    reserved.push(top.to_string());
                }
            }
        }
        let flows = declared_flows(&engine)?;
        let app = App {
            generation,
            bundle: Arc::new(bundle),
            routes,
            site_name,
            reserved,
            flows,
        };
        Ok((app, engine))
    }

    pub fn find(&self, method: &str, path: &str) -> Found {
        // HEAD is answered by the GET route (the body is dropped by the HTTP layer).
        let method = if method == "HEAD" { "GET" } else { method };
        let mut others = Vec::new();
        let mut best: Option<(usize, Vec<(String, String)>)> = None;
        // Split once; each route is compared without decoding or copying, and only a route
        // that would win has its parameters decoded.
        let parts: Vec<&str> = match path.strip_prefix('/') {
            Some(rest) => rest.split('/').collect(),
            None => Vec::new(),
        };
        for (index, route) in self.routes.iter().enumerate() {
            if parts.is_empty() || !route.fits(&parts) {
                continue;
            }
            if route.method != method {
                if route.params(&parts).is_some() {
                    others.push(route.method.clone());
                }
                continue;
            }
            // A literal segment wins over a `:name` in the same place (`/tags/:tag` over
            // `/:slug/edit` for `/tags/edit`); among equals, the first declared.
            let better = best
                .as_ref()
                .is_none_or(|(b, _)| route.literals().gt(self.routes[*b].literals()));
            if better {
                if let Some(params) = route.params(&parts) {
                    best = Some((index, params));
                }
            }
        }
        match best {
            Some((index, params)) => Found::Route {
                index,
                params,
                csrf: self.routes[index].csrf,
                cache: self.routes[index].cache,
            },
            None if others.is_empty() => Found::NotFound,
            None => Found::OtherMethods(others),
        }
    }
}

/// A field of `*site*` (`defsite`).
pub fn site_field(engine: &Engine, name: &str) -> Option<Value> {
    match engine.lookup("*site*") {
        Some(Value::Dict(d)) => kw_get(&d, name).cloned(),
        _ => None,
    }
}

/// `*flows*` (`defflow`: a list of `(name nodes)`), each read by the kernel so a flow that
/// cannot run fails the compile with its reason. A later declaration of a name wins.
fn declared_flows(engine: &Engine) -> Result<Vec<FlowDef>, String> {
    let Some(Value::List(flows)) = engine.lookup("*flows*") else {
        return Ok(Vec::new());
    };
    let mut out: Vec<FlowDef> = Vec::new();
    // `*flows*` is built by consing: the first declared is last.
    let mut entries: Vec<Value> = flows.iter().cloned().collect();
    entries.reverse();
    for entry in entries {
        let Value::List(parts) = &entry else { continue };
        let name = match parts.nth(0) {
            Some(Value::Symbol(s)) => s.name().to_string(),
            Some(Value::Str(s)) => s.to_string(),
            _ => continue,
        };
        let nodes = parts.nth(1).cloned().unwrap_or(Value::Nil);
        let flow = sx_kernel::flow::Flow::read(&name, &nodes)
            .map_err(|e| sx_kernel::error::describe(&e))?;
        out.retain(|f| f.name != name);
        out.push(FlowDef {
            name,
            version: flow.version,
            nodes: sx_kernel::printer::repr(&nodes),
        });
    }
    Ok(out)
}

/// A route as `defroute` declared it.
pub struct Declared {
    pub method: String,
    pub path: String,
    pub handler: Value,
    pub options: Option<Value>,
}

/// `*routes*` in declaration order. The one reader of it: a route's index here is both its
/// index in `App::routes` and its handler's in a worker's image, so both must come from the
/// same list. Entries that are not `(method path handler [options])` are skipped.
pub fn declared(engine: &Engine) -> Vec<Declared> {
    let Some(Value::List(routes)) = engine.lookup("*routes*") else {
        return Vec::new();
    };
    let mut out: Vec<Declared> = routes
        .iter()
        .filter_map(|r| match r {
            Value::List(parts) => match (parts.nth(0), parts.nth(1), parts.nth(2)) {
                (Some(Value::Str(m)), Some(Value::Str(p)), Some(handler)) => Some(Declared {
                    method: m.to_string(),
                    path: p.to_string(),
                    handler: handler.clone(),
                    options: parts.nth(3).cloned(),
                }),
                _ => None,
            },
            _ => None,
        })
        .collect();
    out.reverse();
    out
}

enum Current {
    Ready(Arc<App>),
    /// The last recompile failed: the error, and the last version that compiled.
    Broken {
        error: String,
        last_good: Arc<App>,
    },
}

/// The apps a server runs, and their current version.
pub struct Apps {
    source: Source,
    /// Dev mode: a failed recompile answers every page with its error.
    pub dev: bool,
    current: RwLock<Current>,
    generations: AtomicU64,
    /// Tells dev-mode pages (`/__sx/reload`) that a new version is being served.
    pub reloaded: tokio::sync::broadcast::Sender<u64>,
}

impl Apps {
    /// Compiles and probes the apps. Also returns the probe engine, so the caller can read
    /// more of what the apps declare (e.g. sample content) on this thread.
    pub fn start(source: Source, dev: bool) -> Result<(Arc<Apps>, Engine), String> {
        let bundle = compile(&source)?;
        let (app, engine) = App::probe(1, bundle)?;
        let apps = Apps {
            source,
            dev,
            current: RwLock::new(Current::Ready(Arc::new(app))),
            generations: AtomicU64::new(1),
            reloaded: tokio::sync::broadcast::channel(16).0,
        };
        Ok((Arc::new(apps), engine))
    }

    /// The version to serve a request with, or (dev mode, after a failed recompile) the
    /// error to show instead.
    pub fn current(&self) -> Result<Arc<App>, String> {
        match &*self.current.read().unwrap_or_else(|e| e.into_inner()) {
            Current::Ready(app) => Ok(app.clone()),
            Current::Broken { error, .. } if self.dev => Err(error.clone()),
            Current::Broken { last_good, .. } => Ok(last_good.clone()),
        }
    }

    /// The folder an app came from (its `static/` is served under `/static/`).
    pub fn folder(&self) -> Option<&Path> {
        match &self.source {
            Source::Folder { dir, .. } => Some(dir),
            Source::Bundle(_) => None,
        }
    }

    /// Compiles the source again. On success the new version is served from the next request
    /// on; on failure the error is logged and (dev mode) shown on every page.
    pub fn recompile(&self) {
        let generation = self.generations.fetch_add(1, Ordering::AcqRel) + 1;
        let compiled = compile(&self.source).and_then(|bundle| App::probe(generation, bundle));
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let last_good = match &*current {
            Current::Ready(app) => app.clone(),
            Current::Broken { last_good, .. } => last_good.clone(),
        };
        match compiled {
            Ok((app, _)) => {
                tracing::info!("recompiled the app (version {generation})");
                *current = Current::Ready(Arc::new(app));
                drop(current);
                let _ = self.reloaded.send(generation);
            }
            Err(error) => {
                tracing::error!("the app does not compile: {error}");
                *current = Current::Broken { error, last_good };
            }
        }
    }
}

/// The bundle of a source: as it is, or compiled from the host's and the folder's files.
fn compile(source: &Source) -> Result<Vec<u8>, String> {
    match source {
        Source::Bundle(bundle) => Ok(bundle.as_ref().clone()),
        Source::Folder { host, dir } => {
            let mut files = host.clone();
            files.extend(folder_sources(dir)?);
            sx_kernel::sxbc::compile_bundle(&files)
                .map_err(|e| sx_kernel::error::describe_located(&e))
        }
    }
}

/// An app folder's `.sx` files in file-name order, subfolders (depth first) in their place
/// among the files; `static/` and `tests/` are not app code. Names are shown as the folder's
/// own path joined with the file's.
pub fn folder_sources(dir: &Path) -> Result<Vec<(String, String)>, String> {
    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    Ok(files)
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, String)>) -> Result<(), String> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read the app folder {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            if dir == root && (name == "static" || name == "tests") {
                continue;
            }
            collect(root, &path, files)?;
        } else if path.extension().is_some_and(|x| x == "sx") {
            let source = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            files.push((path.display().to_string(), source));
        }
    }
    Ok(())
}

/// Watches an app folder and recompiles when a file changes (dev mode). Changes that come
/// together (an editor's save writes several times) make one recompile.
pub fn watch(apps: Arc<Apps>) -> Result<notify::RecommendedWatcher, String> {
    use notify::Watcher;
    let dir = apps
        .folder()
        .ok_or("only an app folder can be watched")?
        .to_path_buf();
    let (changed, changes) = std::sync::mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = changed.send(());
        }
    })
    .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    watcher
        .watch(&dir, notify::RecursiveMode::Recursive)
        .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    std::thread::Builder::new()
        .name("sx-watch".into())
        .spawn(move || {
            while changes.recv().is_ok() {
                // Let the burst settle, then take everything it queued.
                std::thread::sleep(std::time::Duration::from_millis(50));
                while changes.try_recv().is_ok() {}
                apps.recompile();
            }
        })
        .map_err(|e| format!("cannot start the watcher: {e}"))?;
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_literals_and_parameters() {
        let route = Route::parse("get", "/:slug/edit", None).unwrap();
        assert_eq!(
            route.matches("/hello%20world/edit"),
            Some(vec![("slug".into(), "hello world".into())])
        );
        assert_eq!(route.matches("/hello/edit/"), None);
        assert_eq!(route.matches("//edit"), None);
        assert_eq!(route.matches("/a/publish"), None);
        assert_eq!(route.top_level(), None);
        let index = Route::parse("GET", "/", None).unwrap();
        assert_eq!(index.matches("/"), Some(vec![]));
        assert_eq!(index.matches("/x"), None);
        let new = Route::parse("GET", "/new", None).unwrap();
        assert_eq!(new.top_level(), Some("new"));
        assert!(Route::parse("GET", "new", None).is_err());
        let app = App {
            generation: 1,
            bundle: Arc::new(Vec::new()),
            routes: vec![
                Route::parse("GET", "/:slug/edit", None).unwrap(),
                Route::parse("GET", "/tags/:tag", None).unwrap(),
            ],
            site_name: "SX".into(),
            reserved: Vec::new(),
            flows: Vec::new(),
        };
        assert!(matches!(
            app.find("GET", "/tags/edit"),
            Found::Route { index: 1, .. }
        ));
        assert!(matches!(
            app.find("HEAD", "/post/edit"),
            Found::Route { index: 0, .. }
        ));
        assert!(Route::parse("GET", "/:/x", None).is_err());
        let options = |cache: Value| sx_kernel::value::kw_dict([("cache", cache)]);
        let cached = Route::parse("GET", "/x", Some(&options(Value::Bool(true)))).unwrap();
        assert!(cached.cache && cached.csrf);
        assert!(!Route::parse("GET", "/x", None).unwrap().cache);
        let post = Route::parse("POST", "/x", Some(&options(Value::Bool(true))));
        assert!(post.unwrap_err().contains("only a GET route"));
        assert!(Route::parse("GET", "/x", Some(&options(Value::str("yes")))).is_err());
    }

    /// A host library small enough for these tests: routes and the site.
    fn host() -> Vec<(String, String)> {
        vec![(
            "host.sx".into(),
            r#"(define *routes* ())
               (defmacro defroute (method path handler)
                 `(set! *routes* (cons (list ,method ,path ,handler nil) *routes*)))
               (define *site* {:name "SX"})"#
                .into(),
        )]
    }

    #[test]
    fn a_failed_recompile_keeps_the_last_version_in_production_and_shows_in_dev() {
        for dev in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let page = dir.path().join("page.sx");
            std::fs::write(&page, r#"(defroute "GET" "/" (fn (req) "one"))"#).unwrap();
            let source = Source::Folder {
                host: host(),
                dir: dir.path().to_path_buf(),
            };
            let (apps, _) = Apps::start(source, dev).unwrap();
            let first = apps.current().unwrap();
            assert!(matches!(
                first.find("GET", "/"),
                Found::Route { index: 0, .. }
            ));
            assert!(matches!(first.find("POST", "/"), Found::OtherMethods(_)));
            assert!(matches!(first.find("GET", "/x"), Found::NotFound));

            std::fs::write(&page, "(defroute \"GET\" \"/\"\n  (fn (req)").unwrap();
            apps.recompile();
            match apps.current() {
                Ok(app) => {
                    assert!(!dev, "dev mode shows the error");
                    assert_eq!(app.generation, first.generation);
                }
                Err(error) => {
                    assert!(dev, "production keeps serving");
                    assert!(error.contains("page.sx:"), "{error}");
                }
            }

            std::fs::write(&page, r#"(defroute "GET" "/two" (fn (req) "two"))"#).unwrap();
            let mut reloads = apps.reloaded.subscribe();
            apps.recompile();
            let fixed = apps.current().unwrap();
            assert!(fixed.generation > first.generation);
            assert!(matches!(fixed.find("GET", "/two"), Found::Route { .. }));
            assert_eq!(reloads.try_recv().unwrap(), fixed.generation);
            assert!(fixed.reserved.iter().any(|r| r == "two"));
        }
    }

    #[test]
    fn folders_load_in_name_order_depth_first_without_static_and_tests() {
        let dir = tempfile::tempdir().unwrap();
        for file in [
            "b.sx",
            "a/z.sx",
            "a/b/c.sx",
            "c.sx",
            "static/x.sx",
            "tests/t.sx",
            ".hidden.sx",
            "notes.txt",
        ] {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "").unwrap();
        }
        let names: Vec<String> = folder_sources(dir.path())
            .unwrap()
            .into_iter()
            .map(|(name, _)| name[dir.path().display().to_string().len() + 1..].to_string())
            .collect();
        assert_eq!(names, ["a/b/c.sx", "a/z.sx", "b.sx", "c.sx"]);
    }
}
