//! `sx repl`: line editing and history (rustyline), input continues until the forms
//! balance, each result is printed as its `repr`, and an error never ends the session.

use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;
use sx_kernel::reader::{self, Mode};
use sx_kernel::{Backend, Engine, Value};

use crate::effects;

fn history_path() -> Option<std::path::PathBuf> {
    std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".sx_history"))
}

pub fn run(backend: Backend) -> u8 {
    let mut editor = match DefaultEditor::new() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("sx repl: cannot start line editing: {e}");
            return 1;
        }
    };
    let history = history_path();
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    let mut engine = Engine::with_backend(backend);
    engine.set_output(Box::new(|text| {
        effects::write_stdout(text);
        effects::flush_stdout();
    }));
    println!("SX {} — Ctrl-D to leave", sx_kernel::KERNEL_VERSION);
    let mut pending = String::new();
    loop {
        let prompt = if pending.is_empty() { "sx> " } else { "... " };
        match editor.readline(prompt) {
            Ok(line) => {
                pending.push_str(&line);
                pending.push('\n');
                match reader::read_all(&pending, Mode::Code, reader::DEFAULT_MAX_DEPTH) {
                    Err(e) if e.incomplete => continue,
                    _ => {}
                }
                let source = std::mem::take(&mut pending);
                if source.trim().is_empty() {
                    continue;
                }
                let _ = editor.add_history_entry(source.trim_end());
                match engine.eval_with(&source, Some("<repl>"), &mut effects::serve) {
                    Ok(Value::Nil) => {}
                    Ok(v) => println!("{}", sx_kernel::printer::repr(&v)),
                    Err(e) => crate::report_error(&e),
                }
            }
            Err(ReadlineError::Interrupted) => pending.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("sx repl: {e}");
                break;
            }
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    0
}
