//! `sx`: the one binary users run. Subcommands: `run`, `test`, `repl`, `compile`, `disasm`,
//! `serve`, `stamp-wasm`, and the account commands `user add`, `token create`, `grant`. Arguments are
//! parsed with clap; SX work happens on a thread with a large stack so that deep (but legal)
//! data never threatens the process.

mod bundle;
mod effects;
mod new;
mod repl;

/// The apps `build.rs` embeds: `HOST_SOURCES` and `EMBEDDED_APPS`.
mod embedded {
    include!(concat!(env!("OUT_DIR"), "/apps.rs"));
}

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sx_kernel::engine::Limits;
use sx_kernel::error::describe;
use sx_kernel::{Backend, Engine, Value};

#[derive(Parser)]
#[command(name = "sx", version, about = "Run, test and explore SX programs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EngineKind {
    /// The reference tree-walking interpreter.
    Interp,
    /// The bytecode VM.
    Vm,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate a file; standard output is what `print` wrote.
    Run {
        file: PathBuf,
        /// Which engine runs the program.
        #[arg(long, value_enum, default_value = "vm")]
        engine: EngineKind,
        /// Evaluation steps allowed before `out-of-fuel`.
        #[arg(long)]
        fuel: Option<u64>,
    },
    /// Run every `deftest` in the files (directories are searched recursively for .sx). An
    /// app folder (one with a `tests/` folder) runs its tests with the host library and the
    /// app's own files loaded first.
    Test {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "vm")]
        engine: EngineKind,
    },
    /// An interactive session: each result is printed as SX text.
    Repl {
        #[arg(long, value_enum, default_value = "vm")]
        engine: EngineKind,
    },
    /// Compile a file to bytecode (.sxbc); `sx run` runs the result.
    Compile {
        file: PathBuf,
        /// Where to write the bytecode.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Show the instructions in a .sxbc file.
    Disasm { file: PathBuf },
    /// Stamp a built browser bundle (.wasm) with this kernel's version and opcode-table hash,
    /// and drop the sections it does not need (the build's post-build step); when
    /// wasm-bindgen's script is beside it, give both content-hashed names, write their .br
    /// and .gz, and list them in manifest.json (another module, such as the editor island's
    /// sx-island_bg.wasm, in manifest-<name>.json).
    StampWasm { file: PathBuf },
    /// Serve the SX apps over HTTP, with the store in LMDB or, with SX_DATABASE_URL, in
    /// PostgreSQL shared by several nodes (configured by the SX_* environment variables;
    /// the flags override them).
    #[command(after_help = sx_server::config::variables_help())]
    Serve {
        #[command(flatten)]
        listen: Listen,
        /// Serve the app in this folder instead of an embedded one (SX_APP_DIR).
        #[arg(long)]
        app: Option<PathBuf>,
        /// Dev mode (with --app): recompile on every save and reload open pages.
        #[arg(long)]
        dev: bool,
    },
    /// Run only the flow runner and its API (/flow/..., /flows, /health) for `sx serve`
    /// nodes started with SX_KERNEL_URL; callers authenticate with SX_KERNEL_TOKEN.
    #[command(after_help = sx_server::config::variables_help())]
    Kernel {
        #[command(flatten)]
        listen: Listen,
    },
    /// Start three federated peers on loopback to try federation: a blog on the base port,
    /// a second blog following it on the next, the events peer on the one after.
    Peers {
        /// The first of the three ports.
        #[arg(long, default_value_t = 8000)]
        base_port: u16,
        /// Where their stores go, one folder each.
        #[arg(long, default_value = "data/peers")]
        data: PathBuf,
    },
    /// Create a folder NAME with a starter app (pages, a form, a stylesheet, a test).
    New { name: PathBuf },
    /// Manage the people who may log in.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API tokens (sent as `Authorization: Bearer TOKEN`).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Allow a user an action: `write` (new posts, edits), `publish`, or `*` (everything).
    Grant {
        user: String,
        action: String,
        /// LMDB store directory (SX_PERSIST_DIR, default ./data; unused with SX_DATABASE_URL).
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

/// Where `sx serve` and `sx kernel` listen and keep their store (over the environment).
#[derive(Args)]
struct Listen {
    /// Address to listen on (SX_HTTP_HOST, default 127.0.0.1).
    #[arg(long)]
    host: Option<String>,
    /// Port (SX_HTTP_PORT, default 8000).
    #[arg(long)]
    port: Option<u16>,
    /// LMDB store directory (SX_PERSIST_DIR, default ./data; unused with SX_DATABASE_URL).
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user. The password is read from standard input (one line) unless given.
    Add {
        name: String,
        #[arg(long)]
        password: Option<String>,
        /// LMDB store directory (SX_PERSIST_DIR, default ./data; unused with SX_DATABASE_URL).
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make an API token for a user and print it (it is shown only this once).
    Create {
        user: String,
        /// LMDB store directory (SX_PERSIST_DIR, default ./data; unused with SX_DATABASE_URL).
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // SX work gets its own thread with a big stack: printing or comparing very deep data
    // recurses in Rust, and the reader's depth limit only bounds what text can build.
    let worker = std::thread::Builder::new()
        .name("sx".into())
        .stack_size(256 << 20)
        .spawn(move || match cli.command {
            Command::Run { file, engine, fuel } => run(&file, engine, fuel),
            Command::Test { paths, engine } => test(&paths, engine),
            Command::Repl { engine } => repl::run(engine.into()),
            Command::Compile { file, output } => compile(&file, &output),
            Command::Disasm { file } => disasm(&file),
            Command::StampWasm { file } => match stamp_wasm(&file) {
                Ok(()) => 0,
                Err(message) => {
                    eprintln!("sx stamp-wasm: {message}");
                    1
                }
            },
            Command::Serve { listen, app, dev } => serve(listen, app, dev),
            Command::Kernel { listen } => kernel(listen),
            Command::Peers { base_port, data } => {
                let started = std::env::current_exe()
                    .map_err(|e| format!("cannot find this program: {e}"))
                    .and_then(|exe| sx_server::peers::run(&exe, base_port, &data));
                match started {
                    Ok(()) => 0,
                    Err(message) => {
                        eprintln!("sx peers: {message}");
                        1
                    }
                }
            }
            Command::New { name } => new::create(&name),
            Command::User {
                command:
                    UserCommand::Add {
                        name,
                        password,
                        data,
                    },
            } => accounts("sx user add", data, |dir| {
                let password = match password {
                    Some(p) => p,
                    None => read_password()?,
                };
                sx_server::accounts::add_user(dir, &name, &password)?;
                println!("added user {name}");
                Ok(())
            }),
            Command::Token {
                command: TokenCommand::Create { user, data },
            } => accounts("sx token create", data, |dir| {
                let token = sx_server::accounts::create_token(dir, &user)?;
                println!("{token}");
                Ok(())
            }),
            Command::Grant { user, action, data } => accounts("sx grant", data, |dir| {
                sx_server::accounts::grant(dir, &user, &action)?;
                println!("granted {action} to {user}");
                Ok(())
            }),
        });
    match worker {
        Ok(worker) => match worker.join() {
            Ok(code) => ExitCode::from(code),
            // The panic message is already on stderr; a panic is a bug.
            Err(_) => ExitCode::from(101),
        },
        Err(e) => {
            eprintln!("sx: cannot start a thread: {e}");
            ExitCode::from(1)
        }
    }
}

impl From<EngineKind> for Backend {
    fn from(kind: EngineKind) -> Backend {
        match kind {
            EngineKind::Interp => Backend::Interp,
            EngineKind::Vm => Backend::Vm,
        }
    }
}

fn read_file(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    read_source(path, bytes)
}

fn read_source(path: &Path, bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "{}: read-error: not valid UTF-8 (at byte {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// `file:line:col: ` of where an error was raised, when known.
fn location_prefix(err: &Value) -> String {
    if let Value::Error(e) = err {
        if let Some(entry) = e.stack.borrow().iter().find(|s| s.pos.is_some()) {
            if let (Some(file), Some(pos)) = (&entry.file, entry.pos) {
                return format!("{file}:{pos}: ");
            }
        }
    }
    String::new()
}

pub fn report_error(err: &Value) {
    eprintln!("{}{}", location_prefix(err), describe(err));
}

/// Loads a `.sxbc` file into `engine`, or says why not.
fn load_bytecode(
    path: &Path,
    bytes: &[u8],
    engine: &mut Engine,
) -> Result<sx_kernel::sxbc::Program, u8> {
    sx_kernel::sxbc::read(bytes, &mut engine.globals).map_err(|e| {
        eprintln!("{}: {e}", path.display());
        1
    })
}

fn run(path: &Path, engine_kind: EngineKind, fuel: Option<u64>) -> u8 {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot read {}: {e}", path.display());
            return 1;
        }
    };
    let mut engine = Engine::with_backend(engine_kind.into());
    engine.limits = Limits {
        fuel,
        ..Limits::default()
    };
    engine.set_output(Box::new(effects::write_stdout));
    let name = path.display().to_string();
    let started = if bytes.starts_with(sx_kernel::sxbc::MAGIC) {
        if engine_kind == EngineKind::Interp {
            eprintln!("{name}: bytecode runs on the VM; drop --engine interp or run the source");
            return 2;
        }
        match load_bytecode(path, &bytes, &mut engine) {
            Ok(program) => Ok(engine.start_compiled(program)),
            Err(code) => return code,
        }
    } else {
        match read_source(path, bytes) {
            Ok(source) => engine.start(&source, Some(&name)),
            Err(message) => {
                eprintln!("{message}");
                return 1;
            }
        }
    };
    let mut run = match started {
        Ok(run) => run,
        Err(e) => {
            report_error(&e);
            return 1;
        }
    };
    let result = match sx_kernel::drive_now(&mut run, &mut engine, effects::serve) {
        Ok(_) => 0,
        Err(e) => {
            effects::flush_stdout();
            report_error(&e);
            1
        }
    };
    effects::flush_stdout();
    // The process ends here: freeing every value the program built, one cell at a time,
    // would only delay the exit (the system takes the memory back at once).
    std::mem::forget(run);
    std::mem::forget(engine);
    result
}

fn collect_sx_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| format!("cannot list {}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            if entry.is_dir() || entry.extension().is_some_and(|x| x == "sx") {
                collect_sx_files(&entry, out)?;
            }
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// SX sources as (file name, text).
type Sources = Vec<(String, String)>;

/// What `sx test` runs: test files, each with the sources it needs loaded first (for an app
/// folder's tests: the host library and the app's files).
fn test_plan(paths: &[PathBuf]) -> Result<Vec<(PathBuf, Sources)>, String> {
    let mut plan = Vec::new();
    for path in paths {
        let tests = path.join("tests");
        let mut files = Vec::new();
        if tests.is_dir() {
            let mut preload: Sources = embedded::HOST_SOURCES
                .iter()
                .map(|(name, text)| (name.to_string(), text.to_string()))
                .collect();
            preload.extend(sx_server::apps::folder_sources(path)?);
            collect_sx_files(&tests, &mut files)?;
            plan.extend(files.into_iter().map(|f| (f, preload.clone())));
        } else {
            collect_sx_files(path, &mut files)?;
            plan.extend(files.into_iter().map(|f| (f, Vec::new())));
        }
    }
    Ok(plan)
}

fn test(paths: &[PathBuf], engine_kind: EngineKind) -> u8 {
    let plan = match test_plan(paths) {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("{message}");
            return 1;
        }
    };
    let (mut passed, mut failed) = (0, 0);
    for (file, preload) in &plan {
        let name = file.display().to_string();
        let source = match read_file(file) {
            Ok(s) => s,
            Err(message) => {
                println!("FAIL {name}\n  {message}");
                failed += 1;
                continue;
            }
        };
        let report = sx_kernel::testing::run_file_with(
            preload,
            &source,
            &name,
            engine_kind.into(),
            &mut effects::serve,
        );
        if let Some(err) = &report.load_error {
            println!("FAIL {name} (while loading)");
            for line in format!("{}{}", location_prefix(err), describe(err)).lines() {
                println!("  {line}");
            }
        }
        for outcome in report.tests.iter().filter(|t| t.failure.is_some()) {
            print!("{}", sx_kernel::testing::describe_failure(&name, outcome));
        }
        println!(
            "{name}: {} passed, {} failed",
            report.passed(),
            report.failed()
        );
        passed += report.passed();
        failed += report.failed();
    }
    println!("{passed} passed, {failed} failed");
    effects::flush_stdout();
    u8::from(failed > 0)
}

fn compile(path: &Path, output: &Path) -> u8 {
    let source = match read_file(path) {
        Ok(s) => s,
        Err(message) => {
            eprintln!("{message}");
            return 1;
        }
    };
    let mut engine = Engine::with_backend(Backend::Vm);
    let program = match engine.compile_program(&source, Some(&path.display().to_string())) {
        Ok(p) => p,
        Err(e) => {
            report_error(&e);
            return 1;
        }
    };
    let bytes = match sx_kernel::sxbc::write(&program) {
        Ok(b) => b,
        Err(message) => {
            eprintln!("{}: cannot write bytecode: {message}", path.display());
            return 1;
        }
    };
    // Write beside the target and rename, so a failed write never leaves half a file.
    let partial = output.with_extension("sxbc.partial");
    let written = std::fs::write(&partial, &bytes).and_then(|()| std::fs::rename(&partial, output));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        eprintln!("cannot write {}: {e}", output.display());
        return 1;
    }
    0
}

fn disasm(path: &Path) -> u8 {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot read {}: {e}", path.display());
            return 1;
        }
    };
    let mut engine = Engine::with_backend(Backend::Vm);
    let program = match load_bytecode(path, &bytes, &mut engine) {
        Ok(p) => p,
        Err(code) => return code,
    };
    for (i, form) in program.forms.iter().enumerate() {
        println!(";; form {i}");
        print!("{}", sx_kernel::bytecode::disassemble(form));
    }
    0
}

