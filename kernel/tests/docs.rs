//! The examples in `docs/*.md` as cargo tests: every ```sx block of `docs/language.md` (and of
//! any other page except `docs/apps.md`) runs under the interpreter and under the VM, and its
//! stated results are checked. The blocks of `docs/apps.md` need the host (`defroute`,
//! `~host/shell`, its effects): here they must only read; `server/tests/docs.rs` runs them.
//!
//! The convention, also described at the top of `docs/language.md`:
//!
//! - A fence written ```sx is an example that runs; ```sx-no-run is shown but not run (only
//!   read, so it must still be well-formed SX). Any other fence starting with ```sx is an error.
//! - Each block runs in a fresh engine, as `sx run` would run it: `print` is captured, and the
//!   effects `now` and `sleep` are served (any other op raises `unknown-effect`).
//! - A comment `;; => text` (at the end of a line or on a line of its own) states the result of
//!   the code before it, back to the previous marker: what that code printed, or, when it
//!   printed nothing, the `repr` of its last value. Consecutive `;; =>` lines with no code
//!   between them are one result of several lines.
//! - A comment `;; error: TYPE` states that the code before it raises an error of that type
//!   (`error-type`); the block then goes on with the code after it.
//! - Code after the last marker must run without an error.
//!
//! A failure names the page and the line of the block (errors raised by the code also carry
//! the page's own `line:col`).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use libtest_mimic::{Arguments, Failed, Trial};
use sx_kernel::engine::unknown_effect;
use sx_kernel::value::Key;
use sx_kernel::{Backend, Engine, Value};

/// A fenced block of SX in a page.
#[derive(Clone)]
struct Block {
    /// The page's path, for messages.
    page: String,
    /// The line of the opening fence (1-based).
    fence_line: usize,
    /// `(line, text)` for each line of the block, 1-based lines of the page.
    lines: Vec<(usize, String)>,
    runs: bool,
}

fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

fn pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(docs_dir())
        .expect("docs/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    pages.sort();
    pages
}

/// The ```sx blocks of a page, or a message about a malformed fence.
fn blocks(page: &str, text: &str) -> Result<Vec<Block>, String> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    let mut other_fence = false;
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        let trimmed = line.trim_start();
        if let Some(block) = &mut open {
            if trimmed.starts_with("```") {
                out.push(open.take().expect("a block is open"));
            } else {
                block.lines.push((number, line.to_string()));
            }
            continue;
        }
        if other_fence {
            if trimmed.starts_with("```") {
                other_fence = false;
            }
            continue;
        }
        let Some(info) = trimmed.strip_prefix("```") else {
            continue;
        };
        let runs = match info.trim() {
            "sx" => true,
            "sx-no-run" => false,
            tag if tag.starts_with("sx") => {
                return Err(format!(
                    "{page}:{number}: unknown fence ```{tag} (use ```sx or ```sx-no-run)"
                ))
            }
            _ => {
                other_fence = true;
                continue;
            }
        };
        open = Some(Block {
            page: page.to_string(),
            fence_line: number,
            lines: Vec::new(),
            runs,
        });
    }
    if open.is_some() || other_fence {
        return Err(format!("{page}: a fenced block is not closed"));
    }
    Ok(out)
}

/// What a stretch of code is said to do.
enum Expect {
    Result(String),
    Error(String),
    Nothing,
}

/// A stretch of a block: code (padded with blank lines so that positions are the page's) and
/// what it must do.
struct Chunk {
    code: String,
    /// The page line of the marker (or of the block's end).
    line: usize,
    expect: Expect,
}

/// Splits a line at a `;; =>` or `;; error:` marker: the code before it and the marker.
fn marker(line: &str) -> Option<(&str, Expect)> {
    for (tag, is_error) in [(";; =>", false), (";; error:", true)] {
        if let Some(at) = line.find(tag) {
            let before = &line[..at];
            if !before.is_empty() && !before.ends_with(char::is_whitespace) {
                continue;
            }
            let rest = line[at + tag.len()..].trim().to_string();
            let expect = if is_error {
                Expect::Error(rest)
            } else {
                Expect::Result(rest)
            };
            return Some((before, expect));
        }
    }
    None
}

