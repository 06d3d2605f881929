//! The examples in `docs/apps.md`, run against the real host. Each ```sx block is compiled
//! together with the apps the binary embeds (`sx/host`, `sx/blog`) into one bundle, loaded
//! into a VM engine (so every top-level form runs), and — when the block states requests — served
//! by a real server over HTTP on a fresh store, which must answer as stated.
//!
//! A request is a comment line in the block (documented at the top of `docs/apps.md`):
//!
//! ```text
//! ;; GET /hello?name=Ada => 200 Hello, Ada
//! ;; POST /notes text=hi => 401
//! ;; GET /clock/now fragment => 200 (span
//! ```
//!
//! the method, the path, optionally a form body (`a=1&b=2`, sent urlencoded) and/or the word
//! `fragment` (sent with `SX-Request: true` and `Accept: text/sx`, as the browser engine
//! does), `=>`, the status, and optionally text the answer must contain (its headers, written
//! `name: value` with lower-case names, or its body). ```sx-no-run blocks must only read.

mod common;

use std::path::Path;

use common::{app_sources, static_dir, text, Server};
use sx_kernel::{Backend, Engine};

const PAGE: &str = "docs/apps.md";

struct Block {
    fence_line: usize,
    /// The block's text, padded with blank lines so that positions are the page's.
    source: String,
    runs: bool,
    requests: Vec<Expected>,
}

struct Expected {
    line: usize,
    method: String,
    path: String,
    body: String,
    fragment: bool,
    status: u16,
    contains: String,
}

fn parse_request(line: usize, spec: &str) -> Result<Expected, String> {
    let (ask, answer) = spec
        .split_once("=>")
        .ok_or_else(|| format!("{PAGE}:{line}: a request needs `=> STATUS`"))?;
    let mut words = ask.split_whitespace();
    let method = words.next().unwrap_or_default().to_string();
    let path = words
        .next()
        .ok_or_else(|| format!("{PAGE}:{line}: a request needs a path"))?
        .to_string();
    let mut body = String::new();
    let mut fragment = false;
    for word in words {
        match word {
            "fragment" => fragment = true,
            form => body = form.to_string(),
        }
    }
    let answer = answer.trim();
    let (status, contains) = answer.split_once(' ').unwrap_or((answer, ""));
    let status = status
        .parse()
        .map_err(|_| format!("{PAGE}:{line}: {status:?} is not a status"))?;
    Ok(Expected {
        line,
        method,
        path,
        body,
        fragment,
        status,
        contains: contains.trim().to_string(),
    })
}

fn blocks(page: &str) -> Result<Vec<Block>, String> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    let mut other = false;
    for (i, line) in page.lines().enumerate() {
        let number = i + 1;
        let trimmed = line.trim_start();
        if let Some(block) = &mut open {
            if trimmed.starts_with("```") {
                out.push(open.take().expect("a block is open"));
                continue;
            }
            while block.source.lines().count() < number - 1 {
                block.source.push('\n');
            }
            block.source.push_str(line);
            block.source.push('\n');
            let request = trimmed
                .strip_prefix(";; ")
                .filter(|rest| ["GET ", "POST "].iter().any(|m| rest.starts_with(m)));
            if let Some(spec) = request {
                block.requests.push(parse_request(number, spec)?);
            }
            continue;
        }
        if other {
            other = !trimmed.starts_with("```");
            continue;
        }
        let Some(info) = trimmed.strip_prefix("```") else {
            continue;
        };
        let runs = match info.trim() {
            "sx" => true,
            "sx-no-run" => false,
            _ => {
                other = true;
                continue;
            }
        };
        open = Some(Block {
            fence_line: number,
            source: String::new(),
            runs,
            requests: Vec::new(),
        });
    }
    if open.is_some() || other {
        return Err(format!("{PAGE}: a fenced block is not closed"));
    }
    Ok(out)
}

/// Compiles the block with the apps and runs its top-level forms; the bundle on success.
fn load(block: &Block) -> Result<Vec<u8>, String> {
    let mut files = app_sources();
    files.push((PAGE.to_string(), block.source.clone()));
    let bundle = sx_kernel::sxbc::compile_bundle(&files)
        .map_err(|e| sx_kernel::error::describe_located(&e))?;
    Engine::with_backend(Backend::Vm).load_bundle(&bundle)?;
    Ok(bundle)
}

fn serve(block: &Block, bundle: Vec<u8>, statics: &Path) -> Vec<String> {
    let server = Server::with_bundle(statics, bundle);
    let mut problems = Vec::new();
    for want in &block.requests {
        let mut headers = Vec::new();
        if want.fragment {
            headers.push(("SX-Request", "true"));
            headers.push(("Accept", "text/sx"));
        }
        let (status, got_headers, body) =
            server.send(&want.method, &want.path, &headers, &want.body);
        let mut answer: String = got_headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\n"))
            .collect();
        answer.push_str(&text(&body));
        if status != want.status || !answer.contains(&want.contains) {
            problems.push(format!(
                "{PAGE}:{}: {} {} answered {status}, expected {} containing {:?}:\n{answer}",
                want.line, want.method, want.path, want.status, want.contains
            ));
        }
    }
    problems
}

#[test]
fn every_example_in_apps_md_loads_with_the_host_and_answers_as_stated() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/apps.md");
    let page = std::fs::read_to_string(&path).expect("docs/apps.md exists");
    let blocks = blocks(&page).unwrap_or_else(|e| panic!("{e}"));
    assert!(!blocks.is_empty(), "{PAGE} has no ```sx blocks");
    let statics = static_dir();
    let mut problems = Vec::new();
    let mut served = 0;
    for block in blocks.iter().filter(|b| b.runs) {
        match load(block) {
            Err(e) => problems.push(format!(
                "{PAGE}:{}: the example does not load with the host:\n{e}",
                block.fence_line
            )),
            Ok(bundle) if !block.requests.is_empty() => {
                served += block.requests.len();
                problems.extend(serve(block, bundle, statics.path()));
            }
            Ok(_) => {}
        }
    }
    for block in blocks.iter().filter(|b| !b.runs) {
        if let Err(e) = sx_kernel::reader::read_all(
            &block.source,
            sx_kernel::reader::Mode::Code,
            sx_kernel::reader::DEFAULT_MAX_DEPTH,
        ) {
            problems.push(format!("{PAGE}:{}: {}", e.pos, e.message));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    assert!(served > 0, "{PAGE} states no requests");
}