/// Writes the `sx-stamp` custom section (replacing an old one) and drops names, producers
/// and debug sections; the file is replaced through a rename, never left half-written.
fn stamp_wasm(path: &Path) -> Result<(), String> {
    let mut config = walrus::ModuleConfig::new();
    config
        .generate_name_section(false)
        .generate_producers_section(false);
    let mut module = config
        .parse_file(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let unneeded: Vec<_> = module
        .customs
        .iter()
        .filter(|(_, section)| {
            let name = section.name();
            name == sx_kernel::sxbc::STAMP_SECTION
                || name == "target_features"
                || name.starts_with(".debug")
        })
        .map(|(id, _)| id)
        .collect();
    for id in unneeded {
        module.customs.delete(id);
    }
    module.customs.add(walrus::RawCustomSection {
        name: sx_kernel::sxbc::STAMP_SECTION.to_string(),
        data: sx_kernel::sxbc::stamp().into_bytes(),
    });
    let bytes = module.emit_wasm();
    let temporary = path.with_extension("wasm.tmp");
    std::fs::write(&temporary, bytes)
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!(
        "stamped {} with {}",
        path.display(),
        sx_kernel::sxbc::stamp()
    );
    if let Some(hashed) = bundle::hash_names(path)? {
        println!(
            "bundle in {}: {} and {} (with .br and .gz), named in {}",
            hashed.dir.display(),
            hashed.script,
            hashed.wasm,
            hashed.manifest
        );
    }
    Ok(())
}

/// Runs an account command on the store: PostgreSQL at SX_DATABASE_URL, else LMDB in
/// `data` (else SX_PERSIST_DIR, else ./data).
fn accounts(
    what: &str,
    data: Option<PathBuf>,
    command: impl FnOnce(&sx_server::store::Location) -> Result<(), String>,
) -> u8 {
    let location = match sx_server::Config::from_env() {
        Ok(mut config) => {
            if let Some(dir) = data {
                config.persist_dir = dir;
            }
            config.store_location()
        }
        Err(message) => {
            eprintln!("{what}: {message}");
            return 2;
        }
    };
    match command(&location) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("{what}: {message}");
            1
        }
    }
}

