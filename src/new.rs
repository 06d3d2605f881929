//! `sx new NAME`: a folder with a starter app that runs (`sx serve --app NAME --dev`), tests
//! green (`sx test NAME`) and shows the framework's shape: a page rendered by a component
//! through the shell, a second page linked from it (boosted in the browser), a form that
//! posts with its CSRF field, a stylesheet, a test, and a README.

use std::path::Path;

/// The starter's files: (path inside the folder, text). `{{name}}` becomes the app's name.
const FILES: &[(&str, &str)] = &[
    ("app.sx", include_str!("starter/app.sx")),
    ("static/style.css", include_str!("starter/style.css")),
    ("tests/app_test.sx", include_str!("starter/app_test.sx")),
    ("README.md", include_str!("starter/README.md")),
];

/// Creates the starter app in `dir` (which must not exist, or be empty). On any failure
/// nothing is left behind.
pub fn create(dir: &Path) -> u8 {
    match write_starter(dir) {
        Ok(()) => {
            println!("created {}", dir.display());
            println!(
                "  sx serve --app {} --dev   # then open http://127.0.0.1:8000",
                dir.display()
            );
            println!("  sx test {}", dir.display());
            0
        }
        Err(message) => {
            eprintln!("sx new: {message}");
            1
        }
    }
}

fn write_starter(dir: &Path) -> Result<(), String> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty() && !n.starts_with('.'))
        .ok_or_else(|| format!("{} is not a folder name", dir.display()))?;
    let existed = match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(format!("{} exists and is not empty", dir.display()));
            }
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(format!("cannot use {}: {e}", dir.display())),
    };
    let written = FILES.iter().try_for_each(|(path, text)| {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text.replace("{{name}}", &escape(name)))
    });
    written.map_err(|e| {
        // Leave nothing half-made: the folder as it was (absent, or empty).
        if existed {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let _ = std::fs::remove_dir_all(entry.path());
                let _ = std::fs::remove_file(entry.path());
            }
        } else {
            let _ = std::fs::remove_dir_all(dir);
        }
        format!("cannot write {}: {e}", dir.display())
    })
}

/// The name as it may appear inside an SX string literal (and Markdown text).
fn escape(name: &str) -> String {
    name.replace('\\', "\\\\").replace('"', "\\\"")
}