fn chunks(block: &Block) -> Vec<Chunk> {
    // Code is padded with blank lines so that its first line is where it is in the page.
    let padded = |from: usize, code: &str| format!("{}{code}", "\n".repeat(from - 1));
    let mut out: Vec<Chunk> = Vec::new();
    let mut code = String::new();
    let mut from = block.fence_line + 1;
    let mut last_was_result = false;
    for (number, line) in &block.lines {
        let Some((before, expect)) = marker(line) else {
            if !line.trim().is_empty() {
                last_was_result = false;
            }
            code.push_str(line);
            code.push('\n');
            continue;
        };
        if let (true, Some(prev), Expect::Result(more)) = (
            before.trim().is_empty() && last_was_result && code.trim().is_empty(),
            out.last_mut(),
            &expect,
        ) {
            // Another line of the previous result.
            if let Expect::Result(text) = &mut prev.expect {
                text.push('\n');
                text.push_str(more);
            }
            code.push('\n');
            continue;
        }
        code.push_str(before);
        code.push('\n');
        last_was_result = matches!(expect, Expect::Result(_));
        out.push(Chunk {
            code: padded(from, &std::mem::take(&mut code)),
            line: *number,
            expect,
        });
        from = number + 1;
    }
    if !code.trim().is_empty() {
        out.push(Chunk {
            code: padded(from, &code),
            line: block.lines.last().map_or(block.fence_line, |(n, _)| *n),
            expect: Expect::Nothing,
        });
    }
    out
}

/// The effects `sx run` serves: `now` (a fixed time here) and `sleep` (no waiting here).
fn effects(request: &Value) -> Result<Value, Value> {
    if let Value::Dict(d) = request {
        match d.get(&Key(Value::kw("op"))) {
            Some(Value::Str(op)) if &**op == "now" => return Ok(Value::Int(1_767_225_600_000)),
            Some(Value::Str(op)) if &**op == "sleep" => return Ok(Value::Nil),
            _ => {}
        }
    }
    Err(unknown_effect(request))
}

fn describe(err: &Value) -> String {
    sx_kernel::error::describe(err)
}

fn run_block(block: &Block, backend: Backend) -> Result<(), Failed> {
    let mut engine = Engine::with_backend(backend);
    let printed = Rc::new(RefCell::new(String::new()));
    let sink = printed.clone();
    engine.set_output(Box::new(move |text| sink.borrow_mut().push_str(text)));
    let at = |line: usize| format!("{}:{line}", block.page);
    let mut problems: Vec<String> = Vec::new();
    for chunk in chunks(block) {
        printed.borrow_mut().clear();
        let result = engine.eval_with(&chunk.code, Some(&block.page), &mut effects);
        let output = printed.borrow().clone();
        match (&chunk.expect, result) {
            (Expect::Error(want), Err(err)) => {
                let got = match &err {
                    Value::Error(e) => e.error_type.to_string(),
                    other => format!("a raised {}", sx_kernel::printer::repr(other)),
                };
                if &got != want {
                    problems.push(format!(
                        "{}: expected a {want} error, got {got}\n{}",
                        at(chunk.line),
                        describe(&err)
                    ));
                }
            }
            (Expect::Error(want), Ok(v)) => problems.push(format!(
                "{}: expected a {want} error, but the code returned {}",
                at(chunk.line),
                sx_kernel::printer::repr(&v)
            )),
            (_, Err(err)) => problems.push(format!(
                "{}: the example raised an error\n{}",
                at(chunk.line),
                describe(&err)
            )),
            (Expect::Result(want), Ok(v)) => {
                let got = if output.is_empty() {
                    sx_kernel::printer::repr(&v)
                } else {
                    output.strip_suffix('\n').unwrap_or(&output).to_string()
                };
                if &got != want {
                    problems.push(format!("{}: expected\n{want}\ngot\n{got}", at(chunk.line)));
                }
            }
            (Expect::Nothing, Ok(_)) => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n").into())
    }
}

fn read_block(block: &Block) -> Result<(), Failed> {
    let mut text = "\n".repeat(block.fence_line);
    for (_, line) in &block.lines {
        text.push_str(line);
        text.push('\n');
    }
    sx_kernel::reader::read_all(
        &text,
        sx_kernel::reader::Mode::Code,
        sx_kernel::reader::DEFAULT_MAX_DEPTH,
    )
    .map(|_| ())
    .map_err(|e| format!("{}: {}: {}", block.page, e.pos, e.message).into())
}

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    let mut problems = Vec::new();
    for path in pages() {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let page = format!("docs/{name}");
        let text = std::fs::read_to_string(&path).expect("a readable page");
        let found = match blocks(&page, &text) {
            Ok(found) => found,
            Err(message) => {
                problems.push(message);
                continue;
            }
        };
        // The apps page needs the host: the server's tests run it.
        let with_host = name == "apps.md";
        for block in found {
            let label = format!("{name}:{}", block.fence_line);
            if block.runs && !with_host {
                for (backend, engine) in [(Backend::Interp, "interp"), (Backend::Vm, "vm")] {
                    let block = block.clone();
                    trials.push(Trial::test(format!("{engine}::{label}"), move || {
                        run_block(&block, backend)
                    }));
                }
            } else {
                trials.push(Trial::test(format!("reads::{label}"), move || {
                    read_block(&block)
                }));
            }
        }
    }
    trials.push(Trial::test("pages::fences", move || {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n").into())
        }
    }));
    libtest_mimic::run(&args, trials).exit();
}