fn read_password() -> Result<String, String> {
    use std::io::{BufRead, IsTerminal};
    if std::io::stdin().is_terminal() {
        eprint!("password: ");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("reading the password: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// The configuration from the environment, with the listening flags over it.
fn listen_config(command: &str, listen: Listen) -> Result<sx_server::Config, String> {
    let mut config =
        sx_server::Config::from_env().map_err(|message| format!("sx {command}: {message}"))?;
    if let Some(host) = listen.host {
        config.host = host;
    }
    if let Some(port) = listen.port {
        config.port = port;
    }
    if let Some(data) = listen.data {
        config.persist_dir = data;
    }
    Ok(config)
}

/// `sx kernel`: the host library alone (its flow routes), serving flows registered by hosts.
fn kernel(listen: Listen) -> u8 {
    let mut config = match listen_config("kernel", listen) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            return 2;
        }
    };
    if config.kernel_token.is_none() {
        eprintln!("sx kernel: set SX_KERNEL_TOKEN (the hosts send it as their Bearer token)");
        return 2;
    }
    config.kernel_mode = true;
    config.kernel_url = None;
    let bundle = match sx_kernel::sxbc::compile_bundle(
        &embedded::HOST_SOURCES
            .iter()
            .map(|(name, text)| (name.to_string(), text.to_string()))
            .collect::<Vec<_>>(),
    ) {
        Ok(bundle) => bundle,
        Err(e) => {
            eprintln!("sx kernel: {}", sx_kernel::error::describe_located(&e));
            return 1;
        }
    };
    let source = sx_server::apps::Source::Bundle(std::sync::Arc::new(bundle));
    match sx_server::serve(config, source) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("sx kernel: {message}");
            1
        }
    }
}

fn serve(listen: Listen, app: Option<PathBuf>, dev: bool) -> u8 {
    let mut config = match listen_config("serve", listen) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            return 2;
        }
    };
    if let Some(app) = app {
        config.app_dir = Some(app);
    }
    config.dev = dev;
    let source =
        match sx_server::apps::select(&config, embedded::HOST_SOURCES, embedded::EMBEDDED_APPS) {
            Ok(source) => source,
            Err(message) => {
                eprintln!("sx serve: {message}");
                return 1;
            }
        };
    match sx_server::serve(config, source) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("sx serve: {message}");
            1
        }
    }
}
